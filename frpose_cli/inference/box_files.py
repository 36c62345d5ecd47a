"""Person boxes for the frames of a video, from a file (``--boxes``): a user's own detector, or a
benchmark's public detections, drive the tracker.

Two layouts besides COCO detection results (:class:`~frpose_cli.inference.detectors.BoxFileDetector`,
whose records may carry ``"frame"`` too):

* **frpose's per-frame JSON**: ``{"frames": {"0": [[x, y, w, h, score], ...], "1": [...]}}``, frames
  numbered from 0 as ``predict`` numbers them (the video's own frame index, whatever
  ``--vid-stride``), a box either ``[x, y, w, h]`` (score 1), ``[x, y, w, h, score]`` or
  ``{"bbox": [x, y, w, h], "score": s}``.  For a source with several videos, key them by name:
  ``{"videos": {"a.mp4": {"0": [...]}, "b.mp4": {...}}}`` (the name relative to the source, or the
  base name).
* **MOT Challenge** ``det.txt`` (MOT16/17/20 public detections): one line per box,
  ``frame,id,x,y,w,h,score[,…]`` with frames from 1 (frame 1 is ``predict``'s frame 0), comma or
  space separated; ``id`` is ignored.  ``--det-thr`` applies as to any box (``0`` keeps every box
  scored 0 or more; DPM's detections in MOT16/17 scored below 0 are then dropped, the usual cut).

Boxes without a video name apply to the source's video; a source with more than one video needs
the ``videos`` form (:func:`check_box_source` says so before any work).  Frames a file has no boxes
for have no persons (counted in the summary); boxes are clipped to the frame as detector boxes are.
"""
from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from frpose_cli.errors import FrposeError
from frpose_cli.data.geometry import clip_boxes, drop_low_scores
from frpose_cli.data.sources import SourceItem, is_video

_MOT_SPLIT = re.compile(r"[,\s]+")


class FrameBoxes:
    """Per-frame person boxes of videos (see the module docstring): ``detector(item)`` → (M, 5)."""
    name = "boxes"
    in_worker = True   # needs no network (decode workers may run it)

    def __init__(self, path, by_video: dict, score_thr: float, layout: str):
        self.path, self.by_video, self.score_thr, self.layout = Path(path), by_video, score_thr, layout
        self.dropped: Counter = Counter()

    @property
    def named(self) -> bool:
        return None not in self.by_video

    def boxes_for(self, file_name: str, frame: int | None) -> np.ndarray:
        frames = self.by_video.get(None) if not self.named else \
            self.by_video.get(file_name, self.by_video.get(Path(file_name).name))
        found = (frames or {}).get(frame) if frame is not None else None
        if not found:
            return np.zeros((0, 5), np.float32)
        return drop_low_scores(np.array(found, np.float32), self.score_thr, self.dropped)

    def __call__(self, item: SourceItem) -> np.ndarray:
        h, w = item.image.shape[:2]
        return clip_boxes(self.boxes_for(item.file_name, item.frame), w, h, dropped=self.dropped)


def _box(value, where: str) -> tuple:
    if isinstance(value, dict):
        value = [*value.get("bbox", ()), value.get("score", 1.0)] if "bbox" in value else None
    try:
        numbers = [float(v) for v in value]
    except (TypeError, ValueError):
        numbers = []
    if len(numbers) == 4:
        numbers.append(1.0)
    if len(numbers) != 5:
        raise FrposeError(f"{where}: a box is [x, y, w, h], [x, y, w, h, score] or {{\"bbox\": [...], \"score\": s}}")
    return tuple(numbers)


def _frames(table, where: str) -> dict:
    if not isinstance(table, dict):
        raise FrposeError(f"{where}: expected an object from frame number to a list of boxes")
    out = {}
    for key, boxes in table.items():
        if not str(key).lstrip("-").isdigit() or int(key) < 0:
            raise FrposeError(f"{where}: frame {key!r} is not a frame number (0, 1, 2, …)")
        if not isinstance(boxes, list):
            raise FrposeError(f"{where}: frame {key} should hold a list of boxes")
        out[int(key)] = [_box(b, f"{where}, frame {key}") for b in boxes]
    return out


def read_frame_json(path: Path, data: dict, score_thr: float) -> FrameBoxes:
    """frpose's per-frame JSON (``frames`` or ``videos``), already parsed."""
    if "videos" in data:
        if not isinstance(data["videos"], dict):
            raise FrposeError(f"--boxes {path}: \"videos\" should map video names to their frames")
        by_video = {str(name): _frames(frames, f"--boxes {path}, video {name!r}")
                    for name, frames in data["videos"].items()}
    else:
        by_video = {None: _frames(data["frames"], f"--boxes {path}")}
    if not any(by_video.values()):
        raise FrposeError(f"--boxes {path}: no boxes in it")
    return FrameBoxes(path, by_video, score_thr, "frames")


def read_mot(path: Path, score_thr: float) -> FrameBoxes:
    """A MOT Challenge ``det.txt``: ``frame,id,x,y,w,h,score,…`` with frames from 1."""
    frames = defaultdict(list)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise FrposeError(f"--boxes {path}: not a readable text file ({type(e).__name__})") from None
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            values = [float(v) for v in _MOT_SPLIT.split(line) if v]
        except ValueError:
            values = []
        if len(values) < 7 or not float(values[0]).is_integer() or values[0] < 1:
            raise FrposeError(f"--boxes {path}: line {number} is not a MOT detection "
                              "(frame,id,x,y,w,h,score,… with frames from 1)")
        frames[int(values[0]) - 1].append(tuple(values[2:7]))
    if not frames:
        raise FrposeError(f"--boxes {path}: no detections in it")
    return FrameBoxes(path, {None: dict(frames)}, score_thr, "mot")


def is_frame_layout(path: Path, data) -> bool:
    return isinstance(data, dict) and ("frames" in data or "videos" in data)


def check_box_source(detector, source) -> None:
    """Unnamed per-frame boxes fit one video: a source with more videos needs them named (one line)."""
    if not isinstance(detector, FrameBoxes) or detector.named or source.kind == "stream":
        return
    videos = [f.name for f in source.files() if not f.ignored and is_video(f.path)]
    if len(videos) > 1:
        layout = "det.txt" if detector.layout == "mot" else "\"frames\" file"
        raise FrposeError(f"--boxes {detector.path}: a {layout} gives the boxes of one video, and the source holds "
                          f"{len(videos)} ({videos[0]}, {videos[1]}, …); name them: {{\"videos\": {{\"{videos[0]}\": "
                          "{\"0\": [...]}}}} (docs/tracking.md)")


def load_frame_boxes(path, score_thr: float):
    """A per-frame box file (MOT ``.txt`` or frpose's JSON), or None when ``path`` is COCO results."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        if not path.is_file():
            raise FrposeError(f"--boxes file not found: {path}")
        return read_mot(path, score_thr)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None   # BoxFileDetector says what is wrong with it
    return read_frame_json(path, data, score_thr) if is_frame_layout(path, data) else None
