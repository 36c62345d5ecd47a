"""The run folder of `frpose predict`: numbered folders, and predictions.json + images.json
rewritten atomically as the run goes, so an interrupted run keeps what it wrote and
``--resume`` continues it.

A run records the options that shape its results (``RUN_OPTIONS``: source, weights, detector,
thresholds, flip, ...).  ``--resume`` continues only a run whose recorded options match; without
``--out`` it picks the newest matching run under ``runs/predict`` or starts a new one.  Every name
written under the run folder is made relative first (:func:`safe_relative`), so an absolute or
``..`` file name from a list file can never point outside it.
"""
from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath

import numpy as np

from .errors import FrposeError
from .fileio import atomic_write_json
from .outputs import check_writable_dir
from .sources import SourceItem

PREDICTIONS, IMAGES = "predictions.json", "images.json"
RUN_OPTIONS = ("source", "weights", "model", "input_size", "detector", "detector_weights", "boxes", "det_thr",
               "det_size", "nms_thr", "backend", "precision", "flip", "vid_stride")


def safe_relative(name: str) -> PurePosixPath:
    """A file name as a path that stays inside the folder it is joined to: drive, root, ``.`` and
    ``..`` parts dropped (``/data/a/x.jpg`` → ``data/a/x.jpg``, ``../x.jpg`` → ``x.jpg``)."""
    parts = [p for p in str(name).replace("\\", "/").split("/")
             if p not in ("", ".", "..") and not re.fullmatch(r"[A-Za-z]:", p)]
    return PurePosixPath(*parts) if parts else PurePosixPath("unnamed")


def run_options(opts) -> dict:
    """The options of a predict run that shape its results, with paths made absolute."""
    def where(value):
        if value is None:
            return None
        path = Path(str(value)).expanduser()
        return str(path.resolve()) if path.exists() else str(value)
    out = {k: getattr(opts, k) for k in RUN_OPTIONS}
    out.update(source=where(opts.source), weights=where(opts.weights) or "(zoo default)",
               detector_weights=where(opts.detector_weights), boxes=where(opts.boxes),
               input_size=list(opts.input_size) if opts.input_size else None)
    return out


def recorded_options(run_dir: Path) -> dict | None:
    try:
        info = json.loads((run_dir / IMAGES).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return info.get("options") if isinstance(info, dict) else None


def option_differences(recorded: dict | None, options: dict) -> list[str]:
    if recorded is None:
        return ["options (the run records none)"]
    return [f"{k} {recorded.get(k)!r} ≠ {options[k]!r}" for k in RUN_OPTIONS if recorded.get(k) != options[k]]


def next_run_dir(base: Path = Path("runs/predict"), prefix: str = "run") -> Path:
    """``runs/predict/run1``, ``run2``, ...: the first number after the highest one there."""
    numbers = [int(m.group(1)) for p in (base.iterdir() if base.is_dir() else ())
               if (m := re.fullmatch(rf"{prefix}(\d+)", p.name))]
    return base / f"{prefix}{max(numbers, default=0) + 1}"


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
        self.warnings, self.ignored = [], []
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

    def warn(self, name: str, warning: str) -> None:
        self.warnings.append({"file_name": name, "warning": warning})

    def ignore(self, name: str, reason: str) -> None:
        self.ignored.append({"file_name": name, "reason": reason})

    def save(self) -> None:
        try:
            atomic_write_json(self.out_dir / PREDICTIONS, self.records)
            atomic_write_json(self.out_dir / IMAGES, {**self.meta, "images": self.images, "skipped": self.skipped,
                                                      "warnings": self.warnings, "ignored": self.ignored}, indent=1)
        except OSError as e:
            raise FrposeError(f"cannot save the results in {self.out_dir} ({e.strerror or e}); what was saved "
                              f"before is intact: continue with --resume --out {self.out_dir} once there is room") from None
        self.since_save = 0


def resolve_out_dir(out, resume: bool, options: dict, base: Path = Path("runs/predict"), log=print) -> Path:
    """Where this run writes (see module docstring); the location is checked before any work."""
    if out:
        out_dir = Path(out)
        if resume:
            if not (out_dir / PREDICTIONS).exists():
                raise FrposeError(f"--resume: {out_dir} holds no {PREDICTIONS} to continue")
            diff = option_differences(recorded_options(out_dir), options)
            if diff:
                raise FrposeError(f"--resume: {out_dir} was made with other options ({'; '.join(diff)}); "
                                  "resume it with the same ones, or start a new run elsewhere")
    else:
        out_dir = None
        if resume:
            runs = sorted(((int(m.group(1)), p) for p in (base.iterdir() if base.is_dir() else ())
                           if (m := re.fullmatch(r"run(\d+)", p.name)) and (p / PREDICTIONS).exists()),
                          reverse=True)
            out_dir = next((p for _, p in runs if not option_differences(recorded_options(p), options)), None)
            if out_dir is None:
                log(f"--resume: no run under {base} was made with these options; starting a new one")
        out_dir = out_dir or next_run_dir(base)
    check_writable_dir(out_dir, "--out")
    return out_dir
