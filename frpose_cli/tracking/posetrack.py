"""PoseTrack files: a video's tracked poses written as the PoseTrack18 prediction file that poseval
(PoseTrack's official evaluation) reads, and PoseTrack18 / PoseTrack17 files read into plain
frames for `evaluation/posetrack_eval.py`.

What poseval (convert.py, commit 4258a15) needs of a prediction file: one category "person" whose
keypoint names hold PoseTrack's 15 joints; one image per frame *in the ground truth's order*
(frames are matched by position; the counts must agree), each with a unique ``id`` and a
``file_name`` in a folder named ``NNNNNN_mpii|bonn|mpiinew_…`` (it parses ids from it);
annotations with ``image_id``, an integer ``track_id`` below 10000 (its README asks 0..999),
``keypoints`` (x, y, v per slot; x = y = v = 0 is absent) and ``scores`` (one per slot; without
them every joint gets poseval's fallback score -9999). Keypoints are mapped by name; slots a model
lacks are written absent, never invented: a COCO model has no head_bottom/head_top and scores zero
on them, a model trained on PoseTrack's keypoints (names that match) fills them.
"""
from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass, field
from pathlib import PurePath

import numpy as np

from frpose_cli.errors import FrposeError

POSETRACK18_KEYPOINTS = (
    "nose", "head_bottom", "head_top", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle")
# poseval's joint ids 0..14 (eval_helpers.Joint, which calls head_bottom "neck"); the ears are not scored
POSEVAL_JOINTS = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "right_wrist",
    "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist", "head_bottom", "nose",
    "head_top")
SKELETON = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9],
            [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]
SEQUENCE_TYPES = {"mpii": 1, "bonn": 2, "mpiinew": 3}   # the T of PoseTrack18's image ids TSSSSSSFFFF
MAX_TRACK_ID = 10000    # poseval asserts track ids below it
MIN_SCORE = -9999.0     # poseval's score for a joint whose file gives none
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".gif"}
_POSETRACK_NAME = re.compile(r"(\d+)_(mpii|bonn|mpiinew)(_.*)?")


def sequence_name(file_name: str) -> str:
    """The sequence a frame belongs to: a video's stem (``clips/a.mp4`` → ``a``), or the folder of
    a frame image (``images/val/000342_mpii_test/000000.jpg`` → ``000342_mpii_test``)."""
    if not isinstance(file_name, str) or not file_name:
        raise TypeError(f"file_name must be a non-empty str, got {file_name!r}")
    path = PurePath(file_name.replace("\\", "/"))
    name = path.stem if path.suffix.lower() in VIDEO_SUFFIXES else path.parent.name
    if not name:
        raise ValueError(f"file_name {file_name!r} is a frame image outside any folder: no sequence name")
    return name


def _image_id(name: str, file_name: str, frame: int) -> int:
    """PoseTrack18's id T·10^10 + S·10^4 + F for its own sequences (e.g. ``000342_mpii_test``,
    frame file ``000007.jpg``), so ids equal the ground truth's; otherwise the frame number."""
    m, stem = _POSETRACK_NAME.fullmatch(name), PurePath(file_name.replace("\\", "/")).stem
    if m and stem.isdigit() and int(stem) < 10**4 and int(m[1]) < 10**6:
        return SEQUENCE_TYPES[m[2]] * 10**10 + int(m[1]) * 10**4 + int(stem)
    return frame


def _tracked(frame, where: str) -> list:
    """The frame's tracked records, checked."""
    if not isinstance(frame, dict) or not {"file_name", "frame", "width", "height", "records"} <= frame.keys():
        raise ValueError(f"{where} must be a dict with file_name, frame, width, height and records")
    records = frame["records"]
    for j, r in enumerate(records):
        t = r.get("track_id") if isinstance(r, dict) else None
        if not isinstance(t, numbers.Integral) or isinstance(t, bool):
            raise ValueError(f"{where}.records[{j}] must be a person record with an int track_id, got {t!r}")
    out = [r for r in records if r["track_id"] >= 0]   # negative: untracked, left out
    if len({int(r["track_id"]) for r in out}) != len(out):
        raise ValueError(f"{where} has two records with one track_id")
    return out


