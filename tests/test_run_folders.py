"""Every verb's default output comes from the one helper, frpose_cli.run_folders.new_run_path:
which folder each verb writes, that concurrent runs never share one, and that a failed run
leaves none behind."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from frpose_cli import run_folders
from frpose_cli.cards import load_card
from frpose_cli.weights.checkpoint import save_checkpoint
from helpers import run_cli

DATA = Path(__file__).parent / "data" / "coco"
ANN = DATA / "annotations" / "person_keypoints_val2017.json"
IMAGE = DATA / "val2017" / "000000040083.jpg"
FAST = ["--no-progress", "--workers", "0"]

# verb → (its command line without --out, the helper's arguments, the default output it makes);
# bench and merge make no run folder (bench writes only --json, merge into the run it merges).
VERBS = {
    "predict": (lambda ckpt: ["predict", IMAGE, "-w", ckpt, "--detector", "whole-image", "--no-flip", "--no-vis",
                              *FAST], [("predict", "run", "")], "runs/predict/run1/predictions.json"),
    "eval": (lambda ckpt: ["eval", "-w", ckpt, "--ann", ANN, "--images", DATA / "val2017", "--gt-boxes", "--no-flip",
                           "--backend", "torch", *FAST], [("eval", "run", "")], "runs/eval/run1/results.json"),
    "eval --analyze": (lambda ckpt: ["eval", "sbn-r18", "--oracle", "--ann", ANN, "--analyze"],
                       [("eval", "run", ""), ("analyze", "run", "")], "runs/analyze/run1/analysis.json"),
    "train": (lambda ckpt: ["train", "sbn-r18", "--data", DATA, "--input-size", "64x32", "--epochs", "1",
                            "--batch-size", "2", "--workers", "0", "--pretrained", "none", "--val-every", "0",
                            "--device", "cpu", "--no-progress"], [("train", "sbn-r18", "")], "runs/train/sbn-r18/last.pt"),
    "export": (lambda ckpt: ["export", "-w", ckpt, "--no-check"], [("export", "sbn-r18-64x32", ".onnx")],
               "runs/export/sbn-r18-64x32.onnx"),
    "reproduce": (lambda ckpt: ["reproduce", "table1", "--data", DATA, "--dry-run", "--only", "sbn-r34-256x192",
                                "--no-progress"], [("reproduce", "table1", "")],
                  "runs/reproduce/table1/sbn-r34-256x192/eval/metrics.json"),
    "bench": (lambda ckpt: ["bench", "sbn-r18", "--input-size", "64x32", "--iters", "1", "--warmup", "0",
                            "--batch", "1", "--device", "cpu"], [], None),
}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    card = load_card("sbn-r18", (64, 32))
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "sbn-r18.pt", card.build_model(), card)


@pytest.fixture
def calls(monkeypatch):
    """Every call of the helper, by whichever verb, with what it returned."""
    seen, real = [], run_folders.new_run_path

    def spy(verb, name="run", suffix="", root=run_folders.RUNS, what="--out"):
        path = real(verb, name, suffix, root, what)
        seen.append(((verb, name, suffix), path))
        return path
    monkeypatch.setattr(run_folders, "new_run_path", spy)
    return seen


@pytest.mark.parametrize("verb", list(VERBS))
def test_each_verb_writes_its_default_output_in_a_folder_from_the_one_helper(verb, ckpt, calls, tmp_path,
                                                                          monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv, expected_calls, output = VERBS[verb]
    code, out, err = run_cli(argv(ckpt), capsys)
    assert code == 0, out + err
    assert [args for args, _ in calls] == expected_calls
    if output is None:
        assert not (tmp_path / "runs").exists()
        return
    assert (tmp_path / output).is_file()
    # everything under runs/ is a path the helper handed out, inside one, or a folder above one
    claimed = [path for _, path in calls]
    for p in (q.relative_to(tmp_path) for q in (tmp_path / "runs").rglob("*")):
        assert any(p == c or c in p.parents or p in c.parents for c in claimed), p


def test_two_concurrent_creations_get_two_folders(tmp_path):
    barrier, made = threading.Barrier(8), []

    def claim():
        barrier.wait()
        made.append(run_folders.new_run_path("predict", root=tmp_path))
    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 8 and all(p.is_dir() for p in made)
    assert sorted(p.name for p in made) == [f"run{i}" for i in range(1, 9)]
    for p in made:
        run_folders.release(p)


def test_a_folder_made_after_the_scan_is_not_taken(tmp_path, monkeypatch):
    """The race by hand: another run creates run1 between this one's scan and its mkdir."""
    (tmp_path / "eval" / "run1").mkdir(parents=True)
    monkeypatch.setattr(run_folders, "_numbers", lambda *a: [])   # the scan saw nothing
    assert run_folders.new_run_path("eval", root=tmp_path) == tmp_path / "eval" / "run2"
    first = run_folders.new_run_path("export", "m-64x32", ".onnx", root=tmp_path)
    assert run_folders.new_run_path("export", "m-64x32", ".onnx", root=tmp_path).name == "m-64x32-2.onnx"
    assert first.name == "m-64x32.onnx" and first.is_file()
    run_folders.release_unused()


def test_numbering(tmp_path):
    for name in ("run1", "run3", "run7x", "other"):
        (tmp_path / "predict" / name).mkdir(parents=True)
    assert run_folders.new_run_path("predict", root=tmp_path).name == "run4"   # after the highest, gaps kept
    assert run_folders.new_run_path("train", "sbn-r50", root=tmp_path).name == "sbn-r50"
    assert run_folders.new_run_path("train", "sbn-r50", root=tmp_path).name == "sbn-r50-2"
    (tmp_path / "train" / "sbn-r50-5").mkdir()
    assert run_folders.new_run_path("train", "sbn-r50", root=tmp_path).name == "sbn-r50-6"
    assert run_folders.new_run_path("train", "sbn-r50-x", root=tmp_path).name == "sbn-r50-x"
    run_folders.release_unused()


def test_an_unused_claim_is_removed_and_a_used_one_kept(tmp_path):
    empty = run_folders.new_run_path("predict", root=tmp_path / "runs")
    used = run_folders.new_run_path("predict", root=tmp_path / "runs")
    (used / "predictions.json").write_text("[]")
    run_folders.release_unused()
    assert not empty.exists() and (used / "predictions.json").is_file()
    run_folders.release(used)   # no longer claimed: nothing happens
    assert used.is_dir()


def test_a_failed_run_leaves_no_run_folder(ckpt, tmp_path, monkeypatch, capsys):
    """Failures after the folder was made (the weights, the export itself): nothing is left."""
    from frpose_cli.deploy import export as export_core
    from frpose_cli.errors import FrposeError
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["predict", IMAGE, "-w", tmp_path / "missing.pt", "--detector", "whole-image", *FAST],
                           capsys)
    assert code == 2 and err.count("frpose: error:") == 1
    monkeypatch.setattr(export_core, "export_model", lambda *a, **k: (_ for _ in ()).throw(FrposeError("no room")))
    code, _, err = run_cli(["export", "-w", ckpt], capsys)
    assert code == 2 and "no room" in err
    assert not (tmp_path / "runs").exists()


def test_an_unwritable_runs_folder_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "runs").write_text("a file where the folder goes")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(run_folders.FrposeError, match="--out runs/predict"):
        run_folders.new_run_path("predict")
