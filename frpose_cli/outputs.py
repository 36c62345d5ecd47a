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


class FolderLock:
    """This process's claim on an output folder, held while it writes there (``release()`` at the end).

    ``fcntl.flock`` on ``.frpose-lock-<part>`` in the folder: the kernel drops it when the process
    dies, so a lock left by a crashed or killed run is stale by construction and simply taken over.
    The shards of one sharded run each hold their own part's lock and share the folder; a second run
    writing the same part (or an unsharded run while any part is held) is refused at the start."""

    def __init__(self, folder: Path, part: str, what: str):
        self.file, self.created = None, []
        try:
            import fcntl
        except ImportError:   # Windows: no advisory locks; the atomic writes still keep files whole
            return
        self.created = [d for d in (folder, *folder.parents) if not d.exists()]   # removed again if left empty
        folder.mkdir(parents=True, exist_ok=True)
        others = [p for p in folder.glob(".frpose-lock-*") if p.name != f".frpose-lock-{part}"] \
            if part == "all" else [folder / ".frpose-lock-all"]
        # held by a live process? (a lock we can take is not). Shards probe the unsharded run's lock
        # shared, so that the shards of one run starting together never mistake each other's probe for a run
        probe = fcntl.LOCK_SH if part != "all" else fcntl.LOCK_EX
        for other in others:
            with open(other, "a") as f:
                try:
                    fcntl.flock(f.fileno(), probe | fcntl.LOCK_NB)
                    fcntl.flock(f.fileno(), fcntl.LOCK_UN)
                except BlockingIOError:
                    raise FrposeError(f"{what} {folder} is in use by another frpose run right now; wait for it "
                                      "to finish or choose another folder") from None
        self.file = open(folder / f".frpose-lock-{part}", "a")
        try:
            fcntl.flock(self.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            self.file = None
            which = "" if part == "all" else f" (writing the same shard, {part.replace('of', '/')})"
            raise FrposeError(f"{what} {folder} is in use by another frpose run right now{which}; wait for it "
                              "to finish or choose another folder") from None

    def release(self) -> None:
        if self.file is None:
            return
        path = Path(self.file.name)
        self.file.close()   # closing drops the flock; the lock file stays (hidden) beside results,
        self.file = None    # and goes with a folder that holds nothing else (a run that failed early)
        if [p.name for p in path.parent.iterdir()] == [path.name]:
            path.unlink(missing_ok=True)
            for folder in self.created:   # deepest first: what this lock made for a run that wrote nothing
                try:
                    folder.rmdir()
                except OSError:
                    break
