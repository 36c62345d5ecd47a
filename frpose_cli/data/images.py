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
* **A pixel budget**: an image whose header declares more than :data:`DEFAULT_MAX_PIXELS` pixels
  (150 megapixels, about 450 MB as RGB; ``--max-pixels`` / ``FRPOSE_MAX_PIXELS`` change it) is a
  failed image, found from the header before anything is decoded: a 130 kB JPEG claiming
  20000×20000 would otherwise cost gigabytes and tens of seconds first.  The header is read by
  Pillow (a torchvision dependency), which knows every common format's header without decoding.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pbm", ".pgm",
              ".ppm", ".pnm", ".dib", ".jpe", ".sr", ".ras", ".exr", ".hdr", ".pic"}
_DECODE_FLAGS = cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION
_LIBJPEG_LINE = re.compile(r"(Corrupt JPEG data[^\n]*|Premature end of JPEG file|Invalid [^\n]*|"
                           r"Warning: [^\n]*|Unsupported [^\n]*)")


DEFAULT_MAX_PIXELS = 150_000_000
_PIL_LIMIT = threading.Lock()   # Pillow's limit is a module global, lifted for one header read
_max_pixels: int | None = None


def set_max_pixels(value: int | None) -> None:
    """``--max-pixels``: the largest image (width × height) decoded in this process (None: the default)."""
    global _max_pixels
    if value is not None and value < 1:
        raise ValueError("max pixels must be positive")
    _max_pixels = value


def max_pixels() -> int:
    if _max_pixels is not None:
        return _max_pixels
    from frpose_cli.settings import settings
    return settings().max_pixels or DEFAULT_MAX_PIXELS


def declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) an encoded image's header declares, without decoding it (None: unknown)."""
    import io
    import warnings
    try:
        from PIL import Image
        with _PIL_LIMIT, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None   # Pillow's own bomb check: we decide
            try:
                with Image.open(io.BytesIO(data)) as im:
                    return int(im.size[0]), int(im.size[1])
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except Exception:   # not a format Pillow knows (EXR, HDR, …) or a damaged header: OpenCV decides
        return None


def _check_budget(data: bytes) -> None:
    size = declared_size(data)
    if size is not None and size[0] * size[1] > max_pixels():
        raise ImageReadError(f"its header declares {size[0]}×{size[1]} pixels, over the budget of "
                             f"{max_pixels() / 1e6:g} megapixels (not decoded; --max-pixels raises it)")


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
    _check_budget(data)
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
