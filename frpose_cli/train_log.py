"""Training records: ``RUN_DIR/metrics.jsonl`` and the training-curve PNG (drawn with OpenCV).

``metrics.jsonl`` holds one JSON object a line: ``{"kind": "step", "epoch", "step", "loss",
"lr"}`` every few steps and ``{"kind": "epoch", "epoch", "train_loss", "val_loss"?, "lr",
"samples_per_s", ...}`` after each epoch (``epoch`` counts completed epochs, from 1).
The file is rewritten atomically, and on resume cut back to the resumed epoch.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np

from .fileio import atomic_write_text


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
        img = plot_curves(series, xlabel="epoch", ylabel="loss (log scale)")
        png_path = Path(png_path)
        ok, buf = cv2.imencode(".png", img)
        if ok:
            tmp = png_path.with_suffix(".png.tmp")
            tmp.write_bytes(buf.tobytes())
            tmp.replace(png_path)
        return png_path


def plot_curves(series: dict, xlabel: str, ylabel: str, size=(900, 520)) -> np.ndarray:
    """Line plot of ``{label: ([(x, y), ...], bgr)}`` with a log y axis, on a white canvas."""
    w, h = size
    left, right, top, bottom = 90, 30, 30, 60
    img = np.full((h, w, 3), 255, np.uint8)
    pts = [(x, y) for data, _ in series.values() for x, y in data if y and y > 0 and math.isfinite(y)]
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.rectangle(img, (left, top), (w - right, h - bottom), (0, 0, 0), 1)
    cv2.putText(img, xlabel, (w // 2 - 20, h - 15), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, ylabel, (5, 20), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    if not pts:
        return img
    xs = [p[0] for p in pts]
    ly = [math.log10(p[1]) for p in pts]
    x0, x1 = min(0.0, min(xs)), max(xs) if max(xs) > min(0.0, min(xs)) else min(xs) + 1
    y0, y1 = math.floor(min(ly) * 4) / 4, math.ceil(max(ly) * 4) / 4
    y1 = y1 if y1 > y0 else y0 + 0.25

    def to_px(x, y):
        px = left + (x - x0) / (x1 - x0) * (w - left - right)
        py = h - bottom - (math.log10(y) - y0) / (y1 - y0) * (h - top - bottom)
        return int(round(px)), int(round(py))

    for i in range(5):   # y ticks
        v = y0 + (y1 - y0) * i / 4
        _, py = to_px(x0, 10 ** v)
        cv2.line(img, (left - 4, py), (w - right, py), (225, 225, 225), 1)
        cv2.putText(img, f"{10 ** v:.2g}", (8, py + 4), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for i in range(6):   # x ticks
        v = x0 + (x1 - x0) * i / 5
        px, _ = to_px(v, 10 ** y0)
        cv2.putText(img, f"{v:.3g}", (px - 10, h - bottom + 18), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for n, (label, (data, color)) in enumerate(series.items()):
        good = [to_px(x, y) for x, y in data if y and y > 0 and math.isfinite(y)]
        if len(good) > 1:
            cv2.polylines(img, [np.array(good, np.int32)], False, color, 2, cv2.LINE_AA)
        for p in good if len(good) < 60 else []:
            cv2.circle(img, p, 3, color, -1, cv2.LINE_AA)
        cv2.putText(img, label, (w - right - 150, top + 20 + 20 * n), font, 0.5, color, 1, cv2.LINE_AA)
    return img
