"""Backends behind one call: ONNX Runtime gives torch's keypoints on the real images, in predict,
eval and bench; file kinds are told apart; the torch set-ups agree with eager."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from frpose_cli.deploy.bench import bench_card
from frpose_cli.cards import load_card
from frpose_cli.weights.checkpoint import save_checkpoint
from frpose_cli.errors import FrposeError
from frpose_cli.deploy.export import export_model
from frpose_cli.runtime.optimize import input_memory_format, prepare_for_inference
from frpose_cli.load import load_pose_model
from frpose_cli.weights.loader import detect_file_kind
from helpers import randomised, run_cli

DATA = Path(__file__).parent / "data" / "coco"
VAL = DATA / "val2017"
DET_JSON = DATA / "person_detection_results" / "COCO_val2017_detections_AP_H_56_person_subset.json"
SIZE = (128, 96)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A frpose-r18 checkpoint and its ONNX export."""
    folder = tmp_path_factory.mktemp("runtime")
    card = load_card("frpose-r18", SIZE)
    torch.manual_seed(0)
    model = randomised(card.build_model())
    ckpt = save_checkpoint(folder / "frpose-r18.pt", model, card)
    onnx_path = export_model(model, card, "onnx", folder / "frpose-r18.onnx")
    return ckpt, onnx_path


def keypoints_by_box(path: Path) -> dict:
    return {(r["image_id"], tuple(r["bbox"])): np.array(r["keypoints"]).reshape(-1, 3)
            for r in json.loads(path.read_text())}


def test_predict_onnxruntime_matches_torch_on_real_images(files, tmp_path, capsys):
    ckpt, onnx_path = files
    runs = {}
    for name, weights, backend in (("torch", ckpt, "torch"), ("ort", onnx_path, "onnxruntime")):
        out = tmp_path / name
        code, stdout, err = run_cli(["predict", VAL, "--weights", weights, "--backend", backend, "--boxes", DET_JSON,
                                     "--det-thr", "0.8", "--out", out, "--no-vis", "--no-progress", "--nms-thr", "1"], capsys)
        assert code == 0, err
        runs[name] = keypoints_by_box(out / "predictions.json")
        meta = json.loads((out / "images.json").read_text())
        assert meta["backend"] == ("torch" if name == "torch" else "onnxruntime")
    assert runs["torch"].keys() == runs["ort"].keys() and len(runs["torch"]) >= 4
    worst = max(np.abs(runs["torch"][k][:, :2] - runs["ort"][k][:, :2]).max() for k in runs["torch"])
    assert worst < 0.5, worst


def test_eval_onnxruntime_gives_torchs_results(files, tmp_path, capsys):
    ckpt, onnx_path = files
    results = {}
    for name, weights, backend in (("torch", ckpt, "torch"), ("ort", onnx_path, "auto")):
        out = tmp_path / f"{name}.json"
        code, _, err = run_cli(["eval", "--weights", weights, "--backend", backend, "--data", DATA, "--gt-boxes",
                                "--out", out,
                                "--no-progress", "--workers", "0", "--cocoeval", "pycocotools"], capsys)
        assert code == 0, err
        assert ("on cpu (onnxruntime) in fp32" in err) == (name == "ort"), err   # the runtime named once
        results[name] = json.loads(out.read_text())
    assert len(results["torch"]) == len(results["ort"]) > 0
    for a, b in zip(results["torch"], results["ort"]):
        assert a["image_id"] == b["image_id"]
        assert np.abs(np.array(a["keypoints"]) - np.array(b["keypoints"]))[0::3].max() < 0.5


def test_checkpoint_on_onnxruntime_and_backend_errors(files):
    ckpt, onnx_path = files
    ort_model = load_pose_model(ckpt, backend="onnxruntime")   # exported in memory
    torch_model = load_pose_model(ckpt, backend="torch", setup="eager")
    assert load_pose_model(ckpt).backend == "onnxruntime"      # the measured CPU default
    x = torch.randn(2, 3, *SIZE)
    with torch.no_grad():
        assert torch.allclose(ort_model(x), torch_model(x), atol=1e-4)
    with pytest.raises(FrposeError, match="unknown backend"):
        load_pose_model(ckpt, backend="tensorrt")
    with pytest.raises(FrposeError, match="not frpose-r34"):
        load_pose_model(onnx_path, model_name="frpose-r34")
    with pytest.raises(FrposeError, match="weights not found"):
        load_pose_model(onnx_path.parent / "missing.onnx")


