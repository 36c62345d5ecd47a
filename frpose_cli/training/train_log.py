"""Training records: ``RUN_DIR/metrics.jsonl`` and the training-curve PNG (:mod:`frpose_cli.evaluation.plots`).

``metrics.jsonl`` holds one JSON object a line: ``{"kind": "step", "epoch", "step", "loss",
"lr"}`` every few steps and ``{"kind": "epoch", "epoch", "train_loss", "val_loss"?, "lr",
"samples_per_s", ...}`` after each epoch (``epoch`` counts completed epochs, from 1).
The file is rewritten atomically, and on resume cut back to the resumed epoch.
"""
from __future__ import annotations

import json
from pathlib import Path

from frpose_cli.fileio import atomic_write_text
from frpose_cli.evaluation.plots import line_plot, save_png


class MetricsLog:
    def __init__(self, run_dir, keep_epochs: int | None = None):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.records: list[dict] = []
        if keep_epochs is not None and self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                # step records of epoch e+1 are written during epoch index e
                if rec.get("epoch", 0) <= keep_epochs:
                    self.records.append(rec)

    def add(self, record: dict) -> None:
        self.records.append(record)

    def flush(self) -> None:
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.records))

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