def posetrack_sequence(name: str, frames: list, keypoint_names) -> dict:
    """One sequence as a PoseTrack18 prediction file (a dict) that poseval reads.

    ``frames``: every frame of the video in order, ``{"file_name", "frame" (None: its position),
    "width", "height", "records"}``, records as frpose writes them (``keypoints`` x, y, score × K,
    ``score``, ``bbox``, ``track_id``); records with ``track_id`` < 0 (untracked) are left out, and a
    keypoint (0, 0, 0) is written absent (COCO's "not labelled"). ``keypoint_names``: the model's K
    names, mapped by name onto PoseTrack18's 17 slots. Track ids are kept when all are below 10000
    (poseval's limit), else renumbered 0, 1, … by first appearance (MOT is blind to it).
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    if not isinstance(frames, (list, tuple)):
        raise TypeError(f"frames must be a list of frame dicts, got {type(frames).__name__}")
    names = list(keypoint_names)
    if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise ValueError(f"keypoint_names must be distinct strings, got {names!r}")
    slots = [names.index(s) if s in names else None for s in POSETRACK18_KEYPOINTS]
    if all(s is None for s in slots):
        raise ValueError(f"keypoint_names has no PoseTrack18 keypoint ({', '.join(POSETRACK18_KEYPOINTS)})")
    tracked = [_tracked(f, f"frames[{i}]") for i, f in enumerate(frames)]
    ids = list(dict.fromkeys(int(r["track_id"]) for rs in tracked for r in rs))
    if len(ids) > MAX_TRACK_ID:
        raise ValueError(f"frames hold {len(ids)} tracks; poseval takes at most {MAX_TRACK_ID} per sequence")
    big = bool(ids) and max(ids) >= MAX_TRACK_ID
    renumber = {t: k if big else t for k, t in enumerate(ids)}
    m = _POSETRACK_NAME.fullmatch(name)
    images, annotations = [], []
    for i, (f, records) in enumerate(zip(frames, tracked)):
        image_id = _image_id(name, str(f["file_name"]), i if f["frame"] is None else int(f["frame"]))
        images.append({"file_name": str(f["file_name"]), "id": image_id, "frame_id": image_id,
                       "vid_id": m[1] if m else name, "nframes": len(frames), "is_labeled": bool(records),
                       "has_no_densepose": True, "width": int(f["width"]), "height": int(f["height"])})
        for p, r in enumerate(records):
            kp = r.get("keypoints")
            kp = np.asarray(kp if isinstance(kp, (list, tuple, np.ndarray)) else [], dtype=np.float64).reshape(-1)
            if kp.size != 3 * len(names) or not np.isfinite(kp).all():
                raise ValueError(f"frames[{i}].records[{p}].keypoints must be {3 * len(names)} finite numbers "
                                 f"(x, y, score for {len(names)} keypoint_names)")
            kp = kp.reshape(-1, 3)
            keypoints, scores = [], []
            for s in slots:   # v = 1: present (poseval drops only x = y = v = 0, COCO's "not labelled")
                absent = s is None or not kp[s].any()
                keypoints += [0.0, 0.0, 0] if absent else [float(kp[s, 0]), float(kp[s, 1]), 1]
                scores.append(0.0 if absent else float(kp[s, 2]))
            ann = {"image_id": image_id, "id": image_id * 100 + p, "category_id": 1,
                   "track_id": renumber[int(r["track_id"])], "keypoints": keypoints, "scores": scores}
            ann.update({k: r[k] for k in ("bbox", "score") if k in r})
            annotations.append(ann)
    categories = [{"supercategory": "person", "id": 1, "name": "person",
                   "keypoints": list(POSETRACK18_KEYPOINTS), "skeleton": SKELETON}]
    return {"images": images, "annotations": annotations, "categories": categories}


def write_sequence(path, sequence: dict):
    """Write one sequence's PoseTrack18 file atomically (a whole file or none); returns the path."""
    from frpose_cli.fileio import atomic_write_json
    if not isinstance(sequence, dict) or not {"images", "annotations", "categories"} <= sequence.keys():
        raise TypeError("sequence must be a PoseTrack18 dict from posetrack_sequence")
    return atomic_write_json(path, sequence)


