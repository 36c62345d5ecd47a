"""Walking what a source names without decoding anything: folders and globs one directory at a
time in natural order, list files one line at a time, symbolic links named by their own path
(:class:`_Scan`).  :mod:`frpose_cli.data.sources` turns what is found into the files of a source."""
from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from frpose_cli.errors import FrposeError

GLOB_CHARS = re.compile(r"[*?\[]")


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
        return None if first == path else f"duplicate: the same file as {rel_name(first, self.root)} (processed once)"

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
class Found:
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


def _files_of(scan: _Scan, files, linked: bool) -> Iterator[Found]:
    for entry in files:
        path = Path(entry.path)
        if entry.is_symlink() and not path.exists():
            yield Found(path, True, broken=True)
            continue
        through = linked or entry.is_symlink()
        yield Found(path, through, scan.note_file(path, through))


def walk_files(root: Path) -> Iterator[Found]:
    """Files under ``root`` in natural order, directory by directory (hidden entries skipped)."""
    scan = _Scan(root)

    def walk(folder: Path, linked: bool) -> Iterator[Found]:
        files, subdirs = _entries(folder)
        yield from _files_of(scan, files, linked)
        for entry in subdirs:
            path = Path(entry.path)
            note = scan.note_folder(path, entry.is_symlink())
            if note is not None:
                yield Found(path, True, note)
            else:
                yield from walk(path, linked or entry.is_symlink())

    if scan.note_folder(root, False) is None:
        yield from walk(root, False)


def list_file_lines(list_file: Path) -> Iterator[Path]:
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


def glob_split(pattern: str) -> tuple[Path, list[str]]:
    """``/data/**/img*.jpg`` → (``/data``, ``["**", "img*.jpg"]``): the fixed folder and the rest."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if GLOB_CHARS.search(part):
            break
        fixed.append(part)
    return (Path(*fixed) if fixed else Path(".")), list(parts[len(fixed):])


def glob_root(pattern: str) -> Path:
    return glob_split(pattern)[0]


def _match_parts(pattern: list[str], parts: tuple) -> bool:
    """glob's rules on path components: ``**`` any number of folders, ``*``/``?``/``[]`` within one name."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_match_parts(pattern[1:], parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _match_parts(pattern[1:], parts[1:])


def walk_glob(root: Path, pattern: list[str]) -> Iterator[Found]:
    """Files under ``root`` matching ``pattern``, lazily, in the same order as a folder walk; folders
    that cannot match are not entered (without ``**`` the depth is the pattern's).  Links as in
    :class:`_Scan`."""
    recursive = "**" in pattern
    fixed_depth = pattern.index("**") if recursive else len(pattern)
    scan = _Scan(root, pattern)

    def walk(folder: Path, rel: tuple, linked: bool) -> Iterator[Found]:
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
                    yield Found(path, True, note)
                else:
                    yield from walk(path, rel + (entry.name,), linked or entry.is_symlink())

    if scan.note_folder(root, False) is None:
        yield from walk(root, (), False)


def rel_name(path: Path, root: Path | None) -> str:
    """The name a file is recorded under: its own path inside the source (a link keeps its name,
    never its target's)."""
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
        return path.name
    return path.as_posix()
