"""Sub-pixel refinement of heatmap maxima: the decoding half of the codecs.

Every decoder starts from the integer argmax ``(x, y)`` of each map and moves it:

``quarter_offset`` (codec ``sbn``)
    Simple Baselines' ``get_final_preds``: a ¼-pixel step towards the higher neighbour in x
    and in y, only where ``1 < x < W-1`` and ``1 < y < H-1`` (both; a maximum on the two
    outer rows or columns of the map keeps its integer position).
``dark_reference`` (codec ``dark``)
    DARK (Zhang et al., CVPR 2020) as mmpose computes it (``refine_keypoints_dark``): blur
    the map with an OpenCV Gaussian of ``blur_kernel`` taps (zero border), rescale it to
    the original maximum, take ``log(max(·, 1e-10))``; then one Newton step
    ``-H⁻¹·∇`` with central first derivatives and a Hessian of 2-pixel step
    (``(L[x+2] - 2L[x] + L[x-2]) / 4``), only where ``1 < x < W-2`` and ``1 < y < H-2``
    and ``det H ≠ 0``; the step is not limited.
``udp_reference`` (codec ``udp``)
    mmpose's ``refine_keypoints_dark_udp``: the same blur, ``log(clip(·, 1e-3, 50))``,
    the log map edge-padded by one pixel, a 1-pixel-step Hessian (plus float32 ε·I),
    applied at every maximum, border included, step not limited.
``dark_clip`` (codecs ``dark-clip``, ``udp-clip``: frpose's own variant)
    blur with a σ Gaussian (``2⌈3σ⌉+1`` taps, zero border, no rescale), 1-pixel-step
    Hessian, the step skipped where the log map is not concave there (``det ≤ 1e-12`` or
    ``∂²/∂x² ≥ 0``) and clipped to ±1 pixel per axis.  Never moves a maximum by more than a
    pixel; measured against the reference in docs/evaluation.md.

The blur is computed on a window around the maximum only (the values there equal those of
blurring the whole map); the whole map is blurred only when the reference's rescaling or
clipping can change the result (a window value below the clip floor, or a peak above 50),
so the reference decoders stay exact without blurring every full-resolution map.
"""
from __future__ import annotations

import math

import cv2
import numpy as np


def opencv_sigma(kernel: int) -> float:
    """The σ OpenCV's GaussianBlur uses for a kernel of ``kernel`` taps when given σ = 0."""
    return 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8


def blur_kernel_size(sigma: float) -> int:
    """The odd kernel whose OpenCV σ is closest to the target σ: 11 for σ 2 and 17 for σ 3
    (mmpose's DARK configs), 51 for σ 8 and 77 for σ 12 (full-resolution cards)."""
    candidates = range(3, 2 * int(math.ceil((sigma - 0.8) / 0.3 + 1)) + 6, 2)
    return min(candidates, key=lambda k: (abs(opencv_sigma(k) - sigma), k))


