"""Training as people watch it: step records every --log-every steps, TensorBoard scalars (optional extra).

The TensorBoard tests skip without the package (CI installs the project's deps only); the path
without it is tested by making its import fail.  Rank-0 gating is tested under torchrun (gloo, 2
CPU processes): which ranks add records to a MetricsLog, and how many log lines come out.
"""
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from frpose_cli.errors import FrposeError
from frpose_cli.training.preempt import Preempted
from frpose_cli.training.train import TrainConfig, run
from test_train import config as base_config, data, small_split  # noqa: F401 (data: the fixture)

COCO_DIR = Path(__file__).parent / "data" / "coco"
HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None
needs_tensorboard = pytest.mark.skipif(not HAS_TENSORBOARD, reason="the optional tensorboard package is not installed")


def config(data, out, **kw):
    return base_config(data, out, **{"log_every": 1, **kw})


def records(run_dir, kind):
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def scalars(run_dir):
    """{tag: [(step, value), ...]} as TensorBoard shows the run folder's event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(Path(run_dir) / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def expected_scalars(run_dir, steps_per_epoch):
    """The same figures, from metrics.jsonl, on the x axis train_log.ScalarsWriter documents."""
    want = {}
    for r in records(run_dir, "step"):
        for key in ("loss", "lr"):
            want.setdefault(f"step/{key}", []).append(((r["epoch"] - 1) * steps_per_epoch + r["step"], r[key]))
    for r in records(run_dir, "epoch"):
        for key, value in r.items():
            if key in ("train_loss", "lr", "samples_per_s") or key.startswith("val_"):
                want.setdefault(f"epoch/{key}", []).append((r["epoch"] * steps_per_epoch, value))
    return want


def writer_threads():
    """TensorBoard's event-writer threads still running: a writer not closed leaves its thread."""
    return [t for t in threading.enumerate() if type(t).__name__ == "_AsyncWriterThread"]


def assert_same(got, want):
    assert sorted(got) == sorted(want)
    for tag, points in want.items():
        assert [s for s, _ in got[tag]] == [s for s, _ in points], tag
        assert [v for _, v in got[tag]] == pytest.approx([v for _, v in points], rel=1e-6), tag   # float32 in the file


@needs_tensorboard
def test_tensorboard_scalars_are_those_of_metrics_jsonl(data, tmp_path):
    run_dir = tmp_path / "run"
    run(config(data, run_dir, epochs=2))              # 6 people, batch 3: 2 steps an epoch
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*")) and not writer_threads()
    got = scalars(run_dir)
    assert {"step/loss", "step/lr", "epoch/train_loss", "epoch/lr", "epoch/samples_per_s", "epoch/val_loss",
            "epoch/val_AP", "epoch/val_AR"} <= set(got)
    assert [s for s, _ in got["step/loss"]] == [1, 2, 3, 4] and [s for s, _ in got["epoch/val_AP"]] == [2, 4]
    assert_same(got, expected_scalars(run_dir, 2))


class Interrupt(Exception):
    pass


@needs_tensorboard
def test_a_failed_then_resumed_run_continues_one_stream_without_redrawn_steps(data, tmp_path):
    run_dir = tmp_path / "run"

    def fail(epoch, step, model):   # after epoch 1's checkpoint and epoch 2's first step (x = 3)
        if (epoch, step) == (1, 0):
            raise Interrupt
    with pytest.raises(Interrupt):
        run(config(data, run_dir, epochs=2, val_every=0), on_step=fail)
    assert not writer_threads()                                   # closed on the way out
    assert [s for s, _ in scalars(run_dir)["step/loss"]] == [1, 2, 3]
    run(TrainConfig(resume=str(run_dir), quiet=True, device="cpu"))
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 2
    got = scalars(run_dir)
    assert [s for s, _ in got["step/loss"]] == [1, 2, 3, 4]      # step 3 of the first life purged
    assert_same(got, expected_scalars(run_dir, 2))


@needs_tensorboard
def test_a_preempted_run_resumed_mid_epoch_keeps_its_x_axis(data, tmp_path):
    run_dir = tmp_path / "run"

    def preempt(epoch, step, model):   # the scheduler's SIGTERM during epoch 2's first step
        if (epoch, step) == (1, 0):
            os.kill(os.getpid(), signal.SIGTERM)
    with pytest.raises(Preempted):
        run(config(data, run_dir, epochs=2, val_every=0), on_step=preempt)
    assert not writer_threads()
    assert [s for s, _ in scalars(run_dir)["step/loss"]] == [1, 2, 3]
    run(TrainConfig(resume=str(run_dir), quiet=True, device="cpu"))
    got = scalars(run_dir)
    assert [s for s, _ in got["epoch/train_loss"]] == [2, 4]        # not 2 + 1: the epoch's full length
    assert_same(got, expected_scalars(run_dir, 2))


