"""The detector on the speed path: its set-ups, its gate (detections matched at IoU ≥ 0.9) and the
choice made alongside a first run, cached like the pose network's."""
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from frpose_cli import hardware
from frpose_cli.data.images import read_image
from frpose_cli.hardware import CpuInfo, Hardware
from frpose_cli.inference import detector_setups as ds
from frpose_cli.inference.detectors import ARCHS, TorchvisionDetector
from frpose_cli.precision.cache import cache_file, read_cache
from helpers import confident_random_mobilenet

IMAGES = sorted((Path(__file__).parent / "data" / "coco" / "val2017").glob("*.jpg"))
BF16_CPU = Hardware(CpuInfo("x86_64", "AuthenticAMD", "mocked Zen 4", 25, 17,
                            frozenset({"avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni"}), "AVX512", 2, 2.6),
                    threads=2)
AVX2_CPU = Hardware(CpuInfo("x86_64", "AuthenticAMD", "mocked AVX2", 25, 1, frozenset({"avx2", "fma"}), "AVX2", 2,
                            2.45), threads=2)


def test_gate_passes_identical_boxes_and_rejects_moved_missing_and_extra_ones():
    ref = np.array([[10, 10, 100, 200, 0.9], [300, 40, 80, 160, 0.7]], np.float32)
    assert ds.compare_detections(ref, ref, 0.3) == {"required": 2, "matched": 2, "missing": 0, "extra": 0,
                                                    "worst_iou": 1.0, "worst_score_change": 0.0}
    moved = ref.copy()
    moved[0, 0] += 12          # 12 % of the width: IoU 0.79
    assert ds.compare_detections(ref, moved, 0.3)["missing"] == 1
    rescored = ref.copy()
    rescored[1, 4] -= 0.08     # beyond the score tolerance
    assert ds.compare_detections(ref, rescored, 0.3)["missing"] == 1
    extra = np.concatenate([ref, [[500, 50, 60, 120, 0.8]]])
    assert ds.compare_detections(ref, extra, 0.3)["extra"] == 1
    # around the threshold a score may cross it either way: neither missing nor extra
    edge = np.array([[10, 10, 100, 200, 0.32]], np.float32)
    assert ds.compare_detections(edge, np.zeros((0, 5)), 0.3)["missing"] == 0
    assert ds.compare_detections(np.zeros((0, 5)), edge, 0.3)["extra"] == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 500), st.floats(0, 500), st.floats(5, 300), st.floats(5, 300),
                          st.floats(0.4, 1.0)), min_size=1, max_size=8),
       st.permutations(range(8)))
def test_gate_does_not_depend_on_the_order_of_detections(boxes, order):
    ref = np.array(boxes, np.float64)
    cand = ref[[i for i in order if i < len(ref)]]
    one = ds.compare_detections(ref, cand, 0.3)
    assert one["missing"] == 0 and one["extra"] == 0 and one["matched"] == one["required"]


def _items():
    return [SimpleNamespace(image=read_image(p)[0], file_name=p.name, frame=None) for p in IMAGES]


def test_fused_set_up_passes_its_gate_on_real_images_and_box_noise_is_rejected(tmp_path, monkeypatch):
    weights = confident_random_mobilenet(tmp_path)
    det = TorchvisionDetector(weights, score_thr=0.3, min_size=256, max_size=427,
                              arch="fasterrcnn-mobilenet-v3", setup="fp32")
    fused = ds.build_setup(det.model, "fused")
    items = _items()[:2]
    pairs = [(det._detect(det.model, it), det._detect(fused, it, count_dropped=False)) for it in items]
    report = ds.gate_detections(pairs, 0.3, "fused")
    assert report.passed and report.required > 0 and report.worst_iou > 0.99, report.reason()

    rng = np.random.default_rng(0)
    noisy = [(ref, cand + np.c_[rng.normal(0, 0.1, (len(cand), 2)) * cand[:, 2:4], np.zeros((len(cand), 3))])
             for ref, cand in pairs]
    rejected = ds.gate_detections(noisy, 0.3, "fused")
    assert not rejected.passed and rejected.missing > 0 and "gate failed" in rejected.reason()


