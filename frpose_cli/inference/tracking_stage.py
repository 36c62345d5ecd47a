"""The predict loop's tracking stages: which items form a sequence, their boxes, their identities.

Videos and live streams are sequences by default (``--track``, the default for them); with
``--track`` given, a folder of images is one too (its images in natural order are its frames,
PoseTrack's layout), while images without it stay independent stills, exactly as before.  Per
sequence, a :class:`~frpose_cli.tracking.sequence.SequenceTracker` decides which frames run the
detector (``--det-every``), gives the boxes of the others, numbers the people and smooths them
(``--smooth``).  Frames of a sequence are run one at a time (the next frame's boxes come from this
frame's poses), so they never wait in a batch with other frames.

Why on by default for videos: a frame's records are only useful to a video user when the same
person can be followed from frame to frame; it changes no pose with ``--det-every 1``, it
costs well under 3 % of a frame's time (docs/tracking.md, measured), and ``--no-track``
gives the per-frame records of earlier frpose versions.
"""
from __future__ import annotations

from pathlib import PurePosixPath

import numpy as np

from frpose_cli.data.geometry import clip_boxes
from frpose_cli.inference.results import Results
from frpose_cli.data.sources import SourceItem
from frpose_cli.tracking.offline import WindowSmoother
from frpose_cli.tracking.sequence import SequenceTracker
from frpose_cli.tracking.smoothing import OneEuroParams

IMAGE_SEQUENCE_FPS = 30.0   # a folder of frames has no clock: PoseTrack's and most cameras' rate


