"""Checks on where a verb will write, made *before* the work: a read-only, full or mistaken output
location is one line and exit 2 at the start, not a traceback after an hour of compute.

Probing is by doing: a small temp file is created and removed in the nearest existing folder
(permission bits say nothing to root, and a read-only mount or a full disk only shows on write).
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from frpose_cli.errors import FrposeError

MIN_FREE_BYTES = 16 << 20    # below this a run cannot even keep its results files safely


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def _probe(folder: Path, what: str) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=".frpose-probe-", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        reason = {errno.EROFS: "read-only file system", errno.ENOSPC: "no space left",
                  errno.EACCES: "permission denied", errno.EDQUOT: "disk quota exceeded"}.get(e.errno, e.strerror)
        raise FrposeError(f"{what}: cannot write in {folder} ({reason})") from None


def check_writable_dir(path, what: str, need_bytes: int = 0) -> Path:
    """``path`` can be created (if missing) and written, with ``need_bytes`` (+ a margin) free."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FrposeError(f"{what} {path} is an existing file, not a folder")
    base = _existing_ancestor(path)
    if not base.is_dir():
        raise FrposeError(f"{what} {path}: {base} is a file, so no folder can be made there")
    _probe(base, f"{what} {path}")
    free = shutil.disk_usage(base).free
    need = max(need_bytes, 0) + MIN_FREE_BYTES
    if free < need:
        raise FrposeError(f"{what} {path}: only {free / 2 ** 20:.1f} MB free there, {need / 2 ** 20:.0f} MB needed")
    return path


def check_output_file(path, what: str, need_bytes: int = 0, overwrite: bool = True) -> Path:
    """``path`` can be written as a file: not a folder, its folder writable with room."""
    path = Path(path)
    if path.is_dir():
        raise FrposeError(f"{what} {path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise FrposeError(f"{what} {path} already exists; choose another name or remove it")
    check_writable_dir(path.parent, what, need_bytes)
    return path


def is_inside(path, folder) -> bool:
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
        return True
    except ValueError:
        return False


def check_not_inside_inputs(out, inputs, what: str) -> None:
    """Outputs never land inside an input location (a later scan would read them as inputs)."""
    for folder in inputs:
        if folder is not None and Path(folder).is_dir() and is_inside(out, folder):
            raise FrposeError(f"{what} {out} is inside the input folder {folder}; write results elsewhere")
