"""Overlays: skeletons, keypoints and person boxes drawn on the image, and heatmap overlays.

All functions take and return RGB uint8 images (the pipeline's colour order); only
:func:`write_image` converts to BGR, because that is what ``cv2.imwrite`` expects.
Line widths scale with the image so overlays read the same on a thumbnail and on 4K.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np

from frpose_cli.fileio import apply_umask, atomic_write_binary
from frpose_cli.data.keypoints import KeypointSpec

# RGB colours by body side, like most pose viewers: left orange, right blue, centre green.
LEFT_COLOR = (255, 128, 0)
RIGHT_COLOR = (0, 160, 255)
CENTER_COLOR = (0, 220, 0)
BOX_COLOR = (255, 0, 255)


def side_color(spec: KeypointSpec, k: int) -> tuple[int, int, int]:
    """Keypoint ``k``'s colour by its side (its name's side word, else its place in a flip pair)."""
    return {"left": LEFT_COLOR, "right": RIGHT_COLOR}.get(spec.side(k), CENTER_COLOR)


def limb_color(spec: KeypointSpec, a: int, b: int) -> tuple[int, int, int]:
    """A limb takes its side's colour when both ends are on that side, else the centre colour."""
    ca, cb = side_color(spec, a), side_color(spec, b)
    return ca if ca == cb else CENTER_COLOR


UNTRACKED_COLOR = (160, 160, 160)


