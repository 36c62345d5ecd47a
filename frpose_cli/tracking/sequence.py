"""One sequence's tracking stages (a video, a live stream, or a folder of frames with ``--track``).

The predict loop asks, per frame, in order:

* :meth:`SequenceTracker.detects`: does the person detector run on this frame?  Every
  ``det_every``-th frame of the sequence (the first included) — a fixed schedule, decided from the
  frame's place alone, so the detect-ahead thread can know it before the frame before is finished.
* :meth:`SequenceTracker.boxes`: the boxes to crop.  Between detections, each track seen in the
  frame before gives its pose's keypoint box × 1.25 (:meth:`~frpose_cli.tracking.tracker.PoseTracker.propagated`);
  on detection frames the detector's boxes come first and a propagated box is added only where no
  detector box overlaps it by IoU :data:`MERGE_IOU` or more (the detector's own NMS threshold), so a
  person the detector misses for a frame is not lost and one it finds is not doubled (a second pose
  of one person is also removed by the OKS-NMS that follows).
* :meth:`SequenceTracker.assign`: after the pose network, a pose found in a propagated box that
  sees fewer than ``min_keypoints`` keypoints is dropped (the person left, or the box drifted: it
  was a guess, not a detection); the rest get track ids (:class:`~frpose_cli.tracking.tracker.PoseTracker`)
  and, with smoothing, filtered keypoints (:class:`~frpose_cli.tracking.smoothing.KeypointSmoother`).

Frames are counted by their place in the sequence (``ordinal``: 0, 1, 2, … over the frames read,
whatever ``--vid-stride`` or a live stream's dropped frames skip), so a track's lifetime and the
detection schedule are in frames read.
"""
from __future__ import annotations

import numpy as np

from frpose_cli.tracking.smoothing import KeypointSmoother, OneEuroParams
from frpose_cli.tracking.tracker import LIFETIME, MATCH_IOU, MATCH_OKS, VISIBLE, PoseTracker, iou_matrix

MERGE_IOU = 0.5   # torchvision's Faster R-CNN box NMS threshold: above it two boxes are one person


class SequenceTracker:
    """The tracking state of one sequence (see the module docstring)."""

    def __init__(self, sigmas, det_every: int = 1, smooth: OneEuroParams | None = None,
                 lifetime: int = LIFETIME, match_oks: float = MATCH_OKS, match_iou: float = MATCH_IOU):
        if not isinstance(det_every, int) or isinstance(det_every, bool) or det_every < 1:
            raise ValueError(f"det_every must be a whole number ≥ 1 (got {det_every!r})")
        self.det_every = det_every
        self.tracker = PoseTracker(sigmas, match_oks=match_oks, match_iou=match_iou, lifetime=lifetime)
        self.smoother = KeypointSmoother(smooth) if smooth is not None else None
        self.frames = 0

    def detects(self, ordinal: int) -> bool:
        return ordinal % self.det_every == 0

    def boxes(self, ordinal: int, detected, clip=None) -> tuple[np.ndarray, np.ndarray]:
        """(N, 5) boxes to crop on frame ``ordinal`` and (N,) whether each is propagated;
        ``detected``: the detector's (M, 5) boxes on a detection frame, None between; ``clip``: what
        makes a propagated box fit the image (the detectors' own rule), dropping the unusable ones."""
        propagated, _ = self.tracker.propagated(ordinal)
        if clip is not None and len(propagated):
            propagated = np.asarray(clip(propagated), np.float64).reshape(-1, 5)
        if detected is None:
            return propagated, np.ones(len(propagated), bool)
        detected = np.asarray(detected, np.float64).reshape(-1, 5)
        if len(detected) and len(propagated):
            propagated = propagated[iou_matrix(propagated, detected).max(1) < MERGE_IOU]
        return np.concatenate([detected, propagated]), np.r_[np.zeros(len(detected), bool),
                                                            np.ones(len(propagated), bool)]

    def assign(self, keypoints, boxes, propagated, ordinal: int, timestamp: float):
        """The frame's poses (P, K, 3) with their boxes (P, 5) and propagated flags (P,) →
        (kept (P,) bool, track ids of the kept (Q,), smoothed keypoints of the kept (Q, K, 3) or None)."""
        kp = np.asarray(keypoints, np.float64)
        keep = ~np.asarray(propagated, bool).reshape(-1) | ((kp[..., 2] >= VISIBLE).sum(-1) >= self.tracker.min_keypoints) \
            if len(kp) else np.zeros(0, bool)
        ids = self.tracker.update(kp[keep], np.asarray(boxes, np.float64)[keep], ordinal)
        self.frames += 1
        return keep, ids, self._smoothed(ids, kp[keep], timestamp)

    def restore(self, keypoints, boxes, track_ids, ordinal: int, timestamp: float, raw_keypoints=None) -> None:
        """A frame an earlier session logged (``--resume``): the tracks and filters continue from it
        (the filters re-run on the logged raw keypoints, rounded as logged)."""
        ids = np.asarray(track_ids, np.int64).reshape(-1)
        raw = raw_keypoints if raw_keypoints is not None else keypoints   # what update and the filter saw
        self.tracker.restore(raw, boxes, ids, ordinal)
        self._smoothed(ids, raw, timestamp)
        self.frames += 1

    def _smoothed(self, ids, kp, timestamp):
        if self.smoother is None:
            return None
        self.smoother.forget([t for t in self.smoother.filters if t not in self.tracker.tracks])
        k = len(self.tracker.sigmas)
        return self.smoother.smooth(ids, np.asarray(kp, np.float64).reshape(len(ids), k, 3), timestamp)
