"""Where `frpose predict` gets its pictures: one image, a folder, a glob, a video or a list file.

Everything streams: folders and globs are walked one directory at a time, list files are read
one line at a time, and images are decoded one at a time, so a source of millions of images
never sits in memory (only the current folder's file *names* do).  A file that cannot be read
becomes a :class:`SourceItem` with an ``error`` instead of an exception, so the caller can
report it and carry on.

:meth:`Source.files` lists the files without decoding anything, each with its *position* in
the source (ignored files included): the unit of the deterministic split of sharded runs
(:mod:`frpose_cli.jobs.shards`), which every process computes from names alone.  :meth:`Source.read`
decodes one file into its items (an image, or a video's frames).

Images are decoded by :mod:`frpose_cli.data.images` (8-bit RGB, EXIF orientation ignored, damage
reported).  Folder and glob scans take files with image and video extensions; anything else
found there is listed as *ignored* (a ``notes.txt`` beside the photos is not a failure).  A
file named explicitly (the source itself, a list file's line) is always tried.
"""
from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from frpose_cli.errors import FrposeError
from frpose_cli.data.images import IMAGE_EXTS, ImageReadError, read_image, to_rgb8

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
    position: int = -1           # the file's position in the source (Source.files), ignored files included
    sub: int = -1                # place within the file: the frame, or AFTER_FRAMES for a note after them

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


def natural_key(text: str):
    """Sort key that orders ``img2`` before ``img10`` (case-insensitive, digits as numbers)."""
    return [(0, int(tok), "") if tok.isdigit() else (1, 0, tok.lower())
            for tok in re.split(r"(\d+)", str(text)) if tok]


# ----------------------------------------------------------------------------- enumeration

class _Scan:
    """A folder walk's memory of links (see :func:`_entries`): symbolic links are named by their own
    path inside the source; a link to a file the walk also reaches by its real path, or to a file
    another link already gave, is a *duplicate* (listed, processed once); a link to a folder inside
    the source or to one already entered (a loop) is not followed; a dangling link is reported."""

    def __init__(self, root: Path, pattern: list | None = None):
        self.root, self.root_real = root, Path(os.path.realpath(root))
        self.pattern = pattern
        self.entered: set = set()          # real paths of the folders walked (links make loops)
        self.linked: dict = {}             # real path of a file reached through a link → its name

    def canonical(self, real: Path) -> bool:
        """Whether the walk reaches ``real`` by its own path (inside the root, no hidden part, matching)."""
        try:
            parts = real.relative_to(self.root_real).parts
        except ValueError:
            return False
        if any(p.startswith(".") for p in parts):
            return False
        return self.pattern is None or _match_parts(self.pattern, parts)

    def note_file(self, path: Path, through_link: bool) -> str | None:
        """Why the file at ``path`` is a duplicate, or None to process it."""
        if not through_link:
            return None
        real = Path(os.path.realpath(path))
        if self.canonical(real):
            return f"duplicate: a link to {real.relative_to(self.root_real).as_posix()}, processed under that name"
        first = self.linked.setdefault(real, path)
        return None if first == path else f"duplicate: the same file as {_rel_name(first, self.root)} (processed once)"

    def note_folder(self, path: Path, is_link: bool) -> str | None:
        """Why the folder at ``path`` is not entered, or None to walk it."""
        real = Path(os.path.realpath(path))
        if real in self.entered:
            return "a link to a folder already walked (a loop): not followed"
        if is_link and (real == self.root_real or self.root_real in real.parents):
            return "a link to a folder inside the source: not followed (its files are taken from there)"
        self.entered.add(real)
        return None


@dataclass(frozen=True)
class _Found:
    path: Path
    through_link: bool = False         # the file, or a folder above it, is a symbolic link
    note: str | None = None            # listed, not processed: why (duplicate, link not followed)
    broken: bool = False               # a dangling link


