"""The CUDA tier (issue 22): what only a GPU can check. Every test is marked ``cuda`` and skips
cleanly without one (CI and the 2-core development machines have none); `scripts/gpu_check.sh`
runs this tier on a machine that has one, with `python -m pytest -q -m cuda -s`.

Checked on a GPU: a few AMP (fp16 + loss scaler) training steps of frpose-r34 at 256×192 on the
vendored data with a finite, falling loss; device-side heatmap targets equal the CPU codec's;
eval on CUDA equals eval on the CPU within float tolerance; the fp16 and bf16 inference set-ups
run and go through the accuracy gate's mechanics; DDP over NCCL at world size 1 with SyncBatchNorm;
the peak memory of one training step at batch 32 at both input sizes (printed, for the summary).
"""
import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from frpose_cli.cards import load_card
from frpose_cli.data.codecs import codec_for_card

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the cuda tier)")]
COCO = Path(__file__).parent / "data" / "coco"


@pytest.fixture(autouse=True)
def exact_float32():
    """TF32 would make float32 comparisons with the CPU meaningless."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def test_amp_training_steps_have_a_finite_falling_loss(tmp_path):
    from frpose_cli.training.train import TrainConfig, run
    run(TrainConfig(model="frpose-r34", input_size=[256, 192], epochs=4, batch_size=8, workers=2, device="cuda",
                    amp=True, pretrained="none", seed=0, quiet=True, out=str(tmp_path / "run"), val_every=0,
                    train_ann=str(COCO / "annotations" / "person_keypoints_train2017.json"),
                    train_images=str(COCO / "train2017")))
    losses = [json.loads(line)["train_loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
              if json.loads(line).get("kind") == "epoch"]
    print(f"AMP fp16 frpose-r34 256x192 epoch losses: {losses}")
    assert len(losses) == 4 and all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_device_side_targets_equal_the_cpu_codec():
    card = load_card("frpose-r34", (256, 192))
    codec = codec_for_card(card)
    rng = np.random.default_rng(0)
    kp = rng.uniform([-10, -10], [202, 266], (6, 17, 2)).astype(np.float32)
    vis = (rng.random((6, 17)) > 0.2).astype(np.float32)
    want = [codec.encode(k, v) for k, v in zip(kp, vis)]
    heat, weight = codec.encode_torch(torch.from_numpy(kp).cuda(), torch.from_numpy(vis).cuda())
    torch.testing.assert_close(heat.cpu(), torch.from_numpy(np.stack([h for h, _ in want])), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(weight.cpu().reshape(6, -1), torch.from_numpy(np.stack([w for _, w in want])).reshape(6, -1))


def test_eval_on_cuda_equals_eval_on_the_cpu():
    from frpose_cli.evaluation.evaluate import evaluate_model
    from helpers import randomised
    card = load_card("frpose-r34", (256, 192))
    torch.manual_seed(0)
    net = randomised(card.build_model()).eval()
    ann, images = COCO / "annotations" / "person_keypoints_val2017.json", COCO / "val2017"
    cpu = evaluate_model(net, card, ann, images, boxes=None, workers=0, device="cpu")
    gpu = evaluate_model(net, card, ann, images, boxes=None, workers=0, device="cuda")
    a = np.array([r["keypoints"] for r in cpu["results"]]).reshape(-1, 17, 3)[..., :2]
    b = np.array([r["keypoints"] for r in gpu["results"]]).reshape(-1, 17, 3)[..., :2]
    assert a.shape == b.shape and float(np.abs(a - b).max()) < 0.05
    assert abs(cpu["AP"] - gpu["AP"]) < 1e-3


@pytest.mark.parametrize("setup", ["fp16", "bf16"])
def test_reduced_precision_set_ups_run_and_are_gated(setup):
    from frpose_cli.precision.gate import gate_setup
    from frpose_cli.hardware import detect
    gpu = detect("cuda").gpu
    if setup == "bf16" and not (gpu and gpu.native_bf16):
        pytest.skip("this GPU has no native bf16")
    card = load_card("sbn-r18", (256, 192))
    torch.manual_seed(0)
    report = gate_setup(card, setup, card.build_model().eval(), device="cuda")
    print(report.line())
    assert report.crops > 0 and np.isfinite(report.median_px) and report.precision == setup


def test_ddp_over_nccl_at_world_size_1_with_syncbn():
    import torch.distributed as dist
    from frpose_cli import distributed
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        device = torch.device("cuda", 0)
        model = distributed.convert_sync_batchnorm(load_card("sbn-r18", (64, 32)).build_model(), device).to(device)
        assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[0])
        loss = ddp(torch.randn(4, 3, 64, 32, device=device)).square().mean()
        loss.backward()
        assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters() if p.requires_grad)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("size", [(256, 192), (384, 288)])
def test_peak_memory_of_a_training_step_at_batch_32(size):
    card = load_card("frpose-r34", size)
    model = card.build_model().cuda().train()
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    scaler = torch.amp.GradScaler("cuda")
    torch.cuda.reset_peak_memory_stats()
    x = torch.randn(32, 3, *size, device="cuda")
    with torch.autocast("cuda", dtype=torch.float16):
        loss = model(x).float().square().mean()
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2 ** 30
    print(f"peak GPU memory, frpose-r34 {size[0]}x{size[1]}, batch 32, AMP fp16 step: {peak:.2f} GiB "
          f"on {torch.cuda.get_device_name()}")
    assert 0 < peak < torch.cuda.get_device_properties(0).total_memory / 2 ** 30


def test_predict_detecting_ahead_on_its_own_stream_writes_the_same_poses(tmp_path, capsys):
    """--overlap on CUDA (the detector one image ahead, on a CUDA stream of its own): the same persons and
    keypoints as --no-overlap (within float tolerance: two runs of the same kernels), and the summary
    says how much detection ran beside the pose network."""
    from frpose_cli.weights.checkpoint import save_checkpoint
    from helpers import confident_random_mobilenet, randomised, run_cli
    card = load_card("sbn-r18", (64, 48))
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "m.pt", randomised(card.build_model()), card)
    det = confident_random_mobilenet(tmp_path)
    runs = {}
    for flag in ("--no-overlap", "--overlap"):
        out = tmp_path / flag
        code, stdout, err = run_cli(["predict", COCO / "val2017", "-w", ckpt, "--device", "cuda", "--detector",
                                     "fasterrcnn-mobilenet-v3", "--detector-weights", det, "--det-size", 256,
                                     "--precision", "fp32", "--no-vis", "--no-progress", "--workers", 0, flag,
                                     "--out", out], capsys)
        assert code == 0, err
        print(f"overlap {flag}: {[line for line in stdout.splitlines() if line.startswith('time:')]}")
        runs[flag] = json.loads((out / "predictions.json").read_text())
    a, b = runs["--no-overlap"], runs["--overlap"]
    assert len(a) == len(b) > 0 and [r["image_id"] for r in a] == [r["image_id"] for r in b]
    np.testing.assert_allclose([r["keypoints"] for r in a], [r["keypoints"] for r in b], atol=1e-2)


@pytest.mark.parametrize("arch_model", [("rtmdet-nano", "rtmdet-nano-arch"), ("rtmdet-m", "rtmdet-m-arch")])
def test_rtmdet_on_cuda_equals_mmdet_and_its_fp16_set_up_runs(arch_model):
    """Issue 32 on a GPU: the RTMDet rebuild on CUDA in float32 gives mmdet 3.3.0's boxes (the CPU parity
    fixture, tests/data/rtmdet-mmdet-3.3.0/) within GPU float tolerance; its fp16 set-up runs with its two
    prediction convs in float32 and finite outputs; `--detector auto` on CUDA is the most accurate zoo
    detector.  The fixture's seeded toy weights are no judge of fp16's accuracy (the toy rtmdet-m's
    activations are large: on the CPU its fp16 class logits correlate 0.90-0.99 with float32's), so only
    the well-conditioned toy nano is compared; trained weights go through the gate inside `predict`."""
    from frpose_cli.data.images import read_image
    from frpose_cli.inference.detector_choice import default_detector
    from frpose_cli.inference.rtmdet_detector import RTMDetDetector, letterbox, to_input
    from test_rtmdet_parity import EXPECTED, FIXTURE, IMAGES, expected, same_detections
    arch, model = arch_model
    det = RTMDetDetector(FIXTURE / EXPECTED["models"][model]["checkpoint"], arch=arch, device="cuda",
                         score_thr=0.0)
    images = [read_image(path)[0] for path in IMAGES.values()]
    for name, (boxes, scores, _) in zip(IMAGES, det.raw_detections(images)):
        why = same_detections(boxes.cpu().numpy(), scores.cpu().numpy(), *expected(model, name), px=1e-2,
                              score_tol=1e-3)
        assert not why, f"{model} on {name} (CUDA): {why}"
    fp16 = det._build_setup("fp16")
    assert fp16.bbox_head.rtm_cls[0].weight.dtype == torch.float32
    assert fp16.backbone.stem[0].conv.weight.dtype == torch.float16
    x = to_input(letterbox(images[0], det.size)[0][None], "cuda")
    with torch.inference_mode():
        ref, out = det.model(x), fp16(x.half())
    for (c0, _), (c1, r1) in zip(ref, out):
        assert c1.dtype == r1.dtype == torch.float32 and torch.isfinite(c1).all() and torch.isfinite(r1).all()
        if arch == "rtmdet-nano":
            pair = torch.stack([c0.flatten().double(), c1.flatten().double()])
            assert torch.corrcoef(pair)[0, 1] > 0.999
    assert default_detector("cuda")[0].name == "rtmdet-m"
