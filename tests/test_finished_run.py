"""What a finished training run keeps (issue 34): its weights once, not the optimiser state, unless
--keep-last; extending such a run is refused in one line; the validation pass is never silent and the
run's last line says where its results are."""
import os


from frpose_cli.fileio import atomic_link
from frpose_cli.jobs import progress
from frpose_cli.jobs.shards import Shard
from frpose_cli.weights.checkpoint import TRAINING_STATE, load_checkpoint
from helpers import run_cli
from test_train import COCO_DIR, small_split


def folder_bytes(folder) -> int:
    """Bytes on disk as `du` counts them: a file with two names (a hard link) once."""
    sizes = {(p.stat().st_dev, p.stat().st_ino): p.stat().st_size for p in folder.rglob("*") if p.is_file()}
    return sum(sizes.values())


def test_a_finished_run_keeps_its_weights_once_and_refuses_to_be_extended(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(progress, "LINE_SECONDS", 0.0)   # a validation line at every batch
    run = tmp_path / "run"
    code, out, err = run_cli(["train", "sbn-r18", "--train-ann", small_split(tmp_path, "train", 4), "--train-images",
                              COCO_DIR / "train2017", "--val-ann", small_split(tmp_path, "val", 3), "--val-images",
                              COCO_DIR / "val2017", "--input-size", "64x32", "--epochs", "1", "--batch-size", "2",
                              "--workers", "0", "--pretrained", "none", "--no-progress", "--out", run], capsys)
    assert code == 0, err
    lines = out.splitlines()
    # training speaks under --no-progress (a line per step here, every 5 s in real runs), and so does the
    # validation pass: the loss pass, then the AP pass with the flip test
    assert [ln for ln in lines if ln.startswith("epoch 1/1 step ")][:1] == [ln for ln in lines if ln.startswith(
        "epoch 1/1 step 1/2 (50 %), loss ")], out
    assert any(ln.startswith("epoch 1/1 step 2/2 (100 %), loss ") and ln.endswith(" samples/s") for ln in lines), out
    assert any(ln.startswith("epoch 1 validation: val loss 2/3 crops (67 %)") for ln in lines), out
    assert any(ln.startswith("epoch 1 validation: eval 3/3 crops (100 %), in ") for ln in lines), out
    assert lines[-1] == (f"done: {run}: last.pt (epoch 1, weights only), best.pt (epoch 1, best AP), metrics.jsonl, "
                         "training_curve.png")

    last = load_checkpoint(run / "last.pt")
    assert not set(TRAINING_STATE) & set(last), sorted(last)
    assert last["epoch"] == 1 and last["train_config"]["epochs"] == 1 and "state_dict" in last
    assert (run / "best.pt").samefile(run / "last.pt")   # epoch 1 is the best: one file, two names
    weights = sum(t.numel() * t.element_size() for t in last["state_dict"].values())
    assert folder_bytes(run) < 1.02 * weights + 200_000, (folder_bytes(run), weights)

    code, out, _ = run_cli(["train", "--resume", run, "--no-progress"], capsys)
    assert code == 0 and "has finished its 1 epochs: nothing to do; it finished without --keep-last" in out
    code, out, err = run_cli(["train", "--resume", run, "--epochs", "2", "--no-progress"], capsys)
    assert code == 2 and err.count("\n") == 1, out + err
    assert err.startswith(f"frpose: error: --epochs 2: {run} finished its 1 epochs without --keep-last, so its "
                          "training state (optimiser, learning-rate schedule, RNG) was not kept")
    assert f"`frpose train sbn-r18 --init {run / 'last.pt'} --epochs K`" in err
    assert load_checkpoint(run / "last.pt")["epoch"] == 1


def test_progress_lines_replace_a_bar_nobody_sees_only_where_asked(tmp_path, monkeypatch):
    monkeypatch.setattr(progress, "LINE_SECONDS", 0.0)
    said = []
    silent = progress.JobProgress(False, Shard(), tmp_path, "eval", "crop", 4)   # predict's and eval's: unchanged
    silent.update(4)
    silent.close()
    with progress.progress_lines(said.append, "epoch 2 validation"):
        for enabled in (False, True):    # --no-progress, and a bar whose stderr is no terminal (pytest's)
            bar = progress.JobProgress(enabled, Shard(), tmp_path, "val loss", "crop", 4)
            bar.update(3)
            bar.update(1)
            bar.close()
    assert len(said) == 6 and said[0].startswith("epoch 2 validation: val loss 3/4 crops (75 %), ")
    assert said[2].startswith("epoch 2 validation: val loss 4/4 crops (100 %), in 0 s")


def test_atomic_link_names_one_file_twice_or_changes_nothing(tmp_path, monkeypatch):
    (tmp_path / "a").write_text("new")
    (tmp_path / "b").write_text("old")
    assert atomic_link(tmp_path / "a", tmp_path / "b") and (tmp_path / "b").samefile(tmp_path / "a")

    def no_links(src, dst):
        raise OSError(1, "Operation not permitted")
    monkeypatch.setattr(os, "link", no_links)
    (tmp_path / "c").write_text("old")
    assert not atomic_link(tmp_path / "a", tmp_path / "c")
    assert (tmp_path / "c").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]
