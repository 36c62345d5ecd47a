"""Regressions of the bad-input review: resumed training writes where the run now is and takes every
option typed, best.pt is slim, derived results never replace primary ones, files follow the umask."""
import json
import os
import shutil
import stat

import torch

from frpose_cli.weights.checkpoint import load_checkpoint
from helpers import run_cli
from test_train import COCO_DIR, small_split

DATA = COCO_DIR


def _train_args(tmp_path, out, *extra):
    return ["train", "sbn-r18", "--train-ann", small_split(tmp_path, "train", 2), "--train-images",
            COCO_DIR / "train2017", "--val-ann", small_split(tmp_path, "val", 2), "--val-images", COCO_DIR / "val2017",
            "--input-size", "64x32", "--batch-size", "2", "--pretrained", "none", "--no-progress", "--out", out, *extra]


def test_a_moved_run_resumes_where_it_is_with_the_options_typed(tmp_path, capsys):
    code, _, err = run_cli(_train_args(tmp_path, tmp_path / "first", "--epochs", "1", "--workers", "0",
                                       "--keep-last"), capsys)   # extended below
    assert code == 0, err
    shutil.move(tmp_path / "first", tmp_path / "moved")
    # --workers 2 is the default value: typed, it still overrides the saved 0
    code, out, err = run_cli(["train", "--resume", tmp_path / "moved", "--epochs", "2", "--workers", "2", "--no-progress"],
                             capsys)
    assert code == 0, err
    assert not (tmp_path / "first").exists(), "the old location was written to"
    last = load_checkpoint(tmp_path / "moved" / "last.pt")
    assert last["epoch"] == 2 and last["train_config"]["workers"] == 2
    assert last["train_config"]["out"] == str(tmp_path / "moved")
    # best.pt holds what inference and --init need (and how it was trained), not the training state
    best = torch.load(tmp_path / "moved" / "best.pt", weights_only=True)
    assert {"optimizer", "scheduler", "rng"}.isdisjoint(best) and "state_dict" in best and "train_config" in best
    assert (tmp_path / "moved" / "best.pt").stat().st_size < 0.6 * (tmp_path / "moved" / "last.pt").stat().st_size
    # a finished run is explained, not silently "done"
    code, out, err = run_cli(["train", "--resume", tmp_path / "moved"], capsys)
    assert code == 0 and "has finished its 2 epochs: nothing to do" in out and "--epochs N` with N > 2 extends it" in out
    # options that would change the optimisation are refused, naming both values
    code, _, err = run_cli(["train", "--resume", tmp_path / "moved", "--epochs", "3", "--lr", "0.5"], capsys)
    assert code == 2 and "--lr 0.5 differs from the resumed run's 0.001" in err


def test_oracle_and_model_results_never_replace_each_other(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ann = DATA / "annotations" / "person_keypoints_val2017.json"
    code, _, err = run_cli(["eval", "sbn-r18", "--oracle", "--ann", ann], capsys)
    assert code == 0, err
    first = tmp_path / "runs" / "eval" / "run1" / "oracle-results.json"
    before = first.read_bytes()
    code, _, err = run_cli(["eval", "sbn-r18", "--oracle", "--ann", ann, "--codec", "dark"], capsys)
    assert code == 0 and (tmp_path / "runs" / "eval" / "run2" / "oracle-results.json").is_file(), err
    assert first.read_bytes() == before


def test_written_files_follow_the_umask(tmp_path, capsys):
    old = os.umask(0o027)
    try:
        from frpose_cli.fileio import atomic_write_json
        path = atomic_write_json(tmp_path / "r.json", [1])
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
        os.umask(0o022)
        path = atomic_write_json(tmp_path / "s.json", [1])
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    finally:
        os.umask(old)
    assert json.loads(path.read_text()) == [1]
