"""`frpose export`: ONNX and TorchScript files with metadata, parity with torch, clear errors."""
import json

import pytest
import torch

from frpose_cli.cards import load_card
from frpose_cli.weights.checkpoint import save_checkpoint
from frpose_cli.errors import FrposeError
from frpose_cli.deploy.export import export_model, parity_check
from frpose_cli.runtime.export_format import METADATA_KEY
from frpose_cli.load import load_pose_model
from frpose_cli.weights.loader import detect_file_kind
from helpers import randomised, run_cli

SIZE = (64, 64)


@pytest.fixture(scope="module", params=["sbn-r18", "frpose-r18"])
def trained(request, tmp_path_factory):
    card = load_card(request.param, SIZE)
    torch.manual_seed(0)
    model = randomised(card.build_model())
    path = save_checkpoint(tmp_path_factory.mktemp("ckpt") / f"{card.name}.pt", model, card)
    return model, card, path


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_passes_parity_and_carries_metadata(trained, fmt, tmp_path, capsys):
    model, card, ckpt = trained
    out = tmp_path / f"model.{fmt}"
    code, stdout, err = run_cli(["export", "--weights", ckpt, "--format", fmt, "--out", out], capsys)
    assert code == 0, err
    assert "parity: max |heatmap diff|" in stdout and "PASS" in stdout and "px" in stdout
    assert detect_file_kind(out) == fmt
    loaded = load_pose_model(out)     # the file alone: card, size and codec from its metadata
    assert loaded.card == card and loaded.codec_name == "sbn"
    assert loaded.backend == ("onnxruntime" if fmt == "onnx" else "torchscript")
    x = torch.randn(3, 3, *SIZE)      # dynamic batch: another size than the traced one
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-4)

    if fmt == "onnx":
        import onnx
        props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
        meta = json.loads(props[METADATA_KEY])
    else:
        extra = {f"{METADATA_KEY}.json": ""}
        torch.jit.load(str(out), _extra_files=extra)
        meta = json.loads(extra[f"{METADATA_KEY}.json"])
    assert meta["model"] == card.name and meta["input_size"] == list(SIZE)
    assert meta["stride"] == card.stride and meta["sigma"] == pytest.approx(card.sigma)
    assert meta["keypoint_names"] == list(card.keypoints.names)
    assert meta["flip_pairs"] == [list(p) for p in card.keypoints.flip_pairs]
    assert meta["normalize"]["mean"] == pytest.approx([0.485, 0.456, 0.406])


def test_static_batch_export_runs_any_batch_in_chunks(trained, tmp_path):
    model, card, _ = trained
    if card.name != "sbn-r18":
        pytest.skip("one card is enough")
    path = export_model(model, card, "onnx", tmp_path / "static.onnx", dynamic_batch=False, batch=2)
    loaded = load_pose_model(path, backend="onnxruntime")
    assert loaded.fixed_batch == 2
    x = torch.randn(3, 3, *SIZE)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-4)


def test_parity_check_fails_on_a_different_model(trained):
    model, card, _ = trained
    other = randomised(card.build_model(), seed=1)
    report = parity_check(model, other, card)
    assert not report.passed and "FAIL" in report.line() and report.heatmap_max_abs > 1e-3


@pytest.mark.parametrize("extra,needle", [
    (["--format", "tflite"], "unknown --format"),
    (["--input-size", "128x96"], "is for 64x64 inputs"),
    (["--model", "frpose-r34"], "not frpose-r34"),
])
def test_export_usage_errors_are_one_line(trained, extra, needle, tmp_path, capsys):
    _, card, ckpt = trained
    args = ["export", "--weights", ckpt, "--out", tmp_path / "x.onnx", *extra]
    if "--model" in extra:
        args = ["export", extra[1], "--weights", ckpt, "--out", tmp_path / "x.onnx"]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err


def test_onnx_needs_onnxruntime_and_metadata(trained, tmp_path):
    model, card, _ = trained
    path = export_model(model, card, "onnx", tmp_path / "m.onnx")
    with pytest.raises(FrposeError, match="--backend onnxruntime"):
        load_pose_model(path, backend="torch")
    import onnx
    bare = onnx.load(str(path))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(FrposeError, match="without frpose metadata"):
        load_pose_model(tmp_path / "bare.onnx")