def test_file_kinds_are_detected_from_content(files, tmp_path):
    ckpt, onnx_path = files
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(onnx_path.read_bytes())
    legacy = tmp_path / "legacy.pth.tar"
    torch.save({"conv1.weight": torch.zeros(1)}, legacy, _use_new_zipfile_serialization=False)
    script = torch.jit.script(torch.nn.Linear(2, 2))
    script.save(str(tmp_path / "ts.pt"))
    assert [detect_file_kind(p) for p in (ckpt, onnx_path, renamed, legacy, tmp_path / "ts.pt")] == \
        ["torch", "onnx", "onnx", "torch", "torchscript"]


def test_bench_times_the_setup_it_names(monkeypatch):
    """bench_card prepares exactly the set-up asked for (checked by running what it timed against
    eager), and its derived figures follow from its measurements."""
    from frpose_cli.deploy import bench as bench_core
    card = load_card("sbn-r18", (64, 64))
    timed = {}
    real = bench_core.prepare_for_inference

    def spy(model, device, setup, *args):
        prepared = real(model, device, setup, *args)
        x = torch.randn(2, 3, 64, 64)
        with torch.no_grad():
            timed[setup] = (type(prepared).__name__, torch.allclose(
                prepared(x.contiguous(memory_format=input_memory_format(setup))).float(), model.eval()(x), atol=1e-4))
        return prepared
    monkeypatch.setattr(bench_core, "prepare_for_inference", spy)
    for setup in ("onnxruntime", "channels_last"):
        r = bench_card(card, torch.device("cpu"), setup, batch=2, warmup=0, iters=1, matmul_peak=1.0)
        assert r.setup == setup and timed[setup][1], setup
        assert r.throughput_ips == pytest.approx(r.batch * 1e3 / r.batch_latency_ms, rel=1e-2)
        assert r.achieved_gflops == pytest.approx(2 * r.gmacs * r.throughput_ips, rel=1e-2)
    assert timed["onnxruntime"][0] == "OnnxRuntimeNet" and timed["channels_last"][0] == "PoseNet"


def test_torch_setups_agree_with_eager():
    torch.manual_seed(0)
    card = load_card("frpose-r18", (64, 64))
    model = randomised(card.build_model())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        for setup in ("channels_last", "folded", "bf16", "onnxruntime"):   # onnxruntime: traced at 256x192
            out = prepare_for_inference(model, torch.device("cpu"), setup)(
                x.contiguous(memory_format=input_memory_format(setup)))
            tol = 5e-2 if setup == "bf16" else 1e-4   # bf16 keeps 8 bits of mantissa
            assert out.dtype == torch.float32
            assert torch.allclose(out, ref, atol=tol * ref.abs().max().item()), setup


def test_python_api_and_cli_pick_the_same_default_device(files, monkeypatch):
    """One device policy (issue 20): load_pose_model(device=None) takes pick_device's default, CUDA when
    present, else the CPU; ONNX files (ONNX Runtime's CPU provider) default to the CPU."""
    from types import SimpleNamespace
    from frpose_cli.device import pick_device
    from frpose_cli import load
    ckpt, onnx_path = files
    seen = []
    monkeypatch.setattr(load, "runnable_model", lambda net, card, device, *a, **k: seen.append(device) or SimpleNamespace())
    for cuda in (False, True):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        load_pose_model(ckpt)
        assert seen[-1] == pick_device(None) == torch.device("cuda" if cuda else "cpu")
        assert load_pose_model(onnx_path).backend == "onnxruntime"    # the CPU, also with CUDA present
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(FrposeError, match="CUDA is not available"):
        load_pose_model(ckpt, device="cuda")