@pytest.fixture(scope="module")
def fitted_mobilenet(tmp_path_factory):
    """The MobileNetV3 Faster R-CNN with its output layers fitted to the vendored val images' people
    (tests/detector_fit.py): a decided detector, as trained weights are, without a download."""
    import json
    from detector_fit import fit_person_detector
    torch.manual_seed(0)
    ann = json.loads((IMAGES[0].parent.parent / "annotations" / "person_keypoints_val2017.json").read_text())
    ids = {im["file_name"]: im["id"] for im in ann["images"]}
    people = [np.array([a["bbox"] for a in ann["annotations"] if a["image_id"] == ids[p.name] and not a["iscrowd"]])
              for p in IMAGES]
    model = ARCHS["fasterrcnn-mobilenet-v3"][0](91, min_size=480, max_size=800)
    fit_person_detector(model, [it.image for it in _items()], people)
    path = tmp_path_factory.mktemp("fitted") / "mobilenet-fitted.pth"
    torch.save(model.state_dict(), path)
    return path, sum(len(p) for p in people)


def test_on_a_detector_that_knows_these_people_every_set_up_finds_them_again(fitted_mobilenet, monkeypatch):
    """fused passes its gate exactly; bf16 (mocked native hardware) finds every float32 person again, at
    IoU ≥ 0.75 with scores within 0.01.  Whether its boxes also hold the gate's IoU 0.9 is the gate's call
    on real weights: on this random backbone (features with little to say about where an edge is) bf16's
    rounding moves a few boxes to IoU 0.84-0.9 and lets one duplicate through, and the gate rejects it."""
    monkeypatch.setattr(hardware, "detect", lambda device="cpu": BF16_CPU)
    weights, people = fitted_mobilenet
    make = lambda setup: TorchvisionDetector(weights, score_thr=0.3, min_size=480, max_size=800,   # noqa: E731
                                             arch="fasterrcnn-mobilenet-v3", setup=setup)
    reference, items = make("fp32"), _items()
    ref = [reference(it) for it in items]
    assert sum(int((r[:, 4] >= 0.9).sum()) for r in ref) >= people - 2   # it has learned these people
    for setup in ("fused", "bf16"):
        det = make(setup)
        pairs = [(r, det._detect(det.runner, it, count_dropped=False)) for r, it in zip(ref, items)]
        report = ds.gate_detections(pairs, 0.3, setup)
        assert report.images == len(items) and report.required >= people - 2
        if setup == "fused":
            assert report.passed and report.worst_iou > 0.99, report.reason()
        loose = [ds.compare_detections(r, c, 0.3, iou_min=0.75) for r, c in pairs]
        assert sum(one["missing"] for one in loose) == 0, (setup, report.reason())
        assert max(one["worst_score_change"] for one in loose) < 0.01, (setup, loose)


def test_bf16_set_up_runs_its_backbone_in_bf16_with_mocked_native_hardware(tmp_path, monkeypatch):
    monkeypatch.setattr(hardware, "detect", lambda device="cpu": BF16_CPU)
    assert ds.candidate_for("cpu", BF16_CPU) == "bf16" and ds.candidate_for("cpu", AVX2_CPU) == "fused"
    assert "no native bf16" in ds.unavailable_reason("bf16", "cpu", AVX2_CPU)
    weights = confident_random_mobilenet(tmp_path)
    det = TorchvisionDetector(weights, score_thr=0.3, min_size=256, max_size=427,
                              arch="fasterrcnn-mobilenet-v3", setup="bf16")
    seen = []
    det.runner.backbone.body.register_forward_hook(lambda m, i, o: seen.append({v.dtype for v in o.values()}))
    boxes = det(_items()[0])
    assert seen == [{torch.bfloat16}] and boxes.dtype == np.float32 and boxes.shape[1] == 5
    with pytest.raises(Exception, match="no native bf16"):
        monkeypatch.setattr(hardware, "detect", lambda device="cpu": AVX2_CPU)
        TorchvisionDetector(weights, min_size=256, max_size=427, arch="fasterrcnn-mobilenet-v3", setup="bf16")


