"""Where a verb writes when no ``--out`` is given: one naming scheme, one function.

Every default output is ``runs/<verb>/<name>``, made by :func:`new_run_path`:

* the generic name ``run`` is always numbered: ``runs/predict/run1``, ``run2``, … (predict,
  eval, and eval's ``--analyze`` figures under ``runs/analyze``);
* a descriptive name (a model card, an export's card and size) is used as it is first, then
  numbered with a dash: ``runs/train/sbn-r50``, ``sbn-r50-2``, … and
  ``runs/export/sbn-r50-256x192.onnx``, ``sbn-r50-256x192-2.onnx`` (export writes one file, so
  its run is a file name, given with ``suffix``).

The number is the one after the highest already there (a deleted run's number is not handed to
a new run, whose files could be mistaken for the old one's). The path is *created* here,
atomically (``mkdir`` / ``O_EXCL``, the next number on a clash), so two runs started at the same
moment never share a folder. A claimed path still empty when the command ends (it failed before
writing anything) is removed again by :func:`release_unused`, which ``frpose`` calls on exit:
a failed run leaves no empty run folder behind.

``bench`` and ``merge`` make no run folder (bench writes only ``--json``; merge writes into the
run it merges); COCO test-dev files keep the server's file name, in :func:`verb_dir` ``("eval")``.
"""
from __future__ import annotations

import atexit
import os
import re
from pathlib import Path

from frpose_cli.errors import FrposeError
from frpose_cli.outputs import check_writable_dir

RUNS = Path("runs")
GENERIC = "run"
_claimed: dict[Path, list[Path]] = {}   # path this process created → the folders made for it


def verb_dir(verb: str, root=RUNS) -> Path:
    """``runs/<verb>``: the folder a verb's default outputs go under."""
    return Path(root) / verb


def _numbers(base: Path, name: str, suffix: str) -> list[int]:
    if name == GENERIC:
        pattern = rf"{re.escape(name)}(\d+){re.escape(suffix)}"
    else:   # the bare name counts as number 1
        pattern = rf"{re.escape(name)}(?:-(\d+))?{re.escape(suffix)}"
    found = (re.fullmatch(pattern, p.name) for p in (base.iterdir() if base.is_dir() else ()))
    return [int(m.group(1) or 1) for m in found if m]


def _candidate(base: Path, name: str, suffix: str, n: int) -> Path:
    if name == GENERIC:
        return base / f"{name}{n}{suffix}"
    return base / (f"{name}{suffix}" if n == 1 else f"{name}-{n}{suffix}")


def new_run_path(verb: str, name: str = GENERIC, suffix: str = "", root=RUNS, what: str = "--out") -> Path:
    """Create and return a new ``runs/<verb>/<name>N`` (a folder; with ``suffix``, an empty file
    the verb then replaces atomically). Never a path another run holds or is creating.
    ``what``: the option this path is the default of, named in errors."""
    if not name or "/" in name or name in (".", ".."):
        raise FrposeError(f"run name {name!r}: give a plain folder name")
    base = verb_dir(verb, root)
    check_writable_dir(base, what)   # read-only, full: one line, and nothing made
    made = [d for d in (base, *base.parents) if not d.exists()]   # removed again with an unused run
    n = max(_numbers(base, name, suffix), default=0) + 1
    for _ in range(10_000):
        path = _candidate(base, name, suffix, n)
        try:
            base.mkdir(parents=True, exist_ok=True)
            if suffix:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            else:
                path.mkdir()
        except FileExistsError:   # another run took this number meanwhile: try the next one
            n += 1
            continue
        except FileNotFoundError:   # another process released runs/<verb> meanwhile: make it again
            continue
        except OSError as e:
            raise FrposeError(f"{what} {path}: cannot create it ({e.strerror})") from None
        _claimed[path] = made
        return path
    raise FrposeError(f"{base}: no free run name after {name} {n}; remove old runs")


def release(path) -> None:
    """Remove ``path`` if this process claimed it and nothing was written into it (and the
    folders above it that the claim made, if they are empty too)."""
    path = Path(path)
    if path not in _claimed:
        return
    made = _claimed.pop(path)
    try:
        if path.is_dir():
            path.rmdir()   # fails, and keeps the folder, when anything is inside
        elif path.is_file() and path.stat().st_size == 0:
            path.unlink()
        else:
            return
        for folder in made:   # deepest first; stops at the first one another run uses
            folder.rmdir()
    except OSError:
        pass


def release_unused() -> None:
    """:func:`release` every path claimed so far (the command is ending), the latest first, so
    the folders the first claim made are empty by the time it is released."""
    for path in reversed(list(_claimed)):
        release(path)


atexit.register(release_unused)   # Python API users: a failed run leaves nothing behind either
