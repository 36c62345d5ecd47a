"""Where `frpose predict` gets its pictures: one image, a folder, a glob, a video, a list file, or a
live source (a webcam, a network stream: :mod:`frpose_cli.data.live`).

Everything streams: folders and globs are walked one directory at a time, list files are read
one line at a time, and images are decoded one at a time, so a source of millions of images
never sits in memory (only the current folder's file *names* do).  A file that cannot be read
becomes a :class:`SourceItem` with an ``error`` instead of an exception, so the caller can
report it and carry on.

:meth:`Source.files` lists the files without decoding anything, each with its *position* in
the source (ignored files included): the unit of the deterministic split of sharded runs
(:mod:`frpose_cli.jobs.shards`), which every process computes from names alone.  :meth:`Source.read`
decodes one file into its items (an image, or a video's or a stream's frames).  Walking folders and
globs: :mod:`frpose_cli.data.walk`.

Images are decoded by :mod:`frpose_cli.data.images` (8-bit RGB, EXIF orientation ignored, damage
reported).  Folder and glob scans take files with image and video extensions; anything else
found there is listed as *ignored* (a ``notes.txt`` beside the photos is not a failure).  A
file named explicitly (the source itself, a list file's line) is always tried.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from frpose_cli.errors import FrposeError
from frpose_cli.data.images import IMAGE_EXTS, ImageReadError, read_image, to_rgb8
from frpose_cli.data.live import LiveCapture, live_spec, stream_file_name
from frpose_cli.data.walk import (GLOB_CHARS, Found, glob_root, glob_split, list_file_lines, natural_key,  # noqa: F401
                                  rel_name, walk_files, walk_glob)

VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".gif"}
LIST_EXTS = {".txt", ".lst"}


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
    position: int = -1           # the file's position in the source (Source.files), ignored files included
    sub: int = -1                # place within the file: the frame, or AFTER_FRAMES for a note after them
    ordinal: int | None = None   # place in its sequence (video, stream): 0, 1, 2, … over the frames read
    timestamp: float | None = None   # seconds: the container's clock (files), arrival since the first frame (live)
    arrival: float | None = None     # time.monotonic() when a live frame arrived (latency is measured from it)
    dropped: int = 0             # live frames the source delivered and nobody took, since the frame before

    @property
    def key(self) -> tuple[str, int | None]:
        return (self.file_name, self.frame)

    @property
    def order(self) -> tuple[int, int]:
        """Where the item comes in the stream: (file position, frame or -1)."""
        return (self.position, self.sub)


AFTER_FRAMES = 1 << 62   # ``sub`` of a note on a whole video, which follows its frames


@dataclass(frozen=True)
class SourceFile:
    """One file of a source, not decoded yet: the unit a sharded run splits."""
    position: int
    path: Path
    name: str
    ignored: str | None = None


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTS


class Source:
    """A user's ``SOURCE`` argument, resolved; iterate to get :class:`SourceItem` one at a time."""

    def __init__(self, spec: str, vid_stride: int = 1):
        if vid_stride < 1:
            raise FrposeError(f"--vid-stride must be at least 1 (got {vid_stride})")
        self.spec, self.vid_stride = str(spec), vid_stride
        self.live, self.capture, self.stop = live_spec(self.spec), None, threading.Event()
        path = Path(self.spec).expanduser()
        if self.live is not None:   # a webcam or a network stream (frpose_cli.data.live)
            self.kind, self.root = "stream", None
        elif path.is_dir():
            self.kind, self.root = "folder", path
        elif path.is_file() and path.suffix.lower() in LIST_EXTS:
            self.kind, self.root = "list", None
        elif path.is_file():
            self.kind, self.root = ("video" if is_video(path) else "image"), path.parent
        elif GLOB_CHARS.search(self.spec):
            self.kind, self.root = "glob", glob_root(self.spec)
        else:
            raise FrposeError(f"source not found: {self.spec} (give an image, a folder, a glob "
                              "such as 'imgs/*.jpg', a video, a .txt file listing paths, a webcam (0, webcam:N) "
                              "or a stream URL (rtsp://, rtmp://, http(s)://))")
        self.path = path

    def files(self) -> Iterator[SourceFile]:
        """Every file of the source in order, with its position; nothing is decoded and list-file
        lines are resolved only when read (:meth:`resolve`), so listing a million names is cheap."""
        if self.kind == "stream":
            yield SourceFile(0, Path(stream_file_name(self.live)), stream_file_name(self.live))
            return
        if self.kind == "folder":
            found = walk_files(self.path)
        elif self.kind == "list":
            found = (Found(p) for p in list_file_lines(self.path))
        elif self.kind == "glob":
            found = walk_glob(*glob_split(self.spec))
        else:
            found = iter([Found(self.path)])
        scanned = self.kind in ("folder", "glob")
        for position, item in enumerate(found):
            path, suffix = item.path, item.path.suffix.lower()
            ignored = item.note or ("not an image or video file (by its extension)"
                                    if scanned and not item.broken and suffix not in IMAGE_EXTS
                                    and suffix not in VIDEO_EXTS else None)
            yield SourceFile(position, path, "" if self.kind == "list" else rel_name(path, self.root), ignored)

    def resolve(self, f: SourceFile) -> SourceFile:
        """A list file's relative line is taken from the current folder, else from the list's folder."""
        if self.kind != "list":
            return f
        p = f.path
        if not p.is_absolute() and not p.exists() and (self.path.parent / p).exists():
            p = self.path.parent / p
        return replace(f, path=p, name=rel_name(p, None))

    def read(self, f: SourceFile, index: int = 0) -> Iterator[SourceItem]:
        """The items of one (resolved) file: an image, a video's frames, or one item saying why not."""
        path, name, pos = f.path, f.name, f.position
        if self.kind == "stream":
            yield from self._read_stream(f, index)
        elif f.ignored:
            yield SourceItem(index, path, name, ignored=f.ignored, position=pos)
        elif not path.is_file():
            yield SourceItem(index, path, name, error=_missing(path), position=pos)
        elif is_video(path):
            for item in iter_video(path, name, index, self.vid_stride):
                item.position = pos
                item.sub = item.frame if item.frame is not None else \
                    (AFTER_FRAMES if item.error is None else -1)
                yield item
        else:
            try:
                (image, warning), error = read_image(path), None
            except ImageReadError as e:
                image, warning, error = None, None, str(e)
            yield SourceItem(index, path, name, image=image, error=error, warning=warning, position=pos)

    def is_sequence(self, f: SourceFile) -> bool:
        """Whether the file is read as frames (a video or the stream) rather than as one image."""
        return self.kind == "stream" or (not f.ignored and f.path.is_file() and is_video(f.path))

    def open_stream(self) -> None:
        """Open a live source now (one line if it cannot be), before any model is loaded."""
        if self.kind == "stream" and self.capture is None:
            from frpose_cli.data import live   # the policy's values as they are now (tests shorten them)
            self.capture = LiveCapture(self.live, retries=live.RETRIES, stall_seconds=live.STALL_SECONDS,
                                       retry_wait=live.RETRY_WAIT, open_timeout=live.OPEN_TIMEOUT,
                                       capture_factory=cv2.VideoCapture)
            self.capture.open()

    def _read_stream(self, f: SourceFile, index: int) -> Iterator[SourceItem]:
        """A live source's frames until it ends, stalls past its retries, or :attr:`stop` is set
        (Ctrl-C, SIGTERM, the --show window's q); a stall's one line comes last, as a warning."""
        self.open_stream()
        cap = self.capture
        try:
            for n, frame in enumerate(cap.frames(self.stop)):
                yield SourceItem(index + n, f.path, f.name, frame=frame.index, image=frame.image_rgb,
                                 fps=cap.fps, position=f.position, sub=frame.index, ordinal=n,
                                 timestamp=frame.timestamp, arrival=frame.arrival, dropped=frame.dropped_before)
            if cap.end_reason and not self.stop.is_set():
                yield SourceItem(index, f.path, f.name, warning=cap.end_reason, position=f.position, sub=AFTER_FRAMES)
        finally:
            cap.close()

    def __iter__(self) -> Iterator[SourceItem]:
        """Every item in order; ``index`` counts images, frames and unreadable files (not ignored
        files or notes), the stream position ``predict`` numbers non-COCO names by."""
        index, ignored = 0, 0
        for f in self.files():
            for item in self.read(self.resolve(f), index):
                ignored += item.ignored is not None
                index += item.image is not None or item.error is not None
                yield item
        if index == 0:
            raise FrposeError(self.empty_message(ignored))

    def empty_message(self, ignored: int = 0) -> str:
        return (f"no images or videos found in source {self.spec}"
                + (f" ({ignored} other files ignored)" if ignored else ""))

    def check_not_empty(self) -> None:
        """One line before any work when the source holds no image or video (names only, no decoding)."""
        ignored = 0
        for f in self.files():
            if not f.ignored:
                return
            ignored += 1
        raise FrposeError(self.empty_message(ignored))


def _missing(path: Path) -> str:
    """Why a named file is not there, in words."""
    if path.is_symlink():
        return f"a broken symbolic link (its target {os.readlink(path)} does not exist)"
    if path.is_dir():
        return "a folder, not an image or video (list files name files; give a folder as the source itself)"
    return "no such file"


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
                msec = cap.get(cv2.CAP_PROP_POS_MSEC)   # the frame's time in the container (its PTS)
                yield SourceItem(start_index + yielded, path, name, frame=frame_no, image=to_rgb8(frame),
                                 fps=fps / stride, frame_count=count, ordinal=yielded,
                                 timestamp=msec / 1000 if msec > 0 or frame_no == 0 else frame_no / fps)
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
