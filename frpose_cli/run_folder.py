"""The run folder of `frpose predict`: numbered folders, and predictions.json + images.json
rewritten atomically as the run goes, so an interrupted run keeps what it wrote and
``--resume`` continues it."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from .errors import FrposeError
from .fileio import atomic_write_json
from .sources import SourceItem

PREDICTIONS, IMAGES = "predictions.json", "images.json"


def next_run_dir(base: Path = Path("runs/predict"), prefix: str = "run") -> Path:
    """``runs/predict/run1``, ``run2``, ...: the first number after the highest one there."""
    numbers = [int(m.group(1)) for p in (base.iterdir() if base.is_dir() else ())
               if (m := re.fullmatch(rf"{prefix}(\d+)", p.name))]
    return base / f"{prefix}{max(numbers, default=0) + 1}"


def latest_run_dir(base: Path = Path("runs/predict"), prefix: str = "run") -> Path | None:
    runs = [(int(m.group(1)), p) for p in (base.iterdir() if base.is_dir() else ())
            if (m := re.fullmatch(rf"{prefix}(\d+)", p.name))]
    return max(runs)[1] if runs else None


def make_record(item: SourceItem, image_id: int, kpts: np.ndarray, box: np.ndarray, score: float) -> dict:
    rec = {"image_id": image_id, "file_name": item.file_name, "category_id": 1,
           "keypoints": [round(float(v), 2) for v in kpts.reshape(-1)],
           "score": round(float(score), 5), "bbox": [round(float(v), 2) for v in box[:4]],
           "box_score": round(float(box[4]), 5)}
    if item.frame is not None:
        rec["frame"] = item.frame
    return rec


class RunWriter:
    """predictions.json + images.json of one run folder, rewritten atomically as the run goes."""

    def __init__(self, out_dir: Path, resume: bool, meta: dict, save_every: int):
        self.out_dir, self.meta, self.save_every = out_dir, meta, max(1, save_every)
        self.records, self.images, self.skipped, self.previous = [], [], [], {}
        pred_path = out_dir / PREDICTIONS
        if pred_path.exists() and not resume:
            raise FrposeError(f"{out_dir} already holds {PREDICTIONS}; pass --resume to continue that run "
                              "or choose another --out")
        if resume and pred_path.exists():
            self.records = self._read_list(pred_path)
            info = self._read_json(out_dir / IMAGES) if (out_dir / IMAGES).exists() else {}
            self.images = list(info.get("images", [])) if isinstance(info, dict) else []
            self.previous = {k: v for k, v in info.items() if k not in ("images", "skipped")} \
                if isinstance(info, dict) else {}
        self.done = {(r.get("file_name"), r.get("frame")) for r in self.records + self.images}
        self.since_save = 0

    @staticmethod
    def _read_json(path: Path):
        try:
            return json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FrposeError(f"--resume: cannot read {path} ({type(e).__name__}); "
                              "move it away to start over") from None

    def _read_list(self, path: Path) -> list:
        data = self._read_json(path)
        if not isinstance(data, list) or not all(isinstance(r, dict) and "file_name" in r for r in data):
            raise FrposeError(f"--resume: {path} is not an frpose predictions file (a list of records "
                              "with file_name)")
        return data

    def add(self, item: SourceItem, image_id: int, records: list[dict]) -> None:
        self.records.extend(records)
        entry = {"file_name": item.file_name, "image_id": image_id, "width": int(item.image.shape[1]),
                 "height": int(item.image.shape[0]), "persons": len(records)}
        if item.frame is not None:
            entry["frame"] = item.frame
        self.images.append(entry)
        self.done.add(item.key)
        self.since_save += 1
        # Rewrites grow with the file; spacing them by ≥10 % of the work keeps the total linear.
        if self.since_save >= max(self.save_every, len(self.images) // 10):
            self.save()

    def skip(self, name: str, reason: str) -> None:
        self.skipped.append({"file_name": name, "reason": reason})

    def save(self) -> None:
        atomic_write_json(self.out_dir / PREDICTIONS, self.records)
        atomic_write_json(self.out_dir / IMAGES, {**self.meta, "images": self.images, "skipped": self.skipped},
                          indent=1)
        self.since_save = 0


def resolve_out_dir(out, resume: bool) -> Path:
    if out:
        return Path(out)
    if resume:
        latest = latest_run_dir()
        if latest is None:
            raise FrposeError("--resume: no earlier run under runs/predict; pass --out DIR")
        return latest
    return next_run_dir()
