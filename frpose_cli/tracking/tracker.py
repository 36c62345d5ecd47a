"""Identities across frames: each frame's poses are matched to the tracks of the frames before.

The matching is the one Simple Baselines' tracking, mmpose's pose tracker and rtmlib's
``PoseTracker`` use, made order-free:

1. **OKS of poses**: every (pose, track) pair whose object keypoint similarity is at least
   :data:`MATCH_OKS` is a candidate; candidates are taken greedily, most similar first, each pose and
   track once.  A track is compared as it was last seen and as its motion predicts it now (its box
   centre moved at its last velocity), and the better of the two counts, so a person walking behind
   a pillar and one standing still are both found again.
2. **IoU of boxes** for the poses and tracks left: the same greedy pass over pairs with box IoU of
   at least :data:`MATCH_IOU` (a pose whose keypoints are too few or too unsure to compare).
3. A pose matched to no track **starts a new track** when it has at least :data:`MIN_KEYPOINTS`
   keypoints scored :data:`VISIBLE` or more and its keypoint box covers :data:`MIN_AREA` px²;
   otherwise it keeps ``track_id`` -1 (untracked, mmpose's convention) and is still recorded.

Candidates are ordered by similarity, then by track id, then by the pose's own values, and new
tracks are numbered in the order of their poses' values: the same frame in any order gives the same
identities (a hypothesis test).  Ids start at 0, count up and are never reused within a sequence.

A track lives through :data:`LIFETIME` frames without a match (ByteTrack's and ultralytics'
``track_buffer``, one second at 30 frames/s), then ends.  Thresholds and their sources:
docs/tracking.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from frpose_cli.metrics.oks_nms import oks_matrix

MATCH_OKS = 0.3        # mmpose's tracking_thr (for OKS and IoU alike); rtmlib's IoU threshold
MATCH_IOU = 0.3
LIFETIME = 30          # missed frames a track survives (ByteTrack / ultralytics track_buffer)
MIN_KEYPOINTS = 3      # visible keypoints a new track needs (mmpose's min_keypoints)
MIN_AREA = 1000.0      # px² of the keypoint box a new track needs (rtmlib's PoseTracker.MIN_AREA)
VISIBLE = 0.3          # a keypoint counts as seen from this score (frpose's --kpt-thr default)
BOX_EXPANSION = 1.25   # keypoint box → person box (rtmlib, mmdeploy's pose_bbox_scale)
VELOCITY_MEMORY = 0.5  # a track's velocity: this much of the old estimate, the rest from the last step


def keypoint_box(keypoints: np.ndarray, expansion: float = BOX_EXPANSION, visible: float = VISIBLE):
    """(x, y, w, h) around the keypoints scored ``visible`` or more, grown ``expansion`` times about
    its centre; None with fewer than two such keypoints (no extent to speak of)."""
    kp = np.asarray(keypoints, np.float64)
    seen = kp[:, 2] >= visible
    if seen.sum() < 2:
        return None
    lo, hi = kp[seen, :2].min(0), kp[seen, :2].max(0)
    centre, half = (lo + hi) / 2, (hi - lo) / 2 * expansion
    return np.array([*(centre - half), *(2 * half)])


def _xywh(a) -> np.ndarray:
    a = np.asarray(a, np.float64)
    return a.reshape(0, 4) if a.size == 0 else a.reshape(len(a), -1)[:, :4]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between x, y, w, h boxes ``a`` (N, ≥4) and ``b`` (M, ≥4) → (N, M)."""
    a, b = _xywh(a), _xywh(b)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
    y2 = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


