"""Where `frpose predict` gets its pictures: one image, a folder, a glob, a video or a list file.

Everything streams: folders are walked one directory at a time and images are decoded one
at a time, so a folder of 100,000 images never sits in memory (only the current folder's
file *names* do).  A file that cannot be read becomes a :class:`SourceItem` with an
``error`` instead of an exception, so the caller can report it and carry on.

Images are decoded with ``cv2.imdecode(IMREAD_UNCHANGED)`` and converted to 8-bit RGB
(gray, gray+alpha, BGRA, 16-bit and float images all work).  OpenCV hands back BGR; the
models take RGB, so the channel swap happens here and only here.
"""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .errors import FrposeError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pbm", ".pgm",
              ".ppm", ".pnm", ".dib", ".jpe", ".sr", ".ras", ".exr", ".hdr", ".pic"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".gif"}
LIST_EXTS = {".txt", ".lst"}
_GLOB_CHARS = re.compile(r"[*?\[]")


class ImageReadError(Exception):
    """One file could not be turned into an image (the message says why, in a few words)."""


@dataclass
class SourceItem:
    """One picture to run on: an image file or one video frame, or a file that failed to read."""
    index: int                   # position in the stream (stable across runs of the same source)
    path: Path                   # file on disk
    file_name: str               # name written to predictions.json: path relative to the source root
    frame: int | None = None     # frame number for video frames
    image: np.ndarray | None = None  # H×W×3 uint8 RGB
    error: str | None = None     # why this file was skipped
    fps: float | None = None     # video frame rate (for the overlay video)
    frame_count: int | None = None

    @property
    def key(self) -> tuple[str, int | None]:
        return (self.file_name, self.frame)


def natural_key(text: str):
    """Sort key that orders ``img2`` before ``img10`` (case-insensitive, digits as numbers)."""
    return [(0, int(tok), "") if tok.isdigit() else (1, 0, tok.lower())
            for tok in re.split(r"(\d+)", str(text)) if tok]


# ----------------------------------------------------------------------------- decoding

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
    elif img.dtype == np.int8 or img.dtype == np.int16 or img.dtype == np.int32:
        info = np.iinfo(img.dtype)
        img = np.clip(img.astype(np.float64), 0, info.max) * (255.0 / info.max)
        img = img.astype(np.uint8)
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


def decode_image_bytes(data: bytes) -> np.ndarray:
    if not data:
        raise ImageReadError("empty file")
    _check_complete(data)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.size == 0:
        raise ImageReadError("not an image OpenCV can decode (corrupt or another file type)")
    return to_rgb8(decoded)


def read_image(path) -> np.ndarray:
    """Read one image file as H×W×3 uint8 RGB, or raise :class:`ImageReadError`."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ImageReadError(f"unreadable ({e.strerror or type(e).__name__})") from None
    return decode_image_bytes(data)


# ----------------------------------------------------------------------------- enumeration

def _walk_files(root: Path) -> Iterator[Path]:
    """Files under ``root`` in natural order, directory by directory (hidden entries skipped)."""
    try:
        entries = sorted(os.scandir(root), key=lambda e: natural_key(e.name))
    except OSError:
        return
    subdirs = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            if entry.is_dir():
                subdirs.append(Path(entry.path))
            elif entry.is_file():
                yield Path(entry.path)
        except OSError:
            continue
    for sub in subdirs:
        yield from _walk_files(sub)


def _list_file_paths(list_file: Path) -> Iterator[Path]:
    """Paths from a text file, one a line (``#`` comments and blank lines ignored); relative
    paths are taken relative to the current folder, else to the list file's folder."""
    try:
        with open(list_file, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                p = Path(line).expanduser()
                if not p.is_absolute() and not p.exists() and (list_file.parent / p).exists():
                    p = list_file.parent / p
                yield p
    except UnicodeDecodeError:
        raise FrposeError(f"{list_file}: a list file must be UTF-8 text with one path per line") from None


def _glob_root(pattern: str) -> Path:
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if _GLOB_CHARS.search(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _rel_name(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    return path.name if root is not None else path.as_posix()


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTS


class Source:
    """A user's ``SOURCE`` argument, resolved; iterate to get :class:`SourceItem` one at a time."""

    def __init__(self, spec: str, vid_stride: int = 1):
        if vid_stride < 1:
            raise FrposeError(f"--vid-stride must be at least 1 (got {vid_stride})")
        self.spec, self.vid_stride = str(spec), vid_stride
        path = Path(self.spec).expanduser()
        if path.is_dir():
            self.kind, self.root = "folder", path
        elif path.is_file() and path.suffix.lower() in LIST_EXTS:
            self.kind, self.root = "list", None
        elif path.is_file():
            self.kind, self.root = ("video" if is_video(path) else "image"), path.parent
        elif _GLOB_CHARS.search(self.spec):
            self.kind, self.root = "glob", _glob_root(self.spec)
        else:
            raise FrposeError(f"source not found: {self.spec} (give an image, a folder, a glob "
                              "such as 'imgs/*.jpg', a video or a .txt file listing paths)")
        self.path = path

    def paths(self) -> Iterator[Path]:
        if self.kind == "folder":
            return _walk_files(self.path)
        if self.kind == "list":
            return _list_file_paths(self.path)
        if self.kind == "glob":
            found = [Path(p) for p in glob.iglob(self.spec, recursive=True) if Path(p).is_file()]
            return iter(sorted(found, key=lambda p: natural_key(p.as_posix())))
        return iter([self.path])

    def __iter__(self) -> Iterator[SourceItem]:
        index = 0
        for path in self.paths():
            name = _rel_name(path, self.root)
            if not path.is_file():
                yield SourceItem(index, path, name, error="no such file")
                index += 1
            elif is_video(path):
                for item in iter_video(path, name, index, self.vid_stride):
                    yield item
                    index += 1
            else:
                try:
                    image, error = read_image(path), None
                except ImageReadError as e:
                    image, error = None, str(e)
                yield SourceItem(index, path, name, image=image, error=error)
                index += 1
        if index == 0:
            raise FrposeError(f"no files found in source {self.spec}")


def iter_video(path: Path, name: str, start_index: int, stride: int = 1) -> Iterator[SourceItem]:
    """Every ``stride``-th frame of a video as RGB; one error item if it cannot be opened."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            yield SourceItem(start_index, path, name, error="not a video OpenCV can open")
            return
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) or 25.0
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) or None
        frame_no, yielded = 0, 0
        while True:
            if frame_no % stride == 0:
                ok, frame = cap.read()
                if not ok:
                    break
                yield SourceItem(start_index + yielded, path, name, frame=frame_no, image=to_rgb8(frame),
                                 fps=fps / stride, frame_count=count)
                yielded += 1
            elif not cap.grab():  # skip a frame without decoding it
                break
            frame_no += 1
        if yielded == 0:
            yield SourceItem(start_index, path, name, error="video has no readable frames")
    finally:
        cap.release()
