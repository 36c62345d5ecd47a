"""Training records: ``RUN_DIR/metrics.jsonl`` and the training-curve PNG (:mod:`frpose_cli.evaluation.plots`).

``metrics.jsonl`` holds one JSON object a line: ``{"kind": "step", "epoch", "step", "loss",
"lr"}`` every few steps and ``{"kind": "epoch", "epoch", "train_loss", "val_loss"?, "lr",
"samples_per_s", ...}`` after each epoch (``epoch`` counts completed epochs, from 1).
The file is rewritten atomically, and on resume cut back to the resumed epoch.

With the optional ``tensorboard`` package (``pip install 'frpose[tensorboard]'``) the same figures
also go to TensorBoard event files in ``RUN_DIR/tensorboard/`` (:class:`ScalarsWriter`).  Without
it training is as before and says nothing: metrics.jsonl and the PNG are the record, and
TensorBoard is an extra for watching; only an explicit ``--tensorboard`` without it is an error.
Both are written by rank 0 only: the training loop makes a :class:`MetricsLog` there alone.
"""
from __future__ import annotations

import json
from pathlib import Path

from frpose_cli.errors import FrposeError
from frpose_cli.fileio import atomic_write_text
from frpose_cli.evaluation.plots import line_plot, save_png

STEP_KEYS = ("loss", "lr")                                  # → tags step/loss, step/lr
EPOCH_KEYS = ("train_loss", "lr", "samples_per_s")          # → epoch/KEY, with every val_* figure


def summary_writer_class(wanted: bool | None = None):
    """torch's ``SummaryWriter`` when scalars go to TensorBoard, else None.  ``wanted`` None (the
    default): when the ``tensorboard`` package imports; False: never; True: it must (an error
    naming the extra otherwise).  Imported here, lazily: the package is an optional extra."""
    if wanted is False:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if wanted:
            raise FrposeError("--tensorboard: the tensorboard package is not installed "
                              "(pip install 'frpose[tensorboard]', or --no-tensorboard)") from None
        return None
    return SummaryWriter


class ScalarsWriter:
    """The records :class:`MetricsLog` keeps, as TensorBoard scalars in ``RUN_DIR/tensorboard/``.

    One x axis for both kinds: optimiser steps of one process, ``(epoch - 1) * steps_per_epoch +
    step`` for a step record and ``epoch * steps_per_epoch`` for an epoch's (its last step), so
    ``step/loss`` and ``epoch/train_loss`` can be laid over each other.  Every writer (each start
    or resume of the run adds an event file to the folder) begins with ``purge_step`` = the first
    step it will write: TensorBoard then hides what the run's previous life wrote past the
    checkpoint it resumes (steps done again now), as metrics.jsonl is cut back, so no step is
    drawn twice; for a fresh run (1) that also hides a stale stream in a reused ``--out``.  A
    resume that changes the training set's size changes ``steps_per_epoch``: the steps after it
    are counted with the new one.  Flushed with metrics.jsonl (each epoch's end) and otherwise
    every 30 s, so step scalars of a long epoch show while it runs.  The writer's thread touches
    only its own queue and file, nothing a forked loader worker uses.
    """

    def __init__(self, writer_class, run_dir, steps_per_epoch: int, start_step: int = 0):
        self.steps_per_epoch = int(steps_per_epoch)
        self.path = Path(run_dir) / "tensorboard"
        self.writer = writer_class(log_dir=str(self.path), purge_step=start_step + 1, flush_secs=30)

    def add(self, record: dict) -> None:
        if record.get("kind") == "step":
            step = (record["epoch"] - 1) * self.steps_per_epoch + record["step"]
            scalars = {f"step/{k}": record.get(k) for k in STEP_KEYS}
        elif record.get("kind") == "epoch":
            step = record["epoch"] * self.steps_per_epoch
            scalars = {f"epoch/{k}": v for k, v in record.items() if k in EPOCH_KEYS or k.startswith("val_")}
        else:
            return
        for tag, value in scalars.items():
            if isinstance(value, (int, float)):
                self.writer.add_scalar(tag, float(value), step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def read_records(run_dir) -> list[dict]:
    """The records of ``RUN_DIR/metrics.jsonl`` (none when it is missing; a damaged line is skipped)."""
    path = Path(run_dir) / "metrics.jsonl"
    records = []
    for line in (path.read_text().splitlines() if path.is_file() else ()):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return records


class MetricsLog:
    """metrics.jsonl and the curve; with ``scalars`` (a :class:`ScalarsWriter`) each record added
    goes to TensorBoard too.  :meth:`close` (always, even when training fails) ends that stream."""

    def __init__(self, run_dir, keep_epochs: int | None = None, scalars: ScalarsWriter | None = None):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.scalars = scalars
        self.records: list[dict] = []
        if keep_epochs is not None:   # step records of epoch e+1 are written during epoch index e
            self.records = [rec for rec in read_records(run_dir) if rec.get("epoch", 0) <= keep_epochs]

    def add(self, record: dict) -> None:
        self.records.append(record)
        if self.scalars is not None:
            self.scalars.add(record)

    def flush(self) -> None:
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.records))
        if self.scalars is not None:
            self.scalars.flush()

    def close(self) -> None:
        if self.scalars is not None:
            self.scalars.close()
            self.scalars = None

    def epochs(self) -> list[dict]:
        return [r for r in self.records if r.get("kind") == "epoch"]

    def draw(self, png_path) -> Path:
        steps = [r for r in self.records if r.get("kind") == "step"]
        epochs = self.epochs()
        train = [(r["epoch"] - 1 + r["fraction"], r["loss"]) for r in steps if "fraction" in r]
        train = train or [(r["epoch"], r["train_loss"]) for r in epochs]
        val = [(r["epoch"], r["val_loss"]) for r in epochs if r.get("val_loss") is not None]
        series = {"train loss": (train, (200, 90, 30))}
        if val:   # no legend entry for a curve that is not there
            series["val loss"] = (val, (40, 40, 220))
        return save_png(png_path, line_plot(series, xlabel="epoch", ylabel="loss (log scale)"))
