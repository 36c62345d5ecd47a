"""Atomic writes: results and checkpoints go to a temp file in the same folder, then rename.

An interrupted run therefore leaves either the old file or the new one, never half of one.
The file gets the permissions a plain ``open(path, "w")`` would give (0666 minus the umask),
not the 0600 of ``tempfile.mkstemp``.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch


def current_umask() -> int:
    mask = os.umask(0)   # the only way to read it is to set it
    os.umask(mask)
    return mask


def apply_umask(path) -> None:
    """Give ``path`` (a temp file from ``mkstemp``, mode 0600) the mode the user's umask asks for."""
    os.chmod(path, 0o666 & ~current_umask())


@contextmanager
def atomic_open(path, mode: str = "w", replace: bool = True, durable: bool = True):
    """A temp file beside ``path`` to write into, renamed to ``path`` when the block ends without
    an error (files too large to build in memory: merged predictions, streamed lists).  ``durable``
    False skips the fsync: for caches that are checked when read and cheap to make again."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        apply_umask(tmp)
        if replace:
            os.replace(tmp, path)
        else:   # never over a file another process wrote meanwhile: a hard link fails if the name exists
            os.link(tmp, path)
            os.unlink(tmp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def locked(path):
    """An exclusive lock on ``<path>.lock`` (``fcntl.flock``) while a block reads, changes and rewrites
    ``path``, so that concurrent writers (other processes, other ranks) lose nothing; where there is no
    flock (Windows) the block runs unlocked, and the atomic rename still keeps the file whole."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    lock = Path(f"{path}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _atomic(path, write, mode: str):
    with atomic_open(path, mode) as f:
        write(f)
    return Path(path)


def atomic_write_text(path, text: str) -> Path:
    return _atomic(path, lambda f: f.write(text), "w")


def _plain(value):
    """numpy scalars and arrays as JSON numbers and lists (figures computed with numpy end up in reports)."""
    import numpy as np
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def atomic_write_json(path, obj, indent: int | None = None) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, default=_plain))


def create_json(path, obj, indent: int | None = None) -> Path:
    """Write ``obj`` to ``path`` atomically, never over an existing file: if another process made
    ``path`` meanwhile, to the first free ``<stem>-2<suffix>``, ``-3``, … instead; returns the path used."""
    path = Path(path)
    text = json.dumps(obj, indent=indent, default=_plain)
    for n in range(1, 1000):
        candidate = path if n == 1 else path.with_name(f"{path.stem}-{n}{path.suffix}")
        try:
            with atomic_open(candidate, "w", replace=False) as f:
                f.write(text)
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(path)


def atomic_write_binary(path, write, durable: bool = True) -> Path:
    """``write(f)`` into a binary temp file, then rename it to ``path``."""
    if not durable:
        with atomic_open(path, "wb", durable=False) as f:
            write(f)
        return Path(path)
    return _atomic(path, write, "wb")


def atomic_torch_save(path, obj) -> Path:
    return atomic_write_binary(path, lambda f: torch.save(obj, f))


def atomic_link(src, dst) -> bool:
    """Make ``dst`` a second name of the file ``src`` (a hard link: one copy on disk), replacing ``dst``
    atomically; False, with ``dst`` as it was, where the file system has no hard links.  Safe because
    every writer here replaces files by renaming, never rewrites one in place."""
    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.link.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:   # FAT, some network and FUSE file systems
        return False
    try:
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return True
