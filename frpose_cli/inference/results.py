"""One image's poses as a Python object (ultralytics' ``Results`` is the model): what
`frpose predict` writes and what the Python predictor returns are the same records.

Per person: the box (x, y, w, h, score), keypoints (K, 2) in image pixels, their scores (K,)
and the pose score (the box score × the mean keypoint score above 0.2, :func:`rescore`, as
predict and eval rank persons).  On a tracked video or stream also the track id (-1: untracked),
the frame's timestamp and, with smoothing, the raw keypoints before the filter (``keypoints`` are
then the smoothed ones).  :meth:`Results.to_coco` is the one place a
``predictions.json`` record is built; :meth:`Results.plot` draws the overlay `frpose predict`
writes in ``vis/``.

    res = Results(boxes, keypoints, keypoint_scores, spec, image=image_rgb, file_name="a.jpg")
    len(res), res[0]["left_wrist"], res[res.scores > 0.5].to_coco(image_id=7)
    res.save("a_pose.jpg")
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from frpose_cli.api_arguments import boxes_array, image_rgb_array, in_range
from frpose_cli.data.keypoints import KeypointSpec
from frpose_cli.errors import ArgumentTypeError, ArgumentValueError
from frpose_cli.data.geometry import clip_boxes, drop_low_scores
from frpose_cli.inference.draw import draw_poses, write_image
from frpose_cli.inference.predict_options import PredictOptions
from frpose_cli.metrics.oks_nms import oks_nms, rescore

CATEGORY_PERSON = 1
DEFAULTS = PredictOptions(source="")   # the API's thresholds and batch are the CLI's, from their one place


def _floats(a, shape: tuple, what: str) -> np.ndarray:
    """Float array of ``shape`` (-1: any).  A float input keeps its dtype: records round the
    values the network produced, so float32 → float64 must not happen on one path only."""
    try:
        a = np.asarray(a)
        if not np.issubdtype(a.dtype, np.floating):
            a = a.astype(np.float64)
    except (TypeError, ValueError):   # ragged lists or non-numbers: numpy's own error names no argument
        raise ArgumentValueError(f"{what}: expected an array of numbers of shape "
                                 f"{'×'.join('P' if s == -1 else str(s) for s in shape)}") from None
    if a.size == 0 and shape[0] == -1:   # an empty list of persons, however it was spelled
        a = a.reshape(0, *shape[1:])
    if a.ndim != len(shape) or any(s != -1 and s != n for s, n in zip(shape, a.shape)):
        want = "×".join("P" if s == -1 else str(s) for s in shape)
        raise ArgumentValueError(f"{what}: expected shape {want}, got {'×'.join(map(str, a.shape))}")
    return a


def _checked_records(records, k: int) -> list:
    """``records`` as a list, each a dict with ``keypoints`` (3 × ``k`` numbers), ``bbox`` (4) and ``score``
    (``box_score`` and ``keypoints_raw`` where present): else an error naming the record and the field."""
    if not isinstance(records, (list, tuple)):   # one record, or a whole predictions.json dict by mistake
        raise ArgumentTypeError(f"records must be a list of COCO keypoint result dicts (got {type(records).__name__})")
    fields = {"keypoints": 3 * k, "bbox": 4, "score": 0, "box_score": 0, "keypoints_raw": 3 * k}   # 0: one number
    required = ("keypoints", "bbox", "score")
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise ArgumentTypeError(f"records[{i}] must be a dict (got {type(r).__name__})")
        missing = [f for f in required if f not in r]
        if missing:
            raise ArgumentValueError(f"records[{i}] has no {', '.join(map(repr, missing))} (a COCO keypoint result "
                                     f"needs keypoints: 3 × K = {3 * k} numbers, bbox: 4, score)")
        for field, count in fields.items():
            if field not in r:
                continue
            value = r[field]
            if count == 0:
                if not _is_number(value):
                    raise ArgumentValueError(f"records[{i}][{field!r}]: expected a number, got {value!r}")
                continue
            many = isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.ndim == 1)
            if not many or len(value) != count or not all(_is_number(v) for v in value):
                got = f"{len(value)} values" if many else repr(value)[:60]
                want = f"3 × K = {count} numbers (x, y, score per keypoint)" if count == 3 * k else f"{count} numbers"
                raise ArgumentValueError(f"records[{i}][{field!r}]: expected {want}, got {got}")
    return list(records)


def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


@dataclass(frozen=True)
class Person:
    """One person of a :class:`Results`: ``person["left_wrist"]`` → (x, y, score)."""
    box: np.ndarray               # (5,) x, y, w, h, box score
    keypoints: np.ndarray         # (K, 2) x, y in image pixels
    keypoint_scores: np.ndarray   # (K,)
    score: float                  # pose score (rescored)
    spec: KeypointSpec
    track_id: int | None = None   # tracked sequences: the person's identity (-1: untracked)

    def __getitem__(self, name: str) -> tuple[float, float, float]:
        k = self.spec.index_of(name)
        if k is None:
            raise KeyError(f"no keypoint {name!r} (keypoints: {', '.join(self.spec.names)})")
        return float(self.keypoints[k, 0]), float(self.keypoints[k, 1]), float(self.keypoint_scores[k])

    def __repr__(self) -> str:
        x, y, w, h, s = (float(v) for v in self.box)
        track = "" if self.track_id is None else f", track_id={self.track_id}"
        return f"Person(box=[{x:.1f}, {y:.1f}, {w:.1f}, {h:.1f}], box_score={s:.3f}, score={self.score:.3f}{track})"


class Results:
    """The poses found in one image (or video frame).

    ``boxes`` (P, 5) x, y, w, h, score; ``keypoints`` (P, K, 2) image pixels; ``keypoint_scores``
    (P, K); ``spec`` the keypoint set (names, skeleton).  ``scores`` (P,): pose scores, rescored
    from the box and keypoint scores when not given.  ``image``: the RGB uint8 picture
    :meth:`plot` draws on by default (held, not copied).  ``file_name``, ``image_id`` and
    ``frame`` (video frame index) go into the records; on tracked sequences also ``track_ids`` (P,)
    (-1: untracked), ``timestamp`` (seconds) and, when the keypoints are smoothed, ``keypoints_raw``
    (P, K, 2) as the network gave them.  ``dropped``: the image's boxes that gave no person, counted by
    reason (NaN or inf values, no area, outside the image, under 1 px once clipped), the counts
    `frpose predict` writes into ``images.json``; {} when none was.
    """

    def __init__(self, boxes, keypoints, keypoint_scores, spec: KeypointSpec, scores=None, *,
                 image: np.ndarray | None = None, file_name: str | None = None, image_id: int | None = None,
                 frame: int | None = None, track_ids=None, timestamp: float | None = None, keypoints_raw=None,
                 dropped: dict | None = None):
        if not isinstance(spec, KeypointSpec):   # a ModelCard passed for its .keypoints, say
            raise ArgumentTypeError(f"spec must be a KeypointSpec, e.g. predictor.card.keypoints "
                                    f"(got {type(spec).__name__})")
        k = spec.num_keypoints
        self.boxes = _floats(boxes, (-1, 5), "boxes")
        self.keypoints = _floats(keypoints, (-1, k, 2), "keypoints")
        self.keypoint_scores = _floats(keypoint_scores, (-1, k), "keypoint_scores")
        p = len(self.boxes)
        if len(self.keypoints) != p or len(self.keypoint_scores) != p:
            raise ArgumentValueError(f"{p} boxes but {len(self.keypoints)} keypoint sets and "
                             f"{len(self.keypoint_scores)} keypoint score sets")
        # The same rescoring as predict's and eval's ranking, never a second formula.
        if scores is None:
            scores = rescore(self.boxes[:, 4], self.keypoint_scores) if p else np.zeros(0)
        self.scores = _floats(scores, (p,), "scores")
        self.spec, self.image, self.file_name, self.image_id, self.frame = spec, image, file_name, image_id, frame
        self.track_ids = None if track_ids is None else np.asarray(track_ids, np.int64).reshape(-1)
        if self.track_ids is not None and len(self.track_ids) != p:
            raise ArgumentValueError(f"track_ids: {len(self.track_ids)} for {p} persons")
        self.timestamp = None if timestamp is None else float(timestamp)
        self.keypoints_raw = None if keypoints_raw is None else _floats(keypoints_raw, (p, k, 2), "keypoints_raw")
        # A dropped box is reported here, never printed: the CLI, too, counts them per image (images.json) and
        # once in its summary, and a warning per frame would flood a video loop; repr() shows them.
        self.dropped = dict(dropped or {})

    @classmethod
    def from_poses(cls, poses, boxes, spec: KeypointSpec, **info) -> "Results":
        """From (P, K, 3) x, y, score keypoints, as :class:`PosePredictor` decodes them."""
        poses = _floats(poses, (-1, spec.num_keypoints, 3), "poses")
        return cls(boxes, poses[..., :2], poses[..., 2], spec, **info)

    @classmethod
    def from_coco(cls, records: list[dict], spec: KeypointSpec, **info) -> "Results":
        """Back from :meth:`to_coco` records (e.g. one image's entries of ``predictions.json``);
        a record without ``box_score`` gets 1.0.  Values are the records' rounded ones.  A record without
        ``keypoints`` (3 × K numbers), ``bbox`` (4) or ``score``, or with another count, is a ValueError
        naming its index and the field."""
        if not isinstance(spec, KeypointSpec):
            raise ArgumentTypeError(f"spec must be a KeypointSpec (got {type(spec).__name__})")
        k = spec.num_keypoints
        records = _checked_records(records, k)
        poses = np.array([r["keypoints"] for r in records], np.float64).reshape(-1, k, 3)
        boxes = np.array([[*r["bbox"], r.get("box_score", 1.0)] for r in records], np.float64).reshape(-1, 5)
        scores = np.array([r["score"] for r in records], np.float64)
        first = records[0] if records else {}
        info = {"file_name": first.get("file_name"), "image_id": first.get("image_id"),
                "frame": first.get("frame"), "timestamp": first.get("timestamp"), **info}
        if records and all("track_id" in r for r in records):
            info.setdefault("track_ids", [r["track_id"] for r in records])
        if records and all("keypoints_raw" in r for r in records):
            info.setdefault("keypoints_raw", np.array([r["keypoints_raw"] for r in records],
                                                      np.float64).reshape(-1, k, 3)[..., :2])
        return cls(boxes, poses[..., :2], poses[..., 2], spec, scores, **info)

    # -- the poses as arrays (ultralytics' names where it has one) --------------------------------
    @property
    def xy(self) -> np.ndarray:
        """(P, K, 2) keypoints in image pixels."""
        return self.keypoints

    @property
    def conf(self) -> np.ndarray:
        """(P, K) keypoint scores."""
        return self.keypoint_scores

    @property
    def xywh(self) -> np.ndarray:
        return self.boxes[:, :4]

    @property
    def xyxy(self) -> np.ndarray:
        return np.concatenate([self.boxes[:, :2], self.boxes[:, :2] + self.boxes[:, 2:4]], 1)

    @property
    def box_scores(self) -> np.ndarray:
        return self.boxes[:, 4]

    @property
    def names(self) -> tuple[str, ...]:
        return self.spec.names

    @property
    def skeleton(self) -> tuple[tuple[int, int], ...]:
        return self.spec.skeleton

    @property
    def orig_shape(self) -> tuple[int, int] | None:
        """(height, width) of the held image, None without one."""
        return None if self.image is None else tuple(self.image.shape[:2])

    def numpy(self) -> np.ndarray:
        """(P, K, 3) x, y, score: the layout :class:`PosePredictor` returns and overlays draw."""
        return np.concatenate([self.keypoints, self.keypoint_scores[..., None]], -1)

    # -- persons -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, index):
        """An int → that :class:`Person`; a slice, index list or boolean mask → a :class:`Results`."""
        if isinstance(index, (int, np.integer)):
            i = range(len(self))[index]   # negative indices, and IndexError out of range
            return Person(self.boxes[i], self.keypoints[i], self.keypoint_scores[i], float(self.scores[i]), self.spec,
                          None if self.track_ids is None else int(self.track_ids[i]))
        if isinstance(index, list):   # [] would become a float array, which numpy refuses as an index
            index = np.asarray(index) if index else np.zeros(0, np.int64)
        return Results(self.boxes[index], self.keypoints[index], self.keypoint_scores[index], self.spec,
                       self.scores[index], image=self.image, file_name=self.file_name, image_id=self.image_id,
                       frame=self.frame, track_ids=None if self.track_ids is None else self.track_ids[index],
                       timestamp=self.timestamp,
                       keypoints_raw=None if self.keypoints_raw is None else self.keypoints_raw[index],
                       dropped=self.dropped)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def nms_keep(self, areas, sigmas, threshold: float = 0.9) -> list[int]:
        """Indices left by OKS-NMS (two boxes on one person → one pose), best first; ``areas`` (P,)
        the crop regions' areas.  Threshold 1.0 (or one person) keeps every person, in order."""
        if len(self) > 1 and threshold < 1.0:
            return oks_nms(self.numpy(), self.scores, areas, sigmas, threshold)
        return list(range(len(self)))

    # -- outputs -------------------------------------------------------------------------------------
    def to_coco(self, image_id: int | None = None) -> list[dict]:
        """COCO keypoint results, one per person, exactly as ``predictions.json`` holds them
        (plus ``file_name``, ``bbox``, ``box_score``, for a video frame ``frame``, and on tracked
        sequences ``track_id``, ``timestamp`` and, when smoothed, ``keypoints_raw`` laid out as
        ``keypoints``).  ``image_id``: this one, else the object's (None until a run's logs are merged)."""
        image_id = self.image_id if image_id is None else image_id
        records = []
        for i, (box, poses, score) in enumerate(zip(self.boxes, self.numpy(), self.scores)):
            rec = {"image_id": image_id, "file_name": self.file_name, "category_id": CATEGORY_PERSON,
                   "keypoints": [round(float(v), 2) for v in poses.reshape(-1)],
                   "score": round(float(score), 5), "bbox": [round(float(v), 2) for v in box[:4]],
                   "box_score": round(float(box[4]), 5)}
            if self.frame is not None:
                rec["frame"] = self.frame
            if self.track_ids is not None:
                rec["track_id"] = int(self.track_ids[i])
            if self.timestamp is not None:
                rec["timestamp"] = round(self.timestamp, 4)
            if self.keypoints_raw is not None:
                raw = np.concatenate([self.keypoints_raw[i], self.keypoint_scores[i][:, None]], -1)
                rec["keypoints_raw"] = [round(float(v), 2) for v in raw.reshape(-1)]
            records.append(rec)
        return records

    def plot(self, image: np.ndarray | None = None, kpt_thr: float = 0.3, boxes: bool = True) -> np.ndarray:
        """The overlay on a copy of ``image`` (default: the held one), RGB uint8, drawn as
        `frpose predict` draws ``vis/``: keypoints scored at least ``kpt_thr``, limbs, boxes."""
        image = self.image if image is None else image
        if image is None:
            raise ValueError("no image to draw on: pass plot(image) or build the Results with image=")
        return draw_poses(image, self.numpy(), self.spec, self.boxes, kpt_thr=kpt_thr, draw_boxes=boxes,
                          track_ids=self.track_ids)

    def save(self, path, image: np.ndarray | None = None, kpt_thr: float = 0.3, boxes: bool = True):
        """Write :meth:`plot`'s overlay (JPEG/PNG by suffix) through a temp file and a rename, so a
        crash never leaves half an image; returns the path."""
        return write_image(path, self.plot(image, kpt_thr, boxes))

    def __repr__(self) -> str:
        frame = "" if self.frame is None else f", frame={self.frame}"
        dropped = f", dropped={self.dropped}" if self.dropped else ""
        return (f"Results({self.file_name!r}{frame}, persons={len(self)}, keypoints={self.spec.num_keypoints}"
                f"{dropped})")


def predict_image(predictor, image_rgb: np.ndarray, boxes=None, nms_thr: float = DEFAULTS.nms_thr,
                  batch_size: int = DEFAULTS.batch_size, det_thr: float = DEFAULTS.det_thr, **info) -> Results:
    """``predictor`` (a :class:`~frpose_cli.inference.predict.PosePredictor`) on one RGB image (uint8
    (H, W, 3)), the way `frpose predict` treats each image, with its defaults
    (:class:`~frpose_cli.inference.predict_options.PredictOptions`): ``boxes`` (M, 5) x, y, w, h, score or
    (M, 4) with score 1, None → the whole image (``--detector whole-image``); boxes scored under ``det_thr``
    dropped and the rest clipped to the image, as ``--boxes`` files are (the unusable ones dropped too; all
    counted in ``Results.dropped``, as the CLI counts them), rescored, OKS-NMS at ``nms_thr``.  ``info``:
    file_name, image_id, frame."""
    from collections import Counter
    from types import SimpleNamespace
    from frpose_cli.inference.detectors import WholeImageDetector   # pulls in the download code: only when used
    image_rgb = image_rgb_array(image_rgb)
    nms_thr, batch_size = in_range(nms_thr, "nms_thr"), in_range(batch_size, "batch_size")
    det_thr = in_range(det_thr, "det_thr")
    h, w = image_rgb.shape[:2]
    boxes = boxes_array(WholeImageDetector()(SimpleNamespace(image=image_rgb)) if boxes is None else boxes)
    dropped = Counter()
    # float32, as every detector and box file of the CLI gives boxes: the same boxes, the same crops to the bit
    with np.errstate(over="ignore"):   # a value beyond float32 becomes inf, dropped as non-finite as a box file's is
        boxes = boxes.astype(np.float32)
    boxes = clip_boxes(drop_low_scores(boxes, det_thr, dropped), w, h, dropped=dropped)
    crops, centers, scales = predictor.crops(image_rgb, boxes)
    k = predictor.card.keypoints.num_keypoints
    poses = predictor.decode(predictor.heatmaps(crops, batch_size), centers, scales) if len(crops) \
        else np.zeros((0, k, 3), np.float32)
    found = Results.from_poses(poses, boxes, predictor.card.keypoints, image=image_rgb, dropped=dropped, **info)
    return found[found.nms_keep(scales[:, 0] * scales[:, 1], predictor.oks_sigmas, nms_thr)]