# ---- reading: ground truth and predictions as plain frames ----

@dataclass
class PosePerson:
    """One person of one frame, in poseval's joint order (:data:`POSEVAL_JOINTS`)."""
    track_id: int
    xy: np.ndarray                 # (15, 2) float64
    present: np.ndarray            # (15,) bool: annotated or predicted
    scores: np.ndarray             # (15,) float64, MIN_SCORE where the file gives none
    head_box: tuple | None = None  # x1, y1, x2, y2 (ground truth's bbox_head)
    has_points: bool = True        # PoseTrack17 rects without annopoints: dropped, as poseval does


@dataclass
class PoseFrame:
    file_name: str
    people: list
    ignore_regions: list = field(default_factory=list)   # polygons, (n, 2) float64 each


@dataclass
class PoseSequence:
    name: str
    source: str
    frames: list
    scoreless: int = 0      # people without keypoint scores (ranked at MIN_SCORE)
    unmatched: int = 0      # annotations whose image_id is no image of the file (poseval skips them)


def is_posetrack(data) -> bool:
    """A PoseTrack file's JSON: PoseTrack17's ``annolist``, or images with PoseTrack18's fields."""
    images = data.get("images") if isinstance(data, dict) else None
    first = images[0] if isinstance(images, list) and images else None
    return isinstance(data, dict) and "annolist" in data or isinstance(first, dict) and \
        bool({"vid_id", "frame_id", "is_labeled"} & first.keys())


def read_sequence(path) -> PoseSequence:
    """A PoseTrack18 or PoseTrack17 file (ground truth or predictions) as plain frames; malformed
    input is one FrposeError line naming the file and what is wrong."""
    from frpose_cli.data.annotations import read_json
    data = read_json(path, "PoseTrack file")
    name = PurePath(str(path)).name.split(".")[0]   # poseval's sequence name
    try:
        return _parse_annolist(data, str(path), name) if isinstance(data, dict) and "annolist" in data \
            else _parse_posetrack18(data, str(path), name)
    except _Bad as e:
        raise FrposeError(f"PoseTrack file {path}: {e}") from None


class _Bad(Exception):
    """What is wrong, without the file's name (added once, in read_sequence)."""


def _num(v, what: str) -> float:
    if not isinstance(v, numbers.Real) or isinstance(v, bool) or not math.isfinite(v):
        raise _Bad(f"{what} must be a finite number, got {v!r}")
    return float(v)


def _track(v, what: str) -> int:
    if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v >= MAX_TRACK_ID:
        raise _Bad(f"{what} must be an integer track id below {MAX_TRACK_ID} (poseval's limit), got {v!r}")
    return int(v)


def _person(track_id, points, head_box, has_points=True) -> PosePerson:
    xy, present, sc = np.zeros((15, 2)), np.zeros(15, bool), np.full(15, MIN_SCORE)
    for j, x, y, s in points:
        if 0 <= j < 15 and not present[j]:   # the first point with an id counts (poseval's getPointGTbyID)
            xy[j], present[j], sc[j] = (x, y), True, MIN_SCORE if s is None else s
    return PosePerson(track_id, xy, present, sc, head_box, has_points)


def _regions(xs, ys) -> list:
    return [np.array([[_num(x, "ignore region x"), _num(y, "ignore region y")] for x, y in zip(px, py)],
                     dtype=np.float64).reshape(-1, 2) for px, py in zip(xs, ys)]


