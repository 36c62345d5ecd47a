"""Where `frpose predict` gets its pictures: one image, a folder, a glob, a video or a list file.

Everything streams: folders are walked one directory at a time and images are decoded one
at a time, so a folder of 100,000 images never sits in memory (only the current folder's
file *names* do).  A file that cannot be read becomes a :class:`SourceItem` with an
``error`` instead of an exception, so the caller can report it and carry on.

Images are decoded by :mod:`frpose_cli.images` (8-bit RGB, EXIF orientation ignored, damage
reported).  Folder and glob scans take files with image and video extensions; anything else
found there is listed as *ignored* (a ``notes.txt`` beside the photos is not a failure).  A
file named explicitly (the source itself, a list file's line) is always tried.
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
from .images import IMAGE_EXTS, ImageReadError, read_image, to_rgb8

VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".gif"}
LIST_EXTS = {".txt", ".lst"}
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass
class SourceItem:
    """One picture to run on: an image file or one video frame, or a file that failed to read."""
    index: int                   # position in the stream (stable across runs of the same source)
    path: Path                   # file on disk
    file_name: str               # name written to predictions.json: path relative to the source root
    frame: int | None = None     # frame number for video frames
    image: np.ndarray | None = None  # H×W×3 uint8 RGB
    error: str | None = None     # why this file was skipped
    warning: str | None = None   # processed, but damaged (or, without image, a note on the file)
    ignored: str | None = None   # found by a scan but not a picture: listed, not processed
    fps: float | None = None     # video frame rate (for the overlay video)
    frame_count: int | None = None

    @property
    def key(self) -> tuple[str, int | None]:
        return (self.file_name, self.frame)


def natural_key(text: str):
    """Sort key that orders ``img2`` before ``img10`` (case-insensitive, digits as numbers)."""
    return [(0, int(tok), "") if tok.isdigit() else (1, 0, tok.lower())
            for tok in re.split(r"(\d+)", str(text)) if tok]


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
        index, ignored = 0, 0
        scanned = self.kind in ("folder", "glob")
        for path in self.paths():
            name = _rel_name(path, self.root)
            suffix = path.suffix.lower()
            if scanned and suffix not in IMAGE_EXTS and suffix not in VIDEO_EXTS:
                ignored += 1
                yield SourceItem(index, path, name, ignored="not an image or video file (by its extension)")
            elif not path.is_file():
                yield SourceItem(index, path, name, error="no such file")
                index += 1
            elif is_video(path):
                for item in iter_video(path, name, index, self.vid_stride):
                    yield item
                    index += item.image is not None or item.error is not None
            else:
                try:
                    (image, warning), error = read_image(path), None
                except ImageReadError as e:
                    image, warning, error = None, None, str(e)
                yield SourceItem(index, path, name, image=image, error=error, warning=warning)
                index += 1
        if index == 0:
            raise FrposeError(f"no images or videos found in source {self.spec}"
                              + (f" ({ignored} other files ignored)" if ignored else ""))


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
        elif count and frame_no < count - 1:   # container counts can be off by one frame
            yield SourceItem(start_index + yielded, path, name, warning=f"video ended after {frame_no} of the "
                             f"{count} frames its container announces (truncated or damaged)")
    finally:
        cap.release()