def _entries(folder: Path) -> tuple[list, list]:
    """A folder's visible files and sub-folders (``os.DirEntry``), each in natural order; an
    unreadable folder or entry is passed over (a scan never stops on one bad entry).  Dangling
    links come with the files (the caller reports them)."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: natural_key(e.name))
    except OSError:
        return [], []
    files, subdirs = [], []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            if entry.is_dir():
                subdirs.append(entry)
            elif entry.is_file() or entry.is_symlink():
                files.append(entry)
        except OSError:
            continue
    return files, subdirs


def _files_of(scan: _Scan, files, linked: bool) -> Iterator[_Found]:
    for entry in files:
        path = Path(entry.path)
        if entry.is_symlink() and not path.exists():
            yield _Found(path, True, broken=True)
            continue
        through = linked or entry.is_symlink()
        yield _Found(path, through, scan.note_file(path, through))


def _walk_files(root: Path) -> Iterator[_Found]:
    """Files under ``root`` in natural order, directory by directory (hidden entries skipped)."""
    scan = _Scan(root)

    def walk(folder: Path, linked: bool) -> Iterator[_Found]:
        files, subdirs = _entries(folder)
        yield from _files_of(scan, files, linked)
        for entry in subdirs:
            path = Path(entry.path)
            note = scan.note_folder(path, entry.is_symlink())
            if note is not None:
                yield _Found(path, True, note)
            else:
                yield from walk(path, linked or entry.is_symlink())

    if scan.note_folder(root, False) is None:
        yield from walk(root, False)


def _list_file_lines(list_file: Path) -> Iterator[Path]:
    """Paths from a text file, one a line (``#`` comments and blank lines ignored), read lazily;
    :meth:`Source.resolve` places relative ones."""
    try:
        with open(list_file, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    yield Path(line).expanduser()
    except UnicodeDecodeError:
        raise FrposeError(f"{list_file}: a list file must be UTF-8 text with one path per line") from None


def _glob_split(pattern: str) -> tuple[Path, list[str]]:
    """``/data/**/img*.jpg`` → (``/data``, ``["**", "img*.jpg"]``): the fixed folder and the rest."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if _GLOB_CHARS.search(part):
            break
        fixed.append(part)
    return (Path(*fixed) if fixed else Path(".")), list(parts[len(fixed):])


def _glob_root(pattern: str) -> Path:
    return _glob_split(pattern)[0]


def _match_parts(pattern: list[str], parts: tuple) -> bool:
    """glob's rules on path components: ``**`` any number of folders, ``*``/``?``/``[]`` within one name."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_match_parts(pattern[1:], parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _match_parts(pattern[1:], parts[1:])


def _walk_glob(root: Path, pattern: list[str]) -> Iterator[_Found]:
    """Files under ``root`` matching ``pattern``, lazily, in the same order as a folder walk; folders
    that cannot match are not entered (without ``**`` the depth is the pattern's).  Links as in
    :class:`_Scan`."""
    recursive = "**" in pattern
    fixed_depth = pattern.index("**") if recursive else len(pattern)
    scan = _Scan(root, pattern)

    def walk(folder: Path, rel: tuple, linked: bool) -> Iterator[_Found]:
        files, subdirs = _entries(folder)
        yield from _files_of(scan, [e for e in files if _match_parts(pattern, rel + (e.name,))], linked)
        depth = len(rel)   # this folder's component index in the pattern
        if not (recursive or depth + 1 < len(pattern)):
            return
        for entry in subdirs:
            if depth >= fixed_depth or fnmatch.fnmatchcase(entry.name, pattern[depth]):
                path = Path(entry.path)
                note = scan.note_folder(path, entry.is_symlink())
                if note is not None:
                    yield _Found(path, True, note)
                else:
                    yield from walk(path, rel + (entry.name,), linked or entry.is_symlink())

    if scan.note_folder(root, False) is None:
        yield from walk(root, (), False)


def _rel_name(path: Path, root: Path | None) -> str:
    """The name a file is recorded under: its own path inside the source (a link keeps its name,
    never its target's)."""
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
        return path.name
    return path.as_posix()


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

    def files(self) -> Iterator[SourceFile]:
        """Every file of the source in order, with its position; nothing is decoded and list-file
        lines are resolved only when read (:meth:`resolve`), so listing a million names is cheap."""
        if self.kind == "folder":
            found = _walk_files(self.path)
        elif self.kind == "list":
            found = (_Found(p) for p in _list_file_lines(self.path))
        elif self.kind == "glob":
            found = _walk_glob(*_glob_split(self.spec))
        else:
            found = iter([_Found(self.path)])
        scanned = self.kind in ("folder", "glob")
        for position, item in enumerate(found):
            path, suffix = item.path, item.path.suffix.lower()
            ignored = item.note or ("not an image or video file (by its extension)"
                                    if scanned and not item.broken and suffix not in IMAGE_EXTS
                                    and suffix not in VIDEO_EXTS else None)
            yield SourceFile(position, path, "" if self.kind == "list" else _rel_name(path, self.root), ignored)

    def resolve(self, f: SourceFile) -> SourceFile:
        """A list file's relative line is taken from the current folder, else from the list's folder."""
        if self.kind != "list":
            return f
        p = f.path
        if not p.is_absolute() and not p.exists() and (self.path.parent / p).exists():
            p = self.path.parent / p
        return replace(f, path=p, name=_rel_name(p, None))

    def read(self, f: SourceFile, index: int = 0) -> Iterator[SourceItem]:
        """The items of one (resolved) file: an image, a video's frames, or one item saying why not."""
        path, name, pos = f.path, f.name, f.position
        if f.ignored:
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