def quarter_offset(hm: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Simple Baselines: ±¼ pixel towards the higher neighbour where both axes are interior."""
    n, k, h, w = hm.shape
    out = coords.copy()
    xi, yi = coords[..., 0].astype(int), coords[..., 1].astype(int)
    ni, ki = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    inner = (xi > 1) & (xi < w - 1) & (yi > 1) & (yi < h - 1)
    xr, xl = np.clip(xi + 1, 0, w - 1), np.clip(xi - 1, 0, w - 1)
    yd, yu = np.clip(yi + 1, 0, h - 1), np.clip(yi - 1, 0, h - 1)
    out[..., 0] += 0.25 * np.sign(hm[ni, ki, yi, xr] - hm[ni, ki, yi, xl]) * inner
    out[..., 1] += 0.25 * np.sign(hm[ni, ki, yd, xi] - hm[ni, ki, yu, xi]) * inner
    return out


def _blurred_window(m: np.ndarray, x: int, y: int, reach: int, kernel: int, sigma: float = 0.0,
                    dtype=np.float64):
    """Blur of ``m`` (zero outside the map) on the pixels within ``reach`` of ``(x, y)``:
    returns (window, x0, y0) with the window's top-left map pixel.  The reference decoders
    blur in float64: a several-pixel Newton step amplifies float32 rounding to ~1e-4 px."""
    h, w = m.shape
    r = kernel // 2 + reach
    x0, x1, y0, y1 = max(0, x - r), min(w, x + r + 1), max(0, y - r), min(h, y + r + 1)
    patch = cv2.GaussianBlur(np.ascontiguousarray(m[y0:y1, x0:x1], dtype), (kernel, kernel), sigma,
                             borderType=cv2.BORDER_CONSTANT)
    return patch, x0, y0


def _rescale(m: np.ndarray, kernel: int) -> float:
    """The reference's factor: original maximum / maximum of the blurred map."""
    top = float(cv2.GaussianBlur(np.ascontiguousarray(m, np.float64), (kernel, kernel), 0,
                                 borderType=cv2.BORDER_CONSTANT).max())
    return float(m.max()) / top if top > 0 else math.nan


def dark_reference(hm: np.ndarray, coords: np.ndarray, kernel: int) -> np.ndarray:
    """mmpose's DARK step (see the module docstring); ``coords`` (N, K, 2) integer argmax."""
    n, k, h, w = hm.shape
    out = coords.astype(np.float64)
    for i in range(n):
        for j in range(k):
            x, y = int(coords[i, j, 0]), int(coords[i, j, 1])
            m = hm[i, j]
            if not (1 < x < w - 2 and 1 < y < h - 2) or not m[y, x] > 0:
                continue
            patch, x0, y0 = _blurred_window(m, x, y, 2, kernel)
            px, py = x - x0, y - y0
            v = patch[py - 2:py + 3, px - 2:px + 3].astype(np.float64)
            if v.min() < 1e-10:   # the floor may bite: it applies after the rescale
                v = np.maximum(v * _rescale(m, kernel), 1e-10)
            L = np.log(v)          # L[2, 2] is the maximum; L[row, col]
            dx, dy = 0.5 * (L[2, 3] - L[2, 1]), 0.5 * (L[3, 2] - L[1, 2])
            dxx = 0.25 * (L[2, 4] - 2 * L[2, 2] + L[2, 0])
            dyy = 0.25 * (L[4, 2] - 2 * L[2, 2] + L[0, 2])
            dxy = 0.25 * (L[3, 3] - L[1, 3] - L[3, 1] + L[1, 1])
            det = dxx * dyy - dxy * dxy
            if det == 0 or not math.isfinite(det):
                continue
            out[i, j, 0] -= (dyy * dx - dxy * dy) / det
            out[i, j, 1] -= (dxx * dy - dxy * dx) / det
    return out.astype(np.float32)


def udp_reference(hm: np.ndarray, coords: np.ndarray, kernel: int) -> np.ndarray:
    """mmpose's UDP step (see the module docstring); ``coords`` (N, K, 2) integer argmax."""
    n, k, h, w = hm.shape
    out = coords.astype(np.float64)
    eps = float(np.finfo(np.float32).eps)
    for i in range(n):
        for j in range(k):
            x, y = int(coords[i, j, 0]), int(coords[i, j, 1])
            m = hm[i, j]
            if not m[y, x] > 0:
                continue
            patch, x0, y0 = _blurred_window(m, x, y, 1, kernel)
            # the 3x3 neighbourhood with the map's edge pixels repeated (the reference's edge padding)
            cols = np.clip(np.arange(x - 1, x + 2), 0, w - 1) - x0
            rows = np.clip(np.arange(y - 1, y + 2), 0, h - 1) - y0
            v = patch[np.ix_(rows, cols)].astype(np.float64)
            if v.min() < 1e-3 or m[y, x] > 50:   # the clip may bite: it applies after the rescale
                v = np.clip(v * _rescale(m, kernel), 1e-3, 50.0)
            L = np.log(v)
            dx, dy = 0.5 * (L[1, 2] - L[1, 0]), 0.5 * (L[2, 1] - L[0, 1])
            dxx = L[1, 2] - 2 * L[1, 1] + L[1, 0]
            dyy = L[2, 1] - 2 * L[1, 1] + L[0, 1]
            dxy = 0.5 * (L[2, 2] - L[1, 2] - L[2, 1] + 2 * L[1, 1] - L[1, 0] - L[0, 1] + L[0, 0])
            a, d = dxx + eps, dyy + eps
            det = a * d - dxy * dxy
            if det == 0 or not math.isfinite(det):
                continue
            out[i, j, 0] -= (d * dx - dxy * dy) / det
            out[i, j, 1] -= (a * dy - dxy * dx) / det
    return out.astype(np.float32)


def dark_clip(hm: np.ndarray, coords: np.ndarray, sigma: float) -> np.ndarray:
    """frpose's variant: σ blur, 1-pixel Hessian, skipped where not concave, clipped to ±1 px."""
    n, k, h, w = hm.shape
    out = coords.copy()
    ks = 2 * int(math.ceil(3 * sigma)) + 1
    for i in range(n):
        for j in range(k):
            x, y = int(coords[i, j, 0]), int(coords[i, j, 1])
            if not (1 <= x < w - 1 and 1 <= y < h - 1):
                continue
            patch, x0, y0 = _blurred_window(hm[i, j], x, y, 2, ks, sigma, np.float32)
            L = np.log(np.maximum(patch, 1e-10).astype(np.float64))
            px, py = x - x0, y - y0
            dx = 0.5 * (L[py, px + 1] - L[py, px - 1])
            dy = 0.5 * (L[py + 1, px] - L[py - 1, px])
            dxx = L[py, px + 1] - 2 * L[py, px] + L[py, px - 1]
            dyy = L[py + 1, px] - 2 * L[py, px] + L[py - 1, px]
            dxy = 0.25 * (L[py + 1, px + 1] - L[py + 1, px - 1] - L[py - 1, px + 1] + L[py - 1, px - 1])
            det = dxx * dyy - dxy * dxy
            if det <= 1e-12 or dxx >= 0:  # not a maximum: keep the argmax
                continue
            out[i, j, 0] += float(np.clip(-(dyy * dx - dxy * dy) / det, -1, 1))
            out[i, j, 1] += float(np.clip(-(dxx * dy - dxy * dx) / det, -1, 1))
    return out
