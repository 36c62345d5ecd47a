"""Foreign and damaged files are called what they are: `models --inspect` on a zip checkpoint cut short, a
classifier exported to ONNX, a pose ONNX with and without frpose metadata and random bytes named .onnx;
a truncated last.pt on resume says how to recover; `reproduce --restart ROW` starts only that row over."""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from frpose_cli.cards import load_card
from frpose_cli.errors import FrposeError
from frpose_cli.runtime.export_format import METADATA_KEY, export_metadata
from frpose_cli.weights.checkpoint import load_checkpoint, read_checkpoint_file
from frpose_cli.weights.inspection import inspect_weights
from helpers import run_cli

DATA = Path(__file__).resolve().parent / "data" / "coco"


def rows(text: str) -> dict:
    """An inspection report as {label: value} (labels are padded to one width)."""
    return {label: value.strip() for label, value in (line.split("  ", 1) for line in text.splitlines())}


def cut_zip(path: Path) -> Path:
    """A small torch.save file (a zip archive) cut in the middle, as an interrupted copy leaves it."""
    torch.save({"format": "frpose-checkpoint/1", "state_dict": {"w": torch.zeros(2000)}}, path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


def onnx_file(path: Path, net: nn.Module, shape, metadata: dict | None = None) -> Path:
    """``net`` exported to ONNX (batch symbolic), with ``metadata`` as its frpose metadata when given."""
    import onnx
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), (torch.zeros(shape),), buf, dynamo=False, input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    model = onnx.load_from_string(buf.getvalue())
    if metadata is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    path.write_bytes(model.SerializeToString())
    return path


def test_a_zip_checkpoint_cut_short_is_named_truncated_not_text(tmp_path, capsys):
    path = cut_zip(tmp_path / "model.pt")
    report = rows(inspect_weights(str(path)).text())
    assert report["container"].startswith("DAMAGED: a torch.save zip archive cut short (truncated): ")
    assert "without the central directory that ends a whole zip" in report["container"]
    code, out, err = run_cli(["models", "--inspect", path], capsys)
    assert code == 0 and "cut short" in out, out + err
    with pytest.raises(FrposeError) as caught:   # every verb reading it says the same, not "a text file"
        read_checkpoint_file(path)
    assert "cut short" in str(caught.value) and "text file" not in str(caught.value)


def test_a_classifier_exported_to_onnx_is_described_by_its_graph(tmp_path):
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    report = rows(inspect_weights(str(onnx_file(tmp_path / "classifier.onnx", net, (1, 3, 32, 32)))).text())
    assert report["kind"] == "ONNX model (producer: pytorch)"
    assert report["inputs"] == "input: float32 batch×3×32×32"
    assert report["outputs"] == "output: float32 batch×10"
    assert report["metadata"] == "no frpose metadata"
    assert report["frpose runs it"].startswith("no: not a pose heatmap model")
    assert "a classifier?" in report["frpose runs it"]
    assert "card is in" not in inspect_weights(str(tmp_path / "classifier.onnx")).text()


@pytest.mark.parametrize("with_metadata", [False, True])
def test_a_pose_heatmap_onnx_runs_only_with_frpose_metadata(tmp_path, with_metadata):
    card = load_card("frpose-r18", (64, 64))
    meta = export_metadata(card, None, "onnx", True, 1, 17) if with_metadata else None
    path = onnx_file(tmp_path / "pose.onnx", nn.Conv2d(3, 17, 4, stride=4), (1, 3, 64, 64), meta)
    report = rows(inspect_weights(str(path)).text())
    assert (report["inputs"], report["outputs"]) == ("input: float32 batch×3×64×64", "output: float32 batch×17×16×16")
    if with_metadata:
        assert report["metadata"].startswith("frpose-export/1")
        assert (report["card"], report["input size"], report["codec"], report["precision"]) == (
            "frpose-r18 (recorded in the metadata)", "64x64 (recorded in the metadata)", "sbn (σ 2, stride 1)",
            "fp32 (as exported: the file runs in it)")
        assert report["frpose runs it"].startswith("yes: a pose heatmap model with its card in the metadata")
    else:
        assert report["frpose runs it"].startswith("no, not as it is: a pose heatmap model (17 heatmaps) without "
                                                   "frpose metadata")
        assert "`frpose export`" in report["frpose runs it"]


def test_random_bytes_named_onnx_are_not_an_onnx_model(tmp_path, capsys):
    path = tmp_path / "model.onnx"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    code, out, err = run_cli(["models", "--inspect", path], capsys)
    assert code == 0, err
    report = rows(out.strip())
    assert report["kind"] == ("not a readable ONNX model: its 4096 bytes do not parse as one (a damaged or cut-short "
                              "file, or only its name says ONNX)")
    assert report["frpose runs it"] == "no"


