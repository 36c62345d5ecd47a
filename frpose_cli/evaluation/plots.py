"""Every PNG frpose draws, with OpenCV (no plotting library): the training curve, the stacked
precision-recall curves of the error diagnosis and its per-keypoint error bars.

Figures are numpy BGR images on a white canvas; :func:`save_png` writes them atomically.
OpenCV is already needed for images and its Hershey fonts are plain but legible, so a
plotting library would add a large dependency for three figures (docs/evaluation.md).
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from frpose_cli.fileio import atomic_write_binary

FONT = cv2.FONT_HERSHEY_SIMPLEX
BLACK, GRID = (0, 0, 0), (225, 225, 225)


def hex_bgr(code: str) -> tuple[int, int, int]:
    code = code.lstrip("#")
    r, g, b = (int(code[i:i + 2], 16) for i in (0, 2, 4))
    return b, g, r


def text(img, s: str, org, scale: float = 0.45, color=BLACK, thickness: int = 1) -> None:
    cv2.putText(img, s, (int(org[0]), int(org[1])), FONT, scale, color, thickness, cv2.LINE_AA)


def save_png(path, img: np.ndarray) -> Path:
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise OSError(f"PNG encoding failed for {path}")
    return atomic_write_binary(path, lambda f: f.write(buf.tobytes()))


class Axes:
    """A plot area inside ``img``: data (x, y) ↔ pixels, for linear or log10 y."""

    def __init__(self, img, rect, xlim, ylim, log_y: bool = False):
        self.img, (self.left, self.top, self.width, self.height) = img, rect
        self.xlim, self.ylim, self.log_y = xlim, ylim, log_y

    def px(self, x, y):
        (x0, x1), (y0, y1) = self.xlim, self.ylim
        y = math.log10(y) if self.log_y else y
        return (int(round(self.left + (x - x0) / (x1 - x0) * self.width)),
                int(round(self.top + self.height - (y - y0) / (y1 - y0) * self.height)))

    def frame(self, xticks, yticks, xlabel: str = "", ylabel: str = "", fmt: str = "{:.3g}",
              yfmt: str | None = None) -> None:
        for v in yticks:
            _, py = self.px(self.xlim[0], 10 ** v if self.log_y else v)
            cv2.line(self.img, (self.left, py), (self.left + self.width, py), GRID, 1)
            text(self.img, (yfmt or fmt).format(10 ** v if self.log_y else v), (self.left - 42, py + 4), 0.4)
        for v in xticks:
            px, _ = self.px(v, 10 ** self.ylim[0] if self.log_y else self.ylim[0])
            cv2.line(self.img, (px, self.top), (px, self.top + self.height), GRID, 1)
            text(self.img, fmt.format(v), (px - 10, self.top + self.height + 16), 0.4)
        cv2.rectangle(self.img, (self.left, self.top), (self.left + self.width, self.top + self.height), BLACK, 1)
        text(self.img, xlabel, (self.left + self.width // 2 - 4 * len(xlabel), self.top + self.height + 36), 0.45)
        text(self.img, ylabel, (self.left - 42, self.top - 10), 0.45)


def line_plot(series: dict, xlabel: str, ylabel: str, size=(900, 520)) -> np.ndarray:
    """Lines ``{label: ([(x, y), ...], bgr)}`` with a log10 y axis (the training curve)."""
    w, h = size
    img = np.full((h, w, 3), 255, np.uint8)
    pts = [(x, y) for data, _ in series.values() for x, y in data if y and y > 0 and math.isfinite(y)]
    if not pts:
        Axes(img, (90, 30, w - 120, h - 90), (0, 1), (0, 1)).frame([], [], xlabel, ylabel)
        return img
    xs, ly = [p[0] for p in pts], [math.log10(p[1]) for p in pts]
    x0 = min(0.0, min(xs))
    x1 = max(xs) if max(xs) > x0 else x0 + 1
    y0, y1 = math.floor(min(ly) * 4) / 4, math.ceil(max(ly) * 4) / 4
    ax = Axes(img, (90, 30, w - 120, h - 90), (x0, x1), (y0, y1 if y1 > y0 else y0 + 0.25), log_y=True)
    ax.frame([x0 + (x1 - x0) * i / 5 for i in range(6)], [ax.ylim[0] + (ax.ylim[1] - ax.ylim[0]) * i / 4
                                                          for i in range(5)], xlabel, ylabel, yfmt="{:.2g}")
    for n, (label, (data, color)) in enumerate(series.items()):
        good = [ax.px(x, y) for x, y in data if y and y > 0 and math.isfinite(y)]
        if len(good) > 1:
            cv2.polylines(img, [np.array(good, np.int32)], False, color, 2, cv2.LINE_AA)
        for p in good if len(good) < 60 else []:
            cv2.circle(img, p, 3, color, -1, cv2.LINE_AA)
        text(img, label, (w - 180, 50 + 20 * n), 0.5, color)
    return img


def stacked_pr_panel(img, rect, recall, layers, title: str) -> None:
    """PR curves stacked as in Ronchi & Perona's figure: the region each step adds is filled
    with its colour; ``layers`` is ``[(label, precision (R,), ap, bgr), ...]`` in order."""
    ax = Axes(img, rect, (0.0, 1.0), (0.0, 1.0))
    recall = np.asarray(recall, np.float64)
    below = np.zeros_like(recall)
    for _, prec, _, color in layers:
        p = np.maximum(np.asarray(prec, np.float64), below)   # -1 (no data) and dips draw as nothing added
        poly = [ax.px(x, y) for x, y in zip(recall, p)] + [ax.px(x, y) for x, y in zip(recall[::-1], below[::-1])]
        cv2.fillPoly(img, [np.array(poly, np.int32)], color, cv2.LINE_AA)
        below = p
    for _, prec, _, _ in layers:
        p = np.asarray(prec, np.float64)
        ok = p >= 0
        if ok.sum() > 1:
            cv2.polylines(img, [np.array([ax.px(x, y) for x, y in zip(recall[ok], p[ok])], np.int32)],
                          False, BLACK, 1, cv2.LINE_AA)
    ax.frame([0, 0.5, 1], [0, 0.5, 1], "recall", "precision", "{:.1f}")
    text(img, title, (rect[0], rect[1] - 28), 0.5)
    left, y = rect[0] + rect[2] + 12, rect[1] + 8
    for label, _, ap, color in reversed(layers):        # top of the stack first, as in the figure
        cv2.rectangle(img, (left, y), (left + 14, y + 12), color, -1)
        cv2.rectangle(img, (left, y), (left + 14, y + 12), BLACK, 1)
        text(img, f"{label} {ap:.3f}", (left + 20, y + 11), 0.42)
        y += 20


def grid_figure(panels, cols: int, cell=(560, 330), draw=None) -> np.ndarray:
    """A white image of ``len(panels)`` cells, ``cols`` a row; ``draw(img, rect, panel)`` fills each."""
    rows = max(1, math.ceil(len(panels) / cols))
    img = np.full((rows * cell[1], cols * cell[0], 3), 255, np.uint8)
    for i, panel in enumerate(panels):
        r, c = divmod(i, cols)
        rect = (c * cell[0] + 60, r * cell[1] + 50, cell[1] - 100, cell[1] - 100)
        draw(img, rect, panel)
    return img


def stacked_bars(rows, segments, colors, title: str, width: int = 900) -> np.ndarray:
    """Horizontal 100 % bars: ``rows`` is ``[(label, [share per segment, ...]), ...]``."""
    bar, gap, left, top = 16, 6, 170, 60
    h = top + len(rows) * (bar + gap) + 50
    img = np.full((h, width, 3), 255, np.uint8)
    span = width - left - 30
    text(img, title, (left, 24), 0.5)
    x = left
    for name, color in zip(segments, colors):          # legend
        cv2.rectangle(img, (x, 34), (x + 14, 46), color, -1)
        text(img, name, (x + 18, 45), 0.42)
        x += 30 + 9 * len(name)
    for i, (label, shares) in enumerate(rows):
        y = top + i * (bar + gap)
        text(img, label, (8, y + bar - 3), 0.42)
        x = float(left)
        for share, color in zip(shares, colors):
            x1 = x + span * max(float(share), 0.0)
            cv2.rectangle(img, (int(round(x)), y), (int(round(x1)), y + bar), color, -1)
            x = x1
        cv2.rectangle(img, (left, y), (left + span, y + bar), BLACK, 1)
    for v in (0, 0.25, 0.5, 0.75, 1.0):
        px = int(left + span * v)
        text(img, f"{int(v * 100)}%", (px - 12, h - 22), 0.4)
    return img
