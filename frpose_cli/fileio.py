"""Atomic writes: results and checkpoints go to a temp file in the same folder, then rename.

An interrupted run therefore leaves either the old file or the new one, never half of one.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch


def _atomic(path, write, mode: str):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path, text: str) -> Path:
    return _atomic(path, lambda f: f.write(text), "w")


def atomic_write_json(path, obj, indent: int | None = None) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent))


def atomic_write_binary(path, write) -> Path:
    """``write(f)`` into a binary temp file, then rename it to ``path``."""
    return _atomic(path, write, "wb")


def atomic_torch_save(path, obj) -> Path:
    return atomic_write_binary(path, lambda f: torch.save(obj, f))