def test_first_run_decides_alongside_then_the_next_run_starts_with_the_cached_choice(tmp_path, monkeypatch):
    monkeypatch.setenv("FRPOSE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(hardware, "detect", lambda device="cpu": AVX2_CPU)   # candidate: fused
    weights = confident_random_mobilenet(tmp_path)
    lines = []
    make = lambda: TorchvisionDetector(weights, score_thr=0.3, min_size=256, max_size=427,   # noqa: E731
                                       arch="fasterrcnn-mobilenet-v3", setup=None, log=lines.append)
    det = make()
    assert det.trial_model is not None and "while fused is gated" in lines[0]
    reference = TorchvisionDetector(weights, score_thr=0.3, min_size=256, max_size=427,
                                    arch="fasterrcnn-mobilenet-v3", setup="fp32")
    items = _items()
    outputs = [det(it) for it in items[:ds.TRIAL_IMAGES]]
    for it, out in zip(items, outputs):   # during the trial the run's boxes are float32's
        assert np.array_equal(out, reference(it))
    assert det.trial_model is None and "gate passed" in lines[-1]
    entry = next(e for e in read_cache(cache_file()).values() if e.get("kind") == "detector")
    assert entry["passed"] and entry["setup"] == det.setup in ("fused", "fp32") and entry["tried"] == "fused"
    again = make()
    assert again.trial_model is None and again.setup == entry["setup"] and "decided on" in lines[-1]


def test_a_trial_that_sees_nobody_is_not_remembered(tmp_path, monkeypatch):
    monkeypatch.setenv("FRPOSE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(hardware, "detect", lambda device="cpu": AVX2_CPU)
    weights = confident_random_mobilenet(tmp_path)
    det = TorchvisionDetector(weights, score_thr=0.3, min_size=256, max_size=427, arch="fasterrcnn-mobilenet-v3",
                              setup=None)
    blank = SimpleNamespace(image=np.zeros((64, 64, 3), np.uint8), file_name="x.jpg", frame=None)
    monkeypatch.setattr(det, "_detect", lambda model, item, count_dropped=True: np.zeros((0, 5), np.float32))
    for _ in range(ds.MAX_TRIAL_ITEMS):
        det(blank)
    assert det.trial_model is None and det.setup == "fp32" and "not gated" in det.choice.line
    assert read_cache(cache_file()) == {}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=1, max_size=3), st.booleans(), st.sampled_from([(7, 7), (3, 5)]),
       st.integers(1, 3), st.integers(0, 2**16))