def _parse_posetrack18(data, src: str, name: str) -> PoseSequence:
    lists = ("images", "annotations", "categories")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in lists):
        raise _Bad("not PoseTrack18 (needs 'images', 'annotations' and 'categories' lists)")
    cats = data["categories"]
    person = len(cats) == 1 and isinstance(cats[0], dict) and cats[0].get("name") == "person"
    kps = cats[0].get("keypoints") if person else None
    if not isinstance(kps, list) or len(kps) not in (15, 17) or not set(POSEVAL_JOINTS) <= set(kps):
        raise _Bad("needs one category 'person' whose 15 or 17 keypoint names hold PoseTrack's 15 joints")
    ids = [POSEVAL_JOINTS.index(k) if k in POSEVAL_JOINTS else -1 for k in kps]
    by_image, seq, folders, seen = {}, PoseSequence(name, src, []), set(), set()
    for n, a in enumerate(data["annotations"]):
        by_image.setdefault(a.get("image_id") if isinstance(a, dict) else None, []).append((n, a))
    for i, im in enumerate(data["images"]):
        if not isinstance(im, dict) or not isinstance(im.get("file_name"), str) or "id" not in im:
            raise _Bad(f"image {i} needs an id and a file_name")
        if im["id"] in seen:
            raise _Bad(f"image id {im['id']} occurs twice")
        seen.add(im["id"])
        folders.add(PurePath(im["file_name"]).parent.name.split("_")[0])   # poseval's video id
        people = []
        for n, a in by_image.pop(im["id"], []):
            kp, sc, box = a.get("keypoints"), a.get("scores") or None, a.get("bbox_head")   # no scores: fallback
            if not isinstance(kp, list) or len(kp) != 3 * len(kps):
                raise _Bad(f"annotation {n} needs {3 * len(kps)} keypoint values")
            if sc is not None and (not isinstance(sc, list) or len(sc) < len(kps)):
                raise _Bad(f"annotation {n}: 'scores' needs one score per keypoint ({len(kps)})")
            if box is not None and (not isinstance(box, list) or len(box) != 4):
                raise _Bad(f"annotation {n}: bbox_head must be [x, y, w, h]")
            seq.scoreless += sc is None
            what = f"annotation {n} keypoints, scores and bbox_head"
            xyv = [_num(v, what) for v in kp]
            pts = [(j, xyv[3 * k], xyv[3 * k + 1], None if sc is None else _num(sc[k], what))
                   for k, j in enumerate(ids) if j >= 0 and any(xyv[3 * k:3 * k + 3])]   # (0, 0, 0): absent
            if box is not None:
                x, y, w, h = (_num(b, what) for b in box)
                box = (x, y, x + w, y + h)
            people.append(_person(_track(a.get("track_id"), f"annotation {n} track_id"), pts, box))
        rx, ry = im.get("ignore_regions_x"), im.get("ignore_regions_y")
        if (rx is None) != (ry is None) or rx is not None and not all(isinstance(r, list) for r in [rx, ry, *rx, *ry]):
            raise _Bad(f"image {i}: ignore_regions_x and _y must both be lists of coordinate lists")
        seq.frames.append(PoseFrame(im["file_name"], people, _regions(rx, ry) if rx is not None else []))
    if len(folders) > 1:
        raise _Bad(f"holds frames of {len(folders)} sequences ({', '.join(sorted(folders))}); PoseTrack "
                   "files hold one sequence each")
    seq.unmatched = sum(map(len, by_image.values()))
    return seq


def _parse_annolist(data, src: str, name: str) -> PoseSequence:
    """PoseTrack17: poseval reads ``annolist`` as it is (no (0, 0, 0) rule; rects without
    ``annopoints`` are dropped; a point without a score gets the fallback score)."""
    seq = PoseSequence(name, src, [])
    for i, fr in enumerate(data["annolist"] if isinstance(data["annolist"], list) else [None]):
        try:
            people = []
            for rect in fr["annorect"]:
                aps = rect.get("annopoints")
                has = isinstance(aps, list) and len(aps) > 0 and isinstance(aps[0], dict) and "point" in aps[0]
                pts = [(int(p["id"][0]), _num(p["x"][0], "x"), _num(p["y"][0], "y"),
                        _num(p["score"][0], "score") if "score" in p else None)
                       for p in (aps[0]["point"] if has else []) if p.get("id") is not None]
                box = tuple(_num(rect[k][0], k) for k in ("x1", "y1", "x2", "y2")) if "x1" in rect else None
                people.append(_person(_track(rect["track_id"][0], "track_id"), pts, box, has))
            regions = [_regions([[p["x"][0] for p in r["point"]]], [[p["y"][0] for p in r["point"]]])[0]
                       for r in fr.get("ignore_regions", [])]
            seq.frames.append(PoseFrame(str(fr["image"][0]["name"]), people, regions))
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
            raise _Bad(f"annolist frame {i} is malformed ({type(e).__name__}: {e})") from None
    return seq
