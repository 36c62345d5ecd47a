"""Steady keypoints: a One Euro filter per track and keypoint (Casiez, Roussel & Vogel, CHI 2012).

A One Euro filter is an exponential smoother whose cut-off frequency rises with the signal's speed:
a keypoint at rest is smoothed hard (jitter of a few pixels disappears), a moving one follows with
little lag.  With frame interval ``dt`` seconds and the keypoint's smoothed speed ``v``::

    cutoff = min_cutoff + beta * v            alpha = 1 / (1 + 1 / (2π · cutoff · dt))
    x̂ = x̂_prev + alpha · (x − x̂_prev)

The time step comes from the frames' timestamps (the video's clock, or a live stream's arrival
clock), so dropped frames and uneven rates are handled: a long gap lets the filter jump to the new
value.  Speeds are measured in **person sizes per second** (the pose's keypoint box, its longer side),
not pixels, so one setting suits a person filling a 4K frame and one far away in a 640×480 stream;
that is the one change from the paper's filter, whose ``beta`` is per unit of the signal.

Defaults (:data:`DEFAULT`) and how they were chosen against the anchors' (mmpose's ``OneEuroFilter``:
min_cutoff 1.7, beta 0.3 with speeds in pixels and d_cutoff 30; the paper's starting point: min_cutoff
1, beta 0, d_cutoff 1): docs/tracking.md, measured by ``scripts/bench_tracking.py``.  Keypoint scores
pass through unchanged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from frpose_cli.tracking.tracker import keypoint_box


@dataclass(frozen=True)
class OneEuroParams:
    min_cutoff: float = 1.0    # Hz: the cut-off at rest (lower: steadier, more lag)
    beta: float = 3.0          # Hz per (person size / s): how fast the cut-off rises with speed
    d_cutoff: float = 1.0      # Hz: the cut-off of the speed estimate itself

    def __post_init__(self):
        for name in ("min_cutoff", "beta", "d_cutoff"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise TypeError(f"{name} must be a finite number (got {value!r})")
        if self.min_cutoff <= 0 or self.d_cutoff <= 0:
            raise ValueError(f"min_cutoff and d_cutoff must be positive (got {self.min_cutoff}, {self.d_cutoff})")
        if self.beta < 0:
            raise ValueError(f"beta must be 0 or more (got {self.beta})")


DEFAULT = OneEuroParams()
MIN_DT = 1e-3   # s: frames stamped at the same instant still move the filter a little


def _alpha(cutoff, dt: float):
    return 1.0 / (1.0 + 1.0 / (2.0 * math.pi * cutoff * dt))


class OneEuroFilter:
    """A One Euro filter over an array of points (…, 2): ``filter(points, t, scale)`` → smoothed
    points; the speed of each point is the norm of its 2-D velocity divided by ``scale``."""

    def __init__(self, params: OneEuroParams = DEFAULT):
        if not isinstance(params, OneEuroParams):
            raise TypeError(f"params must be OneEuroParams (got {type(params).__name__})")
        self.params = params
        self.value = self.speed = self.time = None

    def __call__(self, points, t: float, scale: float = 1.0) -> np.ndarray:
        x = np.asarray(points, np.float64)
        if not math.isfinite(t):
            raise ValueError(f"t must be a finite time in seconds (got {t})")
        if not (scale > 0 and math.isfinite(scale)):
            raise ValueError(f"scale must be positive (got {scale})")
        if self.value is None or self.value.shape != x.shape:
            self.value, self.speed, self.time = x.copy(), np.zeros(x.shape[:-1]), t
            return x.copy()
        p = self.params
        dt = max(t - self.time, MIN_DT)
        velocity = (x - self.value) / dt
        a_d = _alpha(p.d_cutoff, dt)
        self.speed = self.speed + a_d * (np.linalg.norm(velocity, axis=-1) / scale - self.speed)
        a = _alpha(p.min_cutoff + p.beta * self.speed, dt)[..., None]
        self.value = self.value + a * (x - self.value)   # exact for a constant signal: x − x̂ = 0
        self.time = t
        return self.value.copy()


class KeypointSmoother:
    """One :class:`OneEuroFilter` per track: ``smooth(track_ids, keypoints, t)`` → the keypoints with
    x, y smoothed (untracked persons, id -1, pass unchanged); ``forget(ids)`` drops ended tracks."""

    def __init__(self, params: OneEuroParams = DEFAULT):
        self.params = params if isinstance(params, OneEuroParams) else OneEuroParams(*params)
        self.filters: dict[int, OneEuroFilter] = {}

    def smooth(self, track_ids, keypoints, t: float) -> np.ndarray:
        kp = np.array(keypoints, np.float64, copy=True)
        ids = np.asarray(track_ids, np.int64).reshape(-1)
        if kp.ndim != 3 or kp.shape[-1] != 3 or len(kp) != len(ids):
            raise ValueError(f"keypoints must be (P, K, 3) for {len(ids)} track ids (got {kp.shape})")
        for p, tid in enumerate(ids):
            if tid < 0:
                continue
            box = keypoint_box(kp[p], expansion=1.0)
            scale = max(box[2], box[3], 1.0) if box is not None else 1.0
            kp[p, :, :2] = self.filters.setdefault(int(tid), OneEuroFilter(self.params))(kp[p, :, :2], t, scale)
        return kp

    def forget(self, ids) -> None:
        for tid in ids:
            self.filters.pop(int(tid), None)
