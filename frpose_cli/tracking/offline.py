"""Steady keypoints from future frames too (``--smooth-offline``, files only): each keypoint of a track
at frame t is the value at t of a quadratic fitted by least squares to that keypoint over frames
t - 4 … t + 4 of the track, the frames it was seen in (score ≥ 0.3).

With all nine frames seen this is the Savitzky-Golay filter (window 9, order 2, SciPy's
``savgol_filter``; a test holds them equal); frames a person was not seen in, or a keypoint was
unsure in, simply leave the fit, and near a track's ends the window is one-sided.  A keypoint with
fewer than :data:`MIN_POINTS` usable frames in its window keeps its raw value.  A quadratic through a
steady motion has no lag, which is why it beats the online filter on files (measured in
docs/benchmarks.md, "Tracking"); the price is that a frame is released :data:`HALF` frames late, so it
is no option for a live source.
"""
from __future__ import annotations

from collections import deque

import numpy as np

HALF = 4          # frames on each side: a window of 9 (SG's classic choice for 25-30 frames/s)
ORDER = 2
MIN_POINTS = 4    # usable frames in a window below which a keypoint keeps its raw value
VISIBLE = 0.3


def local_fit(times, values, weights, at: float, order: int = ORDER) -> np.ndarray:
    """The value at ``at`` of weighted least-squares polynomials of ``order``, one per column:
    ``times`` (n,), ``values`` (n, m), ``weights`` (n, m) 0/1 → (m,); NaN where a column has fewer than
    :data:`MIN_POINTS` weighted points."""
    t = np.asarray(times, np.float64) - at                   # centred: the fit's constant term is the value
    a = np.vander(t, order + 1, increasing=True)               # (n, order + 1)
    w = np.asarray(weights, np.float64)
    lhs = np.einsum("nm,ni,nj->mij", w, a, a)                  # (m, o, o): Aᵀ W A per column
    rhs = np.einsum("nm,ni,nm->mi", w, a, np.asarray(values, np.float64))
    out = np.full(w.shape[1], np.nan)
    ok = w.sum(0) >= MIN_POINTS
    if ok.any():
        out[ok] = np.linalg.solve(lhs[ok], rhs[ok][..., None])[:, 0, 0]
    return out


class WindowSmoother:
    """One sequence's frames held back :data:`HALF` frames: ``push`` a frame (its ordinal, track ids, raw
    (P, K, 3) keypoints and anything to hand back), get the frames now complete as ``(payload,
    smoothed (P, K, 3))``; ``flush`` at the sequence's end; ``remember`` a frame logged earlier (resume)."""

    def __init__(self, half: int = HALF):
        if not isinstance(half, int) or half < 1:
            raise ValueError(f"half must be a whole number ≥ 1 (got {half!r})")
        self.half = half
        self.history: dict[int, deque] = {}   # track id → (ordinal, (K, 3) raw) within reach of the window
        self.waiting: deque = deque()         # (ordinal, ids, raw, payload) not released yet
        self.last = None

    def push(self, ordinal: int, track_ids, keypoints, payload) -> list:
        self.remember(ordinal, track_ids, keypoints)
        self.waiting.append((ordinal, np.asarray(track_ids, np.int64), np.asarray(keypoints, np.float64), payload))
        return self._release(lambda o: o + self.half <= ordinal)

    def remember(self, ordinal: int, track_ids, keypoints) -> None:
        if self.last is not None and ordinal <= self.last:
            raise ValueError(f"ordinal must increase (got {ordinal} after {self.last})")
        self.last = ordinal
        for tid, kp in zip(np.asarray(track_ids, np.int64), np.asarray(keypoints, np.float64)):
            if tid >= 0:
                self.history.setdefault(int(tid), deque()).append((ordinal, kp))
        for tid in list(self.history):   # what no waiting or future frame's window reaches any more
            h = self.history[tid]
            while h and h[0][0] < ordinal - 2 * self.half:
                h.popleft()
            if not h:
                del self.history[tid]

    def flush(self) -> list:
        return self._release(lambda o: True)

    def _release(self, ready) -> list:
        out = []
        while self.waiting and ready(self.waiting[0][0]):
            ordinal, ids, raw, payload = self.waiting.popleft()
            out.append((payload, self._smoothed(ordinal, ids, raw)))
        return out

    def _smoothed(self, ordinal, ids, raw) -> np.ndarray:
        out = raw.copy()
        for p, tid in enumerate(ids):
            seen = [(o, kp) for o, kp in self.history.get(int(tid), ()) if abs(o - ordinal) <= self.half] \
                if tid >= 0 else []
            if len(seen) < MIN_POINTS:
                continue
            times = np.array([o for o, _ in seen], np.float64)
            kps = np.stack([kp for _, kp in seen])                          # (n, K, 3)
            values = kps[..., :2].reshape(len(seen), -1)                    # (n, 2K)
            weights = np.repeat(kps[..., 2] >= VISIBLE, 2, axis=1)          # x and y of a keypoint alike
            fit = local_fit(times, values, weights, ordinal).reshape(-1, 2)
            good = np.isfinite(fit).all(1)
            out[p, good, :2] = fit[good]
        return out