def test_without_tensorboard_training_is_as_before_and_silent(data, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)   # `import` now fails, as uninstalled
    run_dir = tmp_path / "run"
    summary = run(config(data, run_dir, val_every=0, quiet=False, progress=False))
    assert summary["train_loss"] > 0 and (run_dir / "last.pt").is_file() and len(records(run_dir, "step")) == 2
    assert not (run_dir / "tensorboard").exists()
    out = capsys.readouterr()
    assert "tensorboard" not in (out.out + out.err).replace(str(tmp_path), "DIR").lower()
    with pytest.raises(FrposeError, match=r"tensorboard package is not installed .*frpose\[tensorboard\]"):
        run(config(data, tmp_path / "asked", val_every=0), tensorboard=True)
    assert not (tmp_path / "asked").exists()


@pytest.mark.parametrize("every, steps", [(1, [1, 2, 3, 4, 5]), (3, [3, 5])])
def test_log_every_counts_optimiser_steps_and_closes_each_epoch(data, tmp_path, every, steps):
    five = {**data, "train_ann": small_split(tmp_path, "train", 5)}     # batch 1: 5 steps
    run(config(five, tmp_path / "run", batch_size=1, val_every=0, log_every=every), tensorboard=False)
    assert [r["step"] for r in records(tmp_path / "run", "step")] == steps
    assert not (tmp_path / "run" / "tensorboard").exists()        # --no-tensorboard, installed or not


@pytest.mark.parametrize("every", [0, -2])
def test_log_every_below_one_is_refused_in_one_line(data, tmp_path, every):
    with pytest.raises(FrposeError, match=rf"^--log-every must be an integer ≥ 1 \(got {every}\)$"):
        run(config(data, tmp_path / "run", log_every=every))
    assert not (tmp_path / "run").exists()


def test_log_every_on_the_command_line(data, tmp_path, capsys):
    from helpers import run_cli
    tiny = ["--input-size", "64x32", "--epochs", "1", "--batch-size", "3", "--workers", "0", "--pretrained", "none",
            "--val-every", "0", "--no-tensorboard", "--out", tmp_path / "run"]   # quick even if it were not refused
    code, _, err = run_cli(["train", "sbn-r18", "--train-ann", data["train_ann"], "--train-images",
                            data["train_images"], "--log-every", "0", *tiny], capsys)
    assert code == 2 and err.strip().splitlines() == ["frpose: error: --log-every 0: must be a whole number, 1 or more"]


TORCHRUN_SCRIPT = """
import json, os
import frpose_cli.training.train as train

class Watched(train.MetricsLog):   # which rank adds which records (none but rank 0 may have a log)
    def add(self, record):
        super().add(record)
        with open(os.path.join({tmp!r}, "added-by-rank-" + os.environ["RANK"]), "a") as f:
            f.write(json.dumps(record) + "\\n")

train.MetricsLog = Watched
train.run(train.TrainConfig(**{cfg!r}), tensorboard={tensorboard!r})
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow   # ~10 s: three processes import torch
def test_under_torchrun_rank_0_alone_logs_every_n_steps_of_its_own(data, tmp_path):
    five = {**data, "train_ann": small_split(tmp_path, "train", 5), "val_ann": None, "val_images": None}
    cfg = dict(model="sbn-r18", input_size=[64, 32], epochs=1, batch_size=1, workers=0, device="cpu",
               pretrained="none", out=str(tmp_path / "run"), seed=1, progress=False, log_every=2, val_every=0, **five)
    script = tmp_path / "train.py"
    script.write_text(TORCHRUN_SCRIPT.format(cfg=cfg, tmp=str(tmp_path), tensorboard=HAS_TENSORBOARD))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(free_port()), str(script)]
    root = str(Path(__file__).resolve().parent.parent)   # the checkout, installed or not
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    # 5 people padded to 6 by the sampler: 3 steps a process; every 2 of them, and the epoch's last
    assert [r["step"] for r in records(tmp_path / "run", "step")] == [2, 3]
    assert sorted(p.name for p in tmp_path.glob("added-by-rank-*")) == ["added-by-rank-0"]
    assert res.stdout.count("epoch 1/1: train loss") == 1, res.stdout      # one log line, rank 0's
    if HAS_TENSORBOARD:   # one writer: rank 1 left no event file of its own
        assert len(list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))) == 1
        assert [s for s, _ in scalars(tmp_path / "run")["epoch/train_loss"]] == [3]