@pytest.mark.parametrize("beside", [(), ("best.pt",), ("epoch3.pt", "best.pt")])
def test_resuming_a_truncated_last_pt_says_how_to_recover_in_one_line(tmp_path, capsys, beside):
    run = tmp_path / "run"
    run.mkdir()
    cut_zip(run / "last.pt")
    for name in beside:
        torch.save({"w": torch.zeros(1)}, run / name)
    code, out, err = run_cli(["train", "--resume", run], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, out + err
    assert err.startswith(f"frpose: error: --resume {run}: {run / 'last.pt'} cannot be resumed, it is damaged: a "
                          "torch.save zip archive cut short (truncated)")
    if "epoch3.pt" in beside:
        assert f"`frpose train --resume {run / 'epoch3.pt'}`" in err
    else:
        assert "start the run again with the same options and a new --out" in err
        assert (f"--init {run / 'best.pt'}" in err) == ("best.pt" in beside)


def snapshot(folder: Path) -> dict:
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.usefixtures("one_thread")
def test_reproduce_restart_trains_one_damaged_row_again_and_touches_no_other(tmp_path, capsys):
    out = tmp_path / "table1"
    common = ["reproduce", "table1", "--data", DATA, "--dry-run", "--out", out, "--no-progress"]
    assert run_cli([*common, "--plan"], capsys)[0] == 0              # the folder and its settings
    damaged, other = "sbn-r34-256x192", "fr-sbn-r34-256x192"
    (out / damaged / "train").mkdir(parents=True)
    cut_zip(out / damaged / "train" / "last.pt")
    for rel, text in (("train/last.pt", "weights"), ("train/metrics.jsonl", ""), ("eval/metrics.json", "{}")):
        (out / other / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / other / rel).write_text(text)
    before = snapshot(out / other)

    code, stdout, stderr = run_cli([*common, "--only", damaged], capsys)
    assert code == 2 and stderr.count("\n") == 1 and "Traceback" not in stderr, stdout + stderr
    assert f"{damaged}: {out / damaged / 'train' / 'last.pt'} is damaged: a torch.save zip archive cut short" in stderr
    assert f"rerun the same command with --restart {damaged} to train this row again" in stderr

    code, stdout, stderr = run_cli([*common, "--restart", damaged], capsys)
    assert code == 0, stdout + stderr
    assert f"{damaged}: --restart: removed {out / damaged}" in stdout
    assert f"| {damaged} |" in stdout and f"| {other} |" not in stdout   # that row alone
    assert load_checkpoint(out / damaged / "train" / "last.pt")["epoch"] == 1
    assert (out / damaged / "eval" / "metrics.json").is_file()
    assert snapshot(out / other) == before


@pytest.mark.parametrize("args, message", [
    (["--restart", "sbn-r50-256x192"], "--restart sbn-r50-256x192: not a row of table1"),
    (["--restart", "sbn-r34-256x192", "--only", "fr-sbn-r34-256x192"], "runs that row alone: drop --only"),
    (["--restart", "sbn-r34-256x192", "--plan"], "--restart runs its row now: drop --plan"),
])
def test_a_wrong_restart_is_one_line_before_any_work(tmp_path, capsys, args, message):
    code, stdout, stderr = run_cli(["reproduce", "table1", "--data", DATA, "--out", tmp_path / "out", *args], capsys)
    assert code == 2 and stderr.count("\n") == 1 and message in stderr, stdout + stderr
    assert not (tmp_path / "out").exists()


MODEL_ROWS = ("card", "input size", "codec", "keypoints", "channel order", "precision", "source")


def test_a_checkpoint_and_its_exports_are_described_by_the_same_rows(tmp_path):
    """One account of what model a file holds, whether checkpoint, ONNX or TorchScript: the same rows, the
    same values where the same thing is recorded, and no row contradicting another ('card: ignored')."""
    from frpose_cli.deploy.export import export_model
    from frpose_cli.weights.checkpoint import save_checkpoint
    card = load_card("sbn-r18", (64, 64))
    torch.manual_seed(0)
    net = card.build_model().eval()
    ckpt = save_checkpoint(tmp_path / "best.pt", net, card, epoch=3, metrics={"val_AP": 0.5},
                           init={"source": "sbn-r18"})
    reports = {"checkpoint": rows(inspect_weights(str(ckpt)).text())}
    for fmt in ("onnx", "torchscript"):
        path = export_model(net, card, fmt, tmp_path / f"best.{fmt}", source=str(ckpt))
        reports[fmt] = rows(inspect_weights(str(path)).text())
    for kind, report in reports.items():
        assert all(label in report for label in MODEL_ROWS), (kind, report)
        where = "recorded in the file" if kind == "checkpoint" else "recorded in the metadata"
        assert report["input size"] == f"64x64 ({where})" and report["channel order"] == f"rgb ({where})"
        assert report["card"] == f"sbn-r18 ({where})" + (": fits" if kind == "checkpoint" else "")
        assert report["codec"] == f"sbn (σ {card.sigma:g}, stride {card.stride})" == "sbn (σ 0.5, stride 4)"
        assert report["keypoints"] == "17: nose, left_eye, right_eye, left_ear, right_ear, … (+12 more)"
        assert report["precision"].startswith("fp32 (")
    checkpoint = reports["checkpoint"]
    assert "card: read, the model card" in checkpoint["parts"] and "ignored" not in checkpoint["parts"]
    assert checkpoint["source"] == "frpose train, after epoch 3 (val AP 50.0), started from sbn-r18"
    for fmt in ("onnx", "torchscript"):
        assert reports[fmt]["source"].startswith(f"frpose export --format {fmt} of {ckpt} (torch ")
        assert reports[fmt]["metadata"].startswith("frpose-export/1")
        assert reports[fmt]["frpose runs it"].startswith("yes: ")


def test_a_torchscript_file_without_frpose_metadata_is_named_so(tmp_path):
    path = tmp_path / "plain.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)   # "torch.jit.script/save is deprecated"
        torch.jit.save(torch.jit.script(nn.Conv2d(3, 17, 1)), str(path))
    report = rows(inspect_weights(str(path)).text())
    assert (report["kind"], report["metadata"]) == ("TorchScript module", "no frpose metadata")
    assert report["frpose runs it"].startswith("no: a TorchScript file without frpose metadata")
    assert "card" not in report