class TrackingStage:
    """The tracking state of a predict run: one :class:`SequenceTracker` per open sequence."""

    def __init__(self, track: bool | None, det_every: int, smooth: OneEuroParams | None, lifetime: int, sigmas,
                 meta: dict | None = None, offline: bool = False):
        self.track, self.det_every, self.smooth, self.lifetime = track, det_every, smooth, lifetime
        self.offline = offline   # --smooth-offline: frames held back for the window smoother (tracking/offline.py)
        self.windows: dict[str, WindowSmoother] = {}
        self.current = None      # the sequence whose frames were handled last
        # the settings and keypoint names, logged with this process's first tracked frame (images.json and the
        # PoseTrack files take them from there: a run of images only records nothing new)
        self.meta, self.meta_logged = meta or {}, False
        self.sigmas = np.asarray(sigmas, np.float64)
        self.sequences: dict[str, SequenceTracker] = {}
        self.image_ordinals: dict[str, int] = {}
        self.ended_tracks = 0    # identities given in finished sequences
        self.frames = 0          # tracked frames
        self.detected = 0        # of which the detector ran on
        self.seconds = 0.0       # kept by the caller's timer

    @property
    def tracks_images(self) -> bool:
        """Folders of images are sequences only when ``--track`` is asked for by name."""
        return self.track is True

    def tracked(self, item: SourceItem) -> bool:
        if item.frame is not None:
            return self.track is not False
        return self.tracks_images

    @staticmethod
    def key(item: SourceItem) -> str:
        """A video or stream is its own sequence; an image belongs to its folder's."""
        return item.file_name if item.frame is not None else str(PurePosixPath(item.file_name).parent)

    def stamp(self, item: SourceItem) -> None:
        """An image of a tracked folder gets its place in the folder's sequence and a clock
        (:data:`IMAGE_SEQUENCE_FPS`); called once per image, in source order (done ones too)."""
        if item.frame is not None or not self.tracks_images or item.ignored or item.error:
            return
        key = self.key(item)
        if key not in self.image_ordinals:   # folders come one after the other: the last one is finished
            self.image_ordinals.clear()
            self.image_ordinals[key] = 0
        item.ordinal = self.image_ordinals[key]
        item.timestamp = item.ordinal / IMAGE_SEQUENCE_FPS
        self.image_ordinals[key] += 1

    def detects(self, item: SourceItem) -> bool:
        return item.ordinal is None or item.ordinal % self.det_every == 0

    def sequence(self, item: SourceItem) -> SequenceTracker:
        key = self.key(item)
        if key not in self.sequences:
            self.sequences[key] = SequenceTracker(self.sigmas, self.det_every, self.smooth, self.lifetime)
        return self.sequences[key]

    def boxes(self, item: SourceItem, detected) -> tuple[np.ndarray, np.ndarray]:
        """(N, 5) boxes for the item's crops (``detected``: its detector boxes, or None between
        detections) and (N,) whether each was propagated from the frame before."""
        h, w = item.image.shape[:2]
        seq = self.sequence(item)
        return seq.boxes(item.ordinal, detected, clip=lambda b: clip_boxes(b, w, h))

    def finish(self, item: SourceItem, found: Results, propagated: np.ndarray) -> tuple[Results, np.ndarray]:
        """The frame's poses (after OKS-NMS) with track ids, timestamp and smoothed keypoints; returns
        them and the indices of ``found`` they are (poses of propagated boxes that found nobody are
        dropped)."""
        seq = self.sequence(item)
        keep, ids, smoothed = seq.assign(found.numpy(), found.boxes, propagated, item.ordinal, item.timestamp or 0.0)
        index = np.flatnonzero(keep)
        out = found[index]
        out.track_ids, out.timestamp = ids, item.timestamp
        if smoothed is not None:
            out.keypoints_raw, out.keypoints = out.keypoints, smoothed[..., :2]
        self.frames += 1
        return out, index

    def hold(self, item: SourceItem, found: Results, payload) -> list:
        """``--smooth-offline``: hold the frame back; returns the frames of its sequence now complete, as
        (payload, smoothed (P, K, 3))."""
        window = self.windows.setdefault(self.key(item), WindowSmoother())
        return window.push(item.ordinal, found.track_ids, found.numpy(), payload)

    def waiting_order(self):
        """The stream order of the first frame held back, or None."""
        return min((w.waiting[0][3][0].order for w in self.windows.values() if w.waiting), default=None)

    def release(self, key: str | None = None) -> list:
        """The frames held back of sequence ``key`` (all sequences: None), smoothed with what there is."""
        out = []
        for k in [key] if key is not None else list(self.windows):
            if k in self.windows:
                out += self.windows[k].flush()
        return out

    def restore(self, item: SourceItem, records: list) -> None:
        """A frame an earlier session logged (``--resume``): its sequence continues from it."""
        k = len(self.sigmas)
        kp = np.array([r["keypoints"] for r in records], np.float64).reshape(-1, k, 3)
        raw = np.array([r.get("keypoints_raw", r["keypoints"]) for r in records], np.float64).reshape(-1, k, 3)
        boxes = np.array([[*r["bbox"], r.get("box_score", 1.0)] for r in records], np.float64).reshape(-1, 5)
        ids = [r.get("track_id", -1) for r in records]
        self.sequence(item).restore(kp, boxes, ids, item.ordinal, item.timestamp or 0.0, raw)
        if self.offline:   # the window of the frames to come reaches back into the logged ones
            self.windows.setdefault(self.key(item), WindowSmoother()).remember(item.ordinal, ids, raw)

    def end(self, key: str) -> None:
        """A sequence is finished: its tracks are counted and its state freed."""
        seq = self.sequences.pop(key, None)
        self.windows.pop(key, None)
        self.current = None if self.current == key else self.current
        if seq is not None:
            self.ended_tracks += seq.tracker.next_id

    def count_tracks(self) -> int:
        """Identities given over the run (ended sequences and open ones)."""
        return self.ended_tracks + sum(s.tracker.next_id for s in self.sequences.values())


def tracking_meta(opts) -> dict:
    """The tracking settings a run records (images.json, the logs' header)."""
    from frpose_cli.tracking import sequence, tracker
    from frpose_cli.tracking.offline import HALF
    from frpose_cli.tracking.smoothing import DEFAULT
    smooth = opts.smooth_params or DEFAULT
    return {"track": "images and videos" if opts.track else "videos and streams", "det_every": opts.det_every,
            "lifetime": opts.track_lifetime, "match_oks": tracker.MATCH_OKS, "match_iou": tracker.MATCH_IOU,
            "min_keypoints": tracker.MIN_KEYPOINTS, "min_area": tracker.MIN_AREA, "merge_iou": sequence.MERGE_IOU,
            "smooth": {"min_cutoff": smooth.min_cutoff, "beta": smooth.beta, "d_cutoff": smooth.d_cutoff}
            if opts.smooth else {"offline": f"quadratic least squares over ±{HALF} frames"} if opts.smooth_offline
            else None}