def track_color(track_id: int) -> tuple[int, int, int]:
    """A track's own colour (RGB): hues a golden-ratio turn apart, so neighbouring ids differ most;
    grey for an untracked person (-1)."""
    if track_id < 0:
        return UNTRACKED_COLOR
    hue = int((track_id * 0.618033988749895 % 1.0) * 180)      # OpenCV's hue range is 0..179
    bgr = cv2.cvtColor(np.uint8([[[hue, 220, 255]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[2]), int(bgr[1]), int(bgr[0])


def line_width(image: np.ndarray) -> int:
    h, w = image.shape[:2]
    return max(1, round((h + w) / 2 * 0.004))


def draw_poses(image_rgb: np.ndarray, keypoints: np.ndarray, spec: KeypointSpec,
               boxes: np.ndarray | None = None, kpt_thr: float = 0.3,
               thickness: int | None = None, radius: int | None = None,
               draw_boxes: bool = True, track_ids=None) -> np.ndarray:
    """Draw persons on a copy of ``image_rgb``.

    ``keypoints``: (P, K, 3) x, y, score in image pixels; a keypoint is drawn when its score
    is at least ``kpt_thr`` and a limb when both of its ends are.  ``boxes``: (P, ≥4) x, y, w, h
    (a 5th column, the box score, is printed above the box).  ``track_ids`` (P,): each person's box,
    label (``#id``) and limbs in its track's colour (:func:`track_color`); keypoints keep their side's.
    """
    canvas = np.ascontiguousarray(image_rgb.copy())
    t = thickness or line_width(canvas)
    r = radius or max(2, t + 1)
    keypoints = np.asarray(keypoints, np.float32).reshape(-1, spec.num_keypoints, 3)
    colors = None if track_ids is None else [track_color(int(i)) for i in np.asarray(track_ids).reshape(-1)]
    if draw_boxes and boxes is not None:
        boxes = np.asarray(boxes, np.float32)
        for p, box in enumerate(boxes.reshape(len(boxes), -1) if boxes.size else ()):
            x, y, w, h = (float(v) for v in box[:4])
            p1, p2 = (round(x), round(y)), (round(x + w), round(y + h))
            color = BOX_COLOR if colors is None else colors[p]
            cv2.rectangle(canvas, p1, p2, color, max(1, t // 2) if colors is None else t, cv2.LINE_AA)
            label = "" if colors is None else (f"#{int(track_ids[p])}" if track_ids[p] >= 0 else "#-")
            if len(box) > 4:
                label = f"{label} {box[4]:.2f}".strip()
            if label:
                cv2.putText(canvas, label, (p1[0] + 2, max(p1[1] - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX,
                            max(0.35, t * 0.2) * (1 if colors is None else 1.5), color, max(1, t // 2), cv2.LINE_AA)
    for p, person in enumerate(keypoints):
        visible = person[:, 2] >= kpt_thr
        for a, b in spec.skeleton:
            if visible[a] and visible[b]:
                pa = (round(float(person[a, 0])), round(float(person[a, 1])))
                pb = (round(float(person[b, 0])), round(float(person[b, 1])))
                cv2.line(canvas, pa, pb, limb_color(spec, a, b) if colors is None else colors[p], t, cv2.LINE_AA)
        for k in np.flatnonzero(visible):
            centre = (round(float(person[k, 0])), round(float(person[k, 1])))
            cv2.circle(canvas, centre, r, side_color(spec, k), -1, cv2.LINE_AA)
            cv2.circle(canvas, centre, r, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


def heatmap_to_image(heatmaps: np.ndarray, inv_matrices, image_hw) -> np.ndarray:
    """Max over persons and keypoints of heatmaps warped back to the image (H×W float 0..1).

    ``heatmaps``: (P, K, Hh, Wh); ``inv_matrices``: one 2×3 heatmap→image affine per person.
    """
    h, w = image_hw
    out = np.zeros((h, w), np.float32)
    for hm, m in zip(heatmaps, inv_matrices):
        peak = np.clip(np.asarray(hm, np.float32).max(0), 0, 1)
        warped = cv2.warpAffine(peak, np.asarray(m, np.float64), (w, h), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        np.maximum(out, warped, out=out)
    return out


def overlay_heatmap(image_rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a 0..1 heat image (JET colour map) onto the picture where the heat is."""
    heat = np.clip(heat, 0, 1)
    colored = cv2.cvtColor(cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    weight = (alpha * heat)[..., None]
    return (image_rgb.astype(np.float32) * (1 - weight) + colored.astype(np.float32) * weight).astype(np.uint8)


def write_image(path, image_rgb: np.ndarray, quality: int = 90) -> Path:
    """Write an RGB image (JPEG/PNG by suffix) atomically; raises OSError when it cannot be written."""
    path = Path(path)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if path.suffix.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(path.suffix or ".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise OSError(f"could not encode {path.name}")
    data = buf.tobytes()
    return atomic_write_binary(path, lambda f: f.write(data))


class VideoOverlayWriter:
    """Overlay video (mp4v); opened lazily on the first frame so it knows the frame size.  Frames go
    to a temp file beside ``path``, renamed over it on :meth:`close`: an interrupted run leaves the
    previous overlay video whole (a resumed run rewrites the video from the start)."""

    def __init__(self, path, fps: float):
        fps = float(fps or 0.0)
        # a header's absurd rate (0, NaN, inf, 10⁹: damaged or synthetic files) would make OpenCV's writer fail
        fps = fps if math.isfinite(fps) and 0 < fps <= 1000 else 25.0
        self.path, self.fps, self.writer, self.frames = Path(path), fps, None, 0
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")

    def write(self, frame_rgb: np.ndarray) -> None:
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            h, w = frame_rgb.shape[:2]
            try:
                self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            except cv2.error as e:   # OpenCV raises its own type for what it cannot open
                self.writer = None
                raise OSError(f"cannot write video {self.path.name}: {str(e).strip().splitlines()[-1][:120]}") from None
            if not self.writer.isOpened():
                self.writer = None
                raise OSError(f"cannot write video {self.path.name}")
        self.writer.write(cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
            with open(self.tmp, "rb+") as f:   # on disk before it replaces the previous video
                os.fsync(f.fileno())
            apply_umask(self.tmp)
            os.replace(self.tmp, self.path)
