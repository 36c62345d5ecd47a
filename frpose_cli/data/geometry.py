"""Top-down crop geometry: person box → centre/scale → affine crop, and back.

Pixel convention (used everywhere in frpose)
-------------------------------------------
A pixel's *centre* has integer coordinates: pixel ``(i, j)`` (column, row) covers
``[i-0.5, i+0.5] × [j-0.5, j+0.5]``, so an image ``W`` pixels wide spans
``x ∈ [-0.5, W-0.5]`` and its centre column is ``(W-1)/2``.  This is OpenCV's
``warpAffine`` convention and the one COCO keypoints are read in (as by Simple
Baselines and mmpose).  Points are ``(x, y)``; sizes are ``(w, h)`` unless a name
says ``hw``; ``scale`` is the ``(w, h)`` of the crop region in image pixels (no
200-pixel unit as in Simple Baselines).

Two crop transforms
-------------------
* ``udp=False`` (Simple Baselines): the region's centre goes to ``(W/2, H/2)`` and
  its size to ``(W, H)``.  Half a pixel off the true centre ``((W-1)/2, (H-1)/2)``,
  but consistent, since encoding and decoding use the same matrix.
* ``udp=True`` (Unbiased Data Processing, Huang et al. 2020): the centre goes to
  ``((W-1)/2, (H-1)/2)`` and the size to ``(W-1, H-1)`` pixel *intervals*, so
  a horizontal flip of the crop is the exact mirror of the image.

Rotation: positive ``rot_deg`` turns the image content counter-clockwise in the crop
(as ``cv2.getRotationMatrix2D`` with a positive angle).
"""
from __future__ import annotations

import math
from collections import Counter

import cv2
import numpy as np


def box_to_center_scale(box_xywh, aspect_ratio: float, padding: float = 1.25):
    """COCO box ``(x, y, w, h)`` → ``(center, scale)`` at ``aspect_ratio`` = input w / h.

    The shorter side is extended to the aspect ratio (the box is never cut), then both
    sides are multiplied by ``padding`` (1.25 as in Simple Baselines).
    """
    x, y, w, h = (float(v) for v in box_xywh[:4])
    center = np.array([x + 0.5 * w, y + 0.5 * h], dtype=np.float32)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    scale = np.array([w * padding, h * padding], dtype=np.float32)
    return center, scale


def warp_matrix(center, scale, rot_deg: float, output_wh, inv: bool = False, udp: bool = False) -> np.ndarray:
    """2×3 affine matrix mapping image → crop (``inv=True``: crop → image).

    ``output_wh`` is the crop size ``(W, H)`` in pixels; see the module docstring for
    the ``udp`` flag.
    """
    cx, cy = float(center[0]), float(center[1])
    sw, sh = float(scale[0]), float(scale[1])
    out_w, out_h = float(output_wh[0]), float(output_wh[1])
    if udp:
        sx, sy = (out_w - 1.0) / sw, (out_h - 1.0) / sh
        tx, ty = (out_w - 1.0) / 2.0, (out_h - 1.0) / 2.0
    else:
        sx, sy = out_w / sw, out_h / sh
        tx, ty = out_w / 2.0, out_h / 2.0
    a = math.radians(float(rot_deg))
    c, s = math.cos(a), math.sin(a)
    # crop = S · R · (p - center) + t, with R the counter-clockwise rotation of the content.
    m = np.array([[sx * c, sx * s, 0.0], [-sy * s, sy * c, 0.0]], dtype=np.float64)
    m[:, 2] = np.array([tx, ty]) - m[:, :2] @ np.array([cx, cy])
    if inv:
        m = cv2.invertAffineTransform(m)
    return m


def transform_points(points, M) -> np.ndarray:
    """Apply a 2×3 affine matrix to points of shape ``(..., 2)``."""
    pts = np.asarray(points, dtype=np.float64)
    M = np.asarray(M, dtype=np.float64)
    out = pts @ M[:, :2].T + M[:, 2]
    return out.astype(np.float32) if np.asarray(points).dtype == np.float32 else out


def crop_image(image: np.ndarray, center, scale, rot_deg: float, output_wh, udp: bool = False) -> np.ndarray:
    """Affine crop of ``image`` to ``output_wh`` (bilinear, black outside the image)."""
    M = warp_matrix(center, scale, rot_deg, output_wh, udp=udp)
    return cv2.warpAffine(image, M, (int(output_wh[0]), int(output_wh[1])), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def flip_points_in_crop(points, width: int) -> np.ndarray:
    """Mirror x of crop points for a horizontally flipped crop of ``width`` pixels."""
    out = np.array(points, dtype=np.float32, copy=True)
    out[..., 0] = (width - 1) - out[..., 0]
    return out


def clip_boxes(boxes: np.ndarray, width: int, height: int, min_size: float = 1.0,
               dropped: Counter | None = None) -> np.ndarray:
    """Clip x,y,w,h boxes to the image and drop unusable ones, counting each in ``dropped`` by
    reason: non-finite values, zero or negative size, entirely outside the image, or under
    ``min_size`` px once clipped."""
    if len(boxes) == 0:
        return np.zeros((0, 5), np.float32)
    boxes = np.asarray(boxes, np.float64)
    finite = np.isfinite(boxes[:, :5]).all(1)
    safe = np.where(finite[:, None], boxes[:, :5], 0.0)
    positive = (safe[:, 2] > 0) & (safe[:, 3] > 0)
    x1 = np.clip(safe[:, 0], 0, width)
    y1 = np.clip(safe[:, 1], 0, height)
    with np.errstate(over="ignore"):   # x + w of a huge finite box is inf: clipped to the image below
        x2 = np.clip(safe[:, 0] + safe[:, 2], 0, width)
        y2 = np.clip(safe[:, 1] + safe[:, 3], 0, height)
    inside = (x2 > x1) & (y2 > y1)
    big = ((x2 - x1) >= min_size) & ((y2 - y1) >= min_size)
    if dropped is not None:
        dropped["non-finite values (NaN or inf)"] += int((~finite).sum())
        dropped["zero or negative width/height"] += int((finite & ~positive).sum())
        dropped["outside the image"] += int((finite & positive & ~inside).sum())
        dropped[f"under {min_size:g} px once clipped to the image"] += int((finite & positive & inside & ~big).sum())
        for reason in [r for r, n in dropped.items() if n == 0]:
            del dropped[reason]
    out = np.stack([x1, y1, x2 - x1, y2 - y1, safe[:, 4]], 1).astype(np.float32)
    return out[finite & positive & inside & big]


LOW_SCORE = "score under --det-thr"   # the reason images.json and Results.dropped count such boxes by


def drop_low_scores(boxes: np.ndarray, score_thr: float, dropped: Counter | None = None) -> np.ndarray:
    """The boxes scored ``score_thr`` or more (``--det-thr``), the others counted in ``dropped``: the one
    score filter of box files and of ``PosePredictor.predict``.  A NaN score is kept here: :func:`clip_boxes`
    drops it as a non-finite value, so each box is counted under one reason."""
    boxes = np.asarray(boxes)
    if len(boxes) == 0:
        return boxes.reshape(0, 5)
    low = np.isfinite(boxes[:, 4]) & (boxes[:, 4] < score_thr)
    if dropped is not None and low.any():   # no zero counts: images.json lists only reasons that happened
        dropped[LOW_SCORE] += int(low.sum())
    return boxes[~low]
