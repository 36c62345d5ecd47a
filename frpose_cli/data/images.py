"""Image decoding, one policy for every verb (train, eval, predict, calibration):

* **EXIF orientation is ignored**: pixels are used as stored, as COCO's annotations, the original
  Simple Baselines loader (``IMREAD_IGNORE_ORIENTATION``) and mmpose do, so the same JPEG gives the
  same crop in ``train``, ``eval`` and ``predict``, and keypoints refer to the stored pixel grid.
  A phone photo stored sideways is processed (and drawn) sideways.
* Any depth and channel layout becomes 8-bit RGB (gray, gray+alpha, BGRA, 16-bit, float).
* Damage is never silent.  A JPEG or PNG cut off before its end is a failed image (libjpeg would
  fill the missing rows with grey and only print a line).  libjpeg's other complaints ("Corrupt
  JPEG data: N extraneous bytes before marker", "premature end of data segment") are captured
  from its stderr line and returned as a *warning*: the image is used, and callers report it.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pbm", ".pgm",
              ".ppm", ".pnm", ".dib", ".jpe", ".sr", ".ras", ".exr", ".hdr", ".pic"}
_DECODE_FLAGS = cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION
_LIBJPEG_LINE = re.compile(r"(Corrupt JPEG data[^\n]*|Premature end of JPEG file|Invalid [^\n]*|"
                           r"Warning: [^\n]*|Unsupported [^\n]*)")


class ImageReadError(Exception):
    """One file could not be turned into an image (the message says why, in a few words)."""


def to_rgb8(decoded: np.ndarray) -> np.ndarray:
    """OpenCV's IMREAD_UNCHANGED result (gray / gray+alpha / BGR / BGRA; 8/16-bit or float) → uint8 RGB."""
    img = decoded
    if img.dtype == np.uint8:
        pass
    elif img.dtype == np.uint16:
        img = (img.astype(np.uint32) * 255 + 32767) // 65535   # full 16-bit range → 0..255
        img = img.astype(np.uint8)
    elif img.dtype in (np.float32, np.float64, np.float16):
        f = np.nan_to_num(img.astype(np.float32))
        if f.size and float(f.max()) > 1.0:   # HDR/float TIFFs in 0..255 rather than 0..1
            f = f / 255.0
        img = np.clip(f * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif img.dtype in (np.int8, np.int16, np.int32):
        info = np.iinfo(img.dtype)
        img = (np.clip(img.astype(np.float64), 0, info.max) * (255.0 / info.max)).astype(np.uint8)
    else:
        raise ImageReadError(f"unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.ndim != 3:
        raise ImageReadError(f"unsupported image shape {decoded.shape}")
    channels = img.shape[2]
    if channels == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 2:    # gray + alpha: the alpha channel is not part of the picture
        return cv2.cvtColor(np.ascontiguousarray(img[:, :, 0]), cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    raise ImageReadError(f"unsupported number of channels ({channels})")


def _check_complete(data: bytes) -> None:
    """libjpeg only *warns* about a cut-off JPEG and returns grey rows; catch truncation here."""
    if data[:3] == b"\xff\xd8\xff":
        # The last end-of-image marker must come after the last start-of-scan marker
        # (an EXIF thumbnail's EOI comes before the main image's scans).
        if data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda"):
            raise ImageReadError("truncated JPEG (no end-of-image marker after the image data)")
    elif data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in data[-64:]:
        raise ImageReadError("truncated PNG (no IEND chunk)")


@contextmanager
def _stderr_lines(out: list):
    """Collect what C libraries write to file descriptor 2 meanwhile (libjpeg's warnings)."""
    try:
        saved = os.dup(2)
    except OSError:   # no usable fd 2: nothing to capture
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        sys.stderr.flush()
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.extend(tmp.read().decode("utf-8", "replace").splitlines())


def decode_image_bytes(data: bytes) -> tuple[np.ndarray, str | None]:
    """Encoded bytes → (H×W×3 uint8 RGB, warning or None); :class:`ImageReadError` when unusable."""
    if not data:
        raise ImageReadError("empty file")
    _check_complete(data)
    buf = np.frombuffer(data, np.uint8)
    if data[:3] == b"\xff\xd8\xff":
        lines: list = []
        with _stderr_lines(lines):
            decoded = cv2.imdecode(buf, _DECODE_FLAGS)
        found = [m.group(1).strip() for line in lines if (m := _LIBJPEG_LINE.search(line))]
        warning = "damaged JPEG data, decoded anyway (libjpeg: " + "; ".join(found)[:160] + ")" if found else None
    else:
        decoded, warning = cv2.imdecode(buf, _DECODE_FLAGS), None
    if decoded is None or decoded.size == 0:
        raise ImageReadError("not an image OpenCV can decode (corrupt or another file type)")
    return to_rgb8(decoded), warning


def read_image(path) -> tuple[np.ndarray, str | None]:
    """Read one image file: (H×W×3 uint8 RGB, warning or None), or raise :class:`ImageReadError`."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ImageReadError(f"unreadable ({e.strerror or type(e).__name__})") from None
    return decode_image_bytes(data)