@dataclass
class Track:
    id: int
    keypoints: np.ndarray      # (K, 3) as last seen
    box: np.ndarray            # (4,) x, y, w, h the matching compares: the keypoint box, else the crop's box
    area: float                # OKS scale (the box area)
    box_score: float           # the person's last detector score (propagated boxes carry it on)
    last_frame: int
    velocity: np.ndarray       # (2,) px per frame of the box centre, averaged over sightings (VELOCITY_MEMORY)

    def predicted(self, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints and box moved on to ``frame`` at the last velocity."""
        shift = self.velocity * (frame - self.last_frame)
        kp = self.keypoints.copy()
        kp[:, :2] += shift
        return kp, np.array([self.box[0] + shift[0], self.box[1] + shift[1], self.box[2], self.box[3]])


def _check_threshold(name: str, value: float, low: float = 0.0, high: float = 1.0) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number (got {type(value).__name__})")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low:g}, {high:g}] (got {value})")
    return float(value)


class PoseTracker:
    """One sequence's tracks.  ``update`` gives each of a frame's poses its track id."""

    def __init__(self, sigmas, match_oks: float = MATCH_OKS, match_iou: float = MATCH_IOU,
                 lifetime: int = LIFETIME, min_keypoints: int = MIN_KEYPOINTS, min_area: float = MIN_AREA):
        self.sigmas = np.asarray(sigmas, np.float64).reshape(-1)
        if self.sigmas.size == 0 or not np.all(self.sigmas > 0):
            raise ValueError("sigmas must be one positive OKS σ per keypoint")
        self.match_oks = _check_threshold("match_oks", match_oks)
        self.match_iou = _check_threshold("match_iou", match_iou)
        if not isinstance(lifetime, int) or isinstance(lifetime, bool) or lifetime < 0:
            raise ValueError(f"lifetime must be a whole number of frames ≥ 0 (got {lifetime!r})")
        if not isinstance(min_keypoints, int) or min_keypoints < 0:
            raise ValueError(f"min_keypoints must be a whole number ≥ 0 (got {min_keypoints!r})")
        self.min_area = _check_threshold("min_area", min_area, 0.0, float("inf"))
        self.lifetime, self.min_keypoints = lifetime, min_keypoints
        self.tracks: dict[int, Track] = {}
        self.next_id = 0
        self.frame = None

    # -- the frame's poses → track ids ---------------------------------------------------------------
    def update(self, keypoints, boxes, frame: int) -> np.ndarray:
        """``keypoints`` (P, K, 3) image pixels + scores, ``boxes`` (P, ≥5) x, y, w, h, score of the
        boxes the poses were found in, ``frame`` this frame's index (increasing) → (P,) track ids
        (-1: untracked)."""
        kp, boxes = self._check(keypoints, boxes, frame)
        self._expire(frame)
        compared = [self._compared_box(k, b) for k, b in zip(kp, boxes)]
        ids = np.full(len(kp), -1, np.int64)
        order = self._pose_keys(kp, boxes)
        live = sorted(self.tracks.values(), key=lambda t: t.id)
        if len(kp) and live:
            now = [t.predicted(frame) for t in live]
            last = [(t.keypoints, t.box) for t in live]
            oks = np.maximum(self._oks(kp, compared, [k for k, _ in last], live),
                             self._oks(kp, compared, [k for k, _ in now], live))
            free = self._greedy(oks, self.match_oks, ids, live, order)
            cb = np.array([c for c in compared])
            iou = np.maximum(iou_matrix(cb, np.array([b for _, b in last])),
                             iou_matrix(cb, np.array([b for _, b in now])))
            self._greedy(np.where(free, iou, -1.0), self.match_iou, ids, live, order)
        for p in sorted(np.flatnonzero(ids < 0), key=lambda p: order[p]):
            if self.can_start(kp[p]):
                ids[p] = self.next_id
                self.next_id += 1
        for p in np.flatnonzero(ids >= 0):
            self._see(int(ids[p]), kp[p], compared[p], boxes[p], frame)
        self.frame = frame
        return ids

    def restore(self, keypoints, boxes, track_ids, frame: int) -> None:
        """Take a frame whose identities are known (a resumed run's logged frames), as ``update``
        would have left the tracks after it."""
        kp, boxes = self._check(keypoints, boxes, frame)
        self._expire(frame)
        for k, b, t in zip(kp, boxes, np.asarray(track_ids, np.int64).reshape(-1)):
            if t >= 0:
                self._see(int(t), k, self._compared_box(k, b), b, frame)
                self.next_id = max(self.next_id, int(t) + 1)
        self.frame = frame

    def can_start(self, keypoints: np.ndarray) -> bool:
        """Whether a pose is seen well enough to start a track."""
        if int((keypoints[:, 2] >= VISIBLE).sum()) < self.min_keypoints:
            return False
        box = keypoint_box(keypoints, expansion=1.0)
        return box is not None and box[2] * box[3] >= self.min_area

    # -- the next frame's boxes --------------------------------------------------------------------
    def propagated(self, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """Boxes for ``frame`` from the poses of the tracks seen in the frame before it: each keypoint
        box × :data:`BOX_EXPANSION`, with the person's last detector score → ((T, 5) boxes, (T,) track
        ids), as rtmlib and mmdeploy propagate them.  The box is not moved on at the track's velocity: the
        crop's padding covers a frame's motion, and a velocity misjudged (the jump a detection frame makes
        after propagated ones) would push the box off the person.  Tracks not seen then, or seen with too
        few keypoints, give none (the detector finds them again)."""
        boxes, ids = [], []
        for t in sorted(self.tracks.values(), key=lambda t: t.id):
            if t.last_frame != self.frame or int((t.keypoints[:, 2] >= VISIBLE).sum()) < max(self.min_keypoints, 2):
                continue
            box = keypoint_box(t.keypoints)
            if box is not None:
                boxes.append([*box, t.box_score])
                ids.append(t.id)
        return np.array(boxes, np.float64).reshape(-1, 5), np.array(ids, np.int64)

    # -- inside --------------------------------------------------------------------------------------
    def _check(self, keypoints, boxes, frame):
        kp = np.asarray(keypoints, np.float64)
        k = len(self.sigmas)
        if kp.size == 0:
            kp = kp.reshape(0, k, 3)
        if kp.ndim != 3 or kp.shape[1:] != (k, 3):
            raise ValueError(f"keypoints must be (P, {k}, 3) x, y, score (got {kp.shape})")
        boxes = np.asarray(boxes, np.float64).reshape(len(kp), -1) if len(kp) else np.zeros((0, 5))
        if boxes.shape[1] < 5:
            raise ValueError(f"boxes must be (P, 5) x, y, w, h, score (got {boxes.shape})")
        if not isinstance(frame, (int, np.integer)) or isinstance(frame, bool):
            raise TypeError(f"frame must be an int (got {type(frame).__name__})")
        if self.frame is not None and frame <= self.frame:
            raise ValueError(f"frame must increase (got {frame} after {self.frame})")
        return kp, boxes

    def _expire(self, frame: int) -> None:
        for tid in [t.id for t in self.tracks.values() if frame - t.last_frame > self.lifetime + 1]:
            del self.tracks[tid]

    @staticmethod
    def _compared_box(kp, box):
        found = keypoint_box(kp)
        return found if found is not None else np.asarray(box[:4], np.float64)

    @staticmethod
    def _pose_keys(kp, boxes) -> list[tuple]:
        """An order of the poses that depends on their values only (permutation-free tie breaks)."""
        return [tuple(np.round(np.concatenate([b[:5], k.reshape(-1)]), 6)) for k, b in zip(kp, boxes)]

    def _oks(self, kp, compared, track_kps, live) -> np.ndarray:
        """(P, T) OKS between the poses and the tracks' poses, on keypoints both see."""
        p = len(kp)
        both = np.concatenate([kp, np.stack(track_kps)])
        areas = np.concatenate([[b[2] * b[3] for b in compared], [t.area for t in live]])
        return oks_matrix(both, areas, self.sigmas, score_threshold=VISIBLE - 1e-9)[:p, p:]

    @staticmethod
    def _greedy(sim, threshold, ids, live, order) -> np.ndarray:
        """Assign greedily (most similar first; ties by track id, then the pose's values); returns
        the (P, T) mask of pairs still free for the next pass."""
        pairs = [(-sim[p, t], live[t].id, order[p], p, t) for p, t in zip(*np.nonzero(sim >= threshold))
                 if ids[p] < 0]
        taken_tracks = {int(i) for i in ids if i >= 0}
        for _, tid, _, p, t in sorted(pairs):
            if ids[p] < 0 and tid not in taken_tracks:
                ids[p] = tid
                taken_tracks.add(tid)
        free = np.ones(sim.shape, bool)
        free[ids >= 0, :] = False
        free[:, [live[t].id in taken_tracks for t in range(len(live))]] = False
        return free

    def _see(self, tid: int, kp, compared, box, frame: int) -> None:
        old = self.tracks.get(tid)
        centre = compared[:2] + compared[2:4] / 2
        velocity = np.zeros(2)
        if old is not None:
            before = old.box[:2] + old.box[2:4] / 2
            step = (centre - before) / max(1, frame - old.last_frame)
            velocity = VELOCITY_MEMORY * old.velocity + (1 - VELOCITY_MEMORY) * step
        self.tracks[tid] = Track(tid, kp.copy(), np.asarray(compared, np.float64), float(compared[2] * compared[3]),
                                 float(box[4]), frame, velocity)