def test_gathered_roi_align_gives_torchvisions_numbers(counts, channels_last, output_size, sampling_ratio, seed):
    """Boxes of every size on every level, some reaching past the image or thinner than a pixel."""
    from torchvision.ops import MultiScaleRoIAlign
    from frpose_cli.inference.roi_pool import GatherRoIPool
    gen = torch.Generator().manual_seed(seed)
    feats = {str(i): torch.randn(len(counts), 8, 40 // 2 ** i, 32 // 2 ** i, generator=gen) for i in range(3)}
    if channels_last:
        feats = {k: v.contiguous(memory_format=torch.channels_last) for k, v in feats.items()}
    boxes = []
    for n in counts:
        xy = torch.rand(n, 2, generator=gen) * 150 - 15
        wh = torch.rand(n, 2, generator=gen) ** 3 * 120
        boxes.append(torch.cat([xy, xy + wh], 1))
    pool = MultiScaleRoIAlign(["0", "1", "2"], output_size, sampling_ratio)
    with torch.inference_mode():
        want = pool(feats, boxes, [(160, 128)] * len(counts))
        got = GatherRoIPool(pool)(feats, boxes, [(160, 128)] * len(counts))
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_gathered_roi_align_on_one_level_and_the_box_head_that_reads_it_as_it_lies():
    from torchvision.models.detection.faster_rcnn import TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign
    from frpose_cli.inference.roi_pool import ChannelsLastBoxHead, GatherRoIPool
    gen = torch.Generator().manual_seed(3)
    feats = {"0": torch.randn(1, 16, 50, 40, generator=gen).contiguous(memory_format=torch.channels_last)}
    xy = torch.rand(60, 2, generator=gen) * 180
    boxes = [torch.cat([xy, xy + 1 + torch.rand(60, 2, generator=gen) * 40], 1)]
    pool = MultiScaleRoIAlign(["0"], 7, 2)
    head = TwoMLPHead(16 * 49, 32)
    with torch.inference_mode():
        want = head(pool(feats, boxes, [(200, 160)]))
        pooled = GatherRoIPool(pool)(feats, boxes, [(200, 160)])
        assert pooled.is_contiguous(memory_format=torch.channels_last)
        got = ChannelsLastBoxHead(head, 16, (7, 7))(pooled)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert got.abs().sum() > 0
    # sample points exactly on the rules' edges (scale 1/4, one sample a box): on the last row, just
    # below it, at -1 (kept, read at 0) and beyond -1 (dropped)
    edges = [torch.tensor([[20.0, 180, 60, 220], [20, 176, 60, 212], [-8, -8, 0, 0], [-12, -12, -4, -4]])]
    one = MultiScaleRoIAlign(["0"], 1, 1)
    with torch.inference_mode():
        torch.testing.assert_close(GatherRoIPool(one)(feats, edges, [(200, 160)]), one(feats, edges, [(200, 160)]))


def test_bf16_weights_converted_once_compute_what_autocast_computes(tmp_path):
    """The bf16 set-up converts its parts' weights once instead of running them under autocast (which casts
    every weight again on each call): the same boxes and scores, bit for bit (with the same RoI pool and
    box head, whose float32 arithmetic is tested above)."""
    from frpose_cli.inference.roi_pool import ChannelsLastBoxHead
    from frpose_cli.net.folding import fold_batchnorm

    class UnderAutocast(torch.nn.Module):
        def __init__(self, body):
            super().__init__()
            self.body = body
            self.out_channels = getattr(body, "out_channels", None)

        def forward(self, x):
            if x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = self.body(x)
            return {k: v.float() for k, v in out.items()} if isinstance(out, dict) else out.float()

    model = torch.load(confident_random_mobilenet(tmp_path), weights_only=True)
    net = ARCHS["fasterrcnn-mobilenet-v3"][0](91, min_size=256, max_size=427)
    net.load_state_dict(model)
    net.eval()
    candidate = ds.build_setup(net, "bf16")
    reference = fold_batchnorm(net)
    reference.backbone = UnderAutocast(reference.backbone)
    reference.rpn.head.conv = UnderAutocast(reference.rpn.head.conv)
    reference.roi_heads.box_roi_pool = candidate.roi_heads.box_roi_pool
    reference.roi_heads.box_head = UnderAutocast(ChannelsLastBoxHead(net.roi_heads.box_head, 256, (7, 7)))
    reference = reference.to(memory_format=torch.channels_last)
    assert next(candidate.backbone.body.parameters()).dtype == torch.bfloat16
    image = torch.from_numpy(_items()[0].image.copy()).permute(2, 0, 1).float().div(255)
    with torch.inference_mode():
        want, got = reference([image])[0], candidate([image])[0]
    assert len(want["boxes"]) > 10
    assert torch.equal(got["boxes"], want["boxes"]) and torch.equal(got["scores"], want["scores"])
