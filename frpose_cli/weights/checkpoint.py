"""frpose checkpoints: a plain dict that ``torch.load(..., weights_only=True)`` can read.

Layout (format ``frpose-checkpoint/1``)::

    {"format": "frpose-checkpoint/1",
     "card": ModelCard.to_dict() with the trained input size,
     "codec": {"name": "sbn", "sigma": 8.0, "stride": 1},
     "state_dict": model weights (no "module." prefix),
     # written by `frpose train`: what the weights are (every file it writes) ...
     "epoch": int, "metrics": {...}, "best": {...}, "init": ..., "train_config": {...},
     # ... and the training state (TRAINING_STATE: only in a resumable last.pt)
     "optimizer": ..., "scheduler": ..., "scaler": ..., "rng": ..., "partial": {...}}

The card carries input size, keypoint names, flip pairs and skeleton, so every later
verb needs only ``--weights``.
"""
from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from frpose_cli.cards import ModelCard
from frpose_cli.errors import FrposeError
from frpose_cli.fileio import atomic_torch_save
from frpose_cli.weights.inert import INERT_GLOBALS, safe_globals_entries

FORMAT = "frpose-checkpoint/1"
# What only resuming needs, twice the weights' size with Adam's two moments: best.pt and the last.pt of
# a finished run go without it (docs/training.md, "What a run folder holds").
TRAINING_STATE = ("optimizer", "scheduler", "scaler", "rng", "partial")


def holds_training_state(ckpt: dict) -> bool:
    """Whether a checkpoint can be resumed (a last.pt before its run finished, or with --keep-last)."""
    return all(k in ckpt for k in ("optimizer", "scheduler", "rng"))   # what a resume loads (scaler: if any)


def save_checkpoint(path, model: torch.nn.Module, card: ModelCard, codec: dict | None = None,
                    **training_state) -> Path:
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    ckpt = {"format": FORMAT, "card": card.to_dict(),
            "codec": codec or {"name": card.codec, "sigma": card.sigma, "stride": card.stride},
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    ckpt.update(training_state)
    return atomic_torch_save(path, ckpt)


def check_weights_path(path) -> Path:
    """``path`` as a Path when it is an existing file, else a one-line error."""
    path = Path(path)
    if path.is_dir():
        raise FrposeError(f"{path} is a folder, not a model file")
    if not path.is_file():
        raise FrposeError(f"checkpoint not found: {path}")
    return path


def _numpy_globals() -> list:
    """What rebuilding numpy arrays and scalars needs, under numpy 1.x and 2.x names: mmpose and
    mmengine store dataset metadata (sigmas, colours, flip indices) as arrays next to the weights."""
    import numpy as np
    core = getattr(np, "_core", None) or np.core
    out = [np.ndarray, np.dtype]
    for fn in (core.multiarray._reconstruct, core.multiarray.scalar):
        out += [(fn, f"numpy.core.multiarray.{fn.__name__}"), (fn, f"numpy._core.multiarray.{fn.__name__}")]
    out += [t for t in vars(np.dtypes).values() if isinstance(t, type) and issubclass(t, np.dtype)]
    return out


def _global_name(item) -> str:
    return item[1] if isinstance(item, tuple) else f"{item.__module__}.{item.__qualname__}"


# Plain data beyond torch's defaults: numpy arrays, and the inert placeholders of frameworks'
# bookkeeping classes (frpose_cli.weights.inert).  Nothing else is ever instantiated or called.
ALLOWED_GLOBALS = _numpy_globals() + safe_globals_entries()
ALLOWED_GLOBAL_NAMES = frozenset(_global_name(g) for g in ALLOWED_GLOBALS)
# Modules whose globals in a pickle mean "run this when loading": named as such in the refusal.
_CODE_RUNNING = ("os", "posix", "nt", "subprocess", "builtins", "__builtin__", "sys", "shutil", "socket",
                 "importlib", "runpy", "pty", "code", "ctypes", "pickle", "marshal", "webbrowser", "commands",
                 "platform", "signal", "multiprocessing", "asyncio", "threading", "types", "functools",
                 "operator", "pdb", "timeit", "torch.hub", "torch.jit", "numpy.testing", "pip", "setuptools")


@dataclass(frozen=True)
class PickleGlobals:
    """The Python globals a checkpoint's pickle names, read without unpickling (pickletools)."""
    names: tuple          # every global, in order of first use
    file_format: str      # "zip" (torch >= 1.6) or "legacy"

    @property
    def inert(self) -> list:
        return [n for n in self.names if n in INERT_GLOBALS]

    @property
    def refused(self) -> list:
        return [n for n in self.names if n not in ALLOWED_GLOBAL_NAMES and not _torch_allows(n)]


def _torch_allows(name: str) -> bool:
    from torch import _weights_only_unpickler as wo
    return name in wo._get_allowed_globals()


def _pickle_stream(path: Path):
    """``(format, stream)``: ``data.pkl`` of a zip file, or the legacy file itself, whose first
    pickles (magic number, protocol, system info, the object) precede the raw storage bytes."""
    import io
    import zipfile
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith("data.pkl") and n.count("/") <= 1]
            return "zip", io.BytesIO(z.read(names[0]) if names else b"")
    return "legacy", open(path, "rb")   # read incrementally: the pickles are at the start


def _py3_name(module: str, name: str) -> str:
    """A global as Python 3 resolves it: protocol-2 pickles name ``__builtin__.print`` etc."""
    import _compat_pickle
    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    return f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{name}"


def scan_globals(path) -> PickleGlobals:
    """Every GLOBAL / STACK_GLOBAL the pickle names (empty when it cannot be parsed: torch.load decides)."""
    import pickletools
    path = Path(path)
    names: dict = {}
    fmt, stream = _pickle_stream(path)
    with stream:
        for _ in range(4 if fmt == "legacy" else 1):
            strings, memo, memoized, pushed = [], {}, 0, None   # pushed: the string the last op pushed
            try:
                for op, arg, _pos in pickletools.genops(stream):
                    if op.name == "GLOBAL":
                        names.setdefault(_py3_name(*str(arg).split(" ", 1)), None)
                    elif "UNICODE" in op.name or "STRING" in op.name:
                        strings.append(arg)
                        pushed = arg
                        continue
                    elif op.name in ("BINPUT", "LONG_BINPUT", "PUT", "MEMOIZE"):
                        index = memoized if op.name == "MEMOIZE" else arg
                        memoized += op.name == "MEMOIZE"
                        if pushed is not None:
                            memo[index] = pushed
                        continue
                    elif op.name in ("BINGET", "LONG_BINGET", "GET") and arg in memo:
                        strings.append(memo[arg])
                        pushed = memo[arg]
                        continue
                    elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                        names.setdefault(_py3_name(strings[-2], strings[-1]), None)
                    pushed = None
            except Exception:   # the end of a legacy file's pickles (raw storage bytes follow), or damage
                break
    return PickleGlobals(tuple(names), fmt)


def runs_code(name: str) -> bool:
    """Whether a pickle global belongs to a module whose use in a pickle means running code."""
    module = name.rsplit(".", 1)[0]
    return any(module == m or module.startswith(m + ".") for m in _CODE_RUNNING)


def _refuse(path, name: str) -> FrposeError:
    if runs_code(name):
        return FrposeError(f"{path}: refused to load: it needs the Python global {name}, which runs code "
                           "when the file is unpickled (nothing was run). A weights file never needs it: "
                           "do not use this file, it may be malicious")
    return FrposeError(f"{path}: refused to load: it needs the Python global {name}, which frpose does not "
                       "know to be plain data (nothing was run); `frpose models --inspect FILE` lists what the "
                       "file holds; if it is a training framework's bookkeeping class, report it so that it "
                       "can join the inert allow-list (docs/weights.md)")


def read_checkpoint_file(path, mmap: bool = False) -> object:
    """``torch.load(weights_only=True)`` with numpy arrays and the inert placeholders of
    :mod:`frpose_cli.weights.inert` allowed, nothing else beyond torch's defaults; one-line
    errors for every failure.  A file that needs any other Python global is refused *before*
    unpickling, naming the global (its code never runs).  ``mmap``: map the tensors' storage instead of
    reading it (a zip checkpoint's key names in milliseconds, as when a file is only identified; files of
    torch's legacy format are read whole)."""
    path = check_weights_path(path)
    mmap = bool(mmap) and zipfile.is_zipfile(path)
    try:
        needed = scan_globals(path)
    except OSError as e:
        raise FrposeError(f"{path}: cannot read ({e.strerror or e})") from None
    if needed.refused:
        raise _refuse(path, needed.refused[0])
    try:
        with torch.serialization.safe_globals(ALLOWED_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        wanted = re.search(r"GLOBAL ([\w.]+)", str(e))
        if wanted:   # a global the scan missed (e.g. built on the stack): the unpickler stopped at it
            raise _refuse(path, wanted.group(1)) from None
        raise FrposeError(f"{path}: not a readable PyTorch checkpoint ({_what_file(path)})") from None
    except Exception:  # torch raises RuntimeError/EOFError/KeyError/zipfile errors for other files
        raise FrposeError(f"{path}: not a readable PyTorch checkpoint ({_what_file(path)})") from None


ZIP_START = b"PK\x03\x04"   # torch.save's format since torch 1.6 (and TorchScript's) is a zip archive


def zip_damage(path) -> str | None:
    """How a file that starts as a zip archive is cut short, in words; None when it is whole or no zip.
    A zip's central directory (its table of contents) is written last, at the end: without it the
    file stopped early (an interrupted save, copy or download).  Reads the first and last bytes only."""
    import zipfile
    path = Path(path)
    with open(path, "rb") as f:
        if f.read(4) != ZIP_START or zipfile.is_zipfile(f):
            return None
    return (f"a torch.save zip archive cut short (truncated): {path.stat().st_size} bytes, without the central "
            "directory that ends a whole zip")


def _what_file(path) -> str:
    """What a file that torch cannot read looks like, in words (not the unpickler's opcodes)."""
    import zipfile
    size = Path(path).stat().st_size
    with open(path, "rb") as f:
        head = f.read(64)
    if size == 0:
        return "an empty file"
    damage = zip_damage(path)
    if damage:
        return f"{damage}; get or copy it again"
    if zipfile.is_zipfile(path):
        try:   # only when torch failed: reads every member to find one whose bytes changed
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
        except (zipfile.BadZipFile, OSError, RuntimeError, EOFError):
            bad = "?"
        if bad:
            return f"a damaged zip archive of {size} bytes: its member {bad} fails its checksum"
        return f"a zip archive of {size} bytes that is not a torch.save file, or a damaged one"
    if head[:1] == b"\x80":
        return f"a pickle of {size} bytes that ends early or is damaged"
    if head[:1] == b"\x08" or Path(path).suffix.lower() == ".onnx":
        return "an ONNX file? give it to predict/eval as it is, it is read by ONNX Runtime"
    try:
        text = head.decode("utf-8")
        return f"a text file of {size} bytes, starting {text[:24].strip()!r}"
    except UnicodeDecodeError:
        return f"{size} bytes that are neither a zip-format nor a legacy torch.save file"


def load_checkpoint(path) -> dict:
    """Read an frpose checkpoint written by :func:`save_checkpoint`."""
    ckpt = read_checkpoint_file(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise FrposeError(f"{path}: not an frpose checkpoint (no '{FORMAT}' format tag)")
    return ckpt


def card_from_checkpoint(ckpt: dict, source="checkpoint") -> ModelCard:
    return ModelCard.from_dict(ckpt["card"], source=str(source))


def describe_key_mismatch(missing: list, unexpected: list, shapes: list) -> str:
    """``"3 missing keys: a, b, c; 1 unexpected keys: d"`` (empty when everything fits)."""
    def few(keys):
        return ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")
    parts = [f"{len(missing)} missing keys: {few(missing)}" if missing else "",
             f"{len(unexpected)} unexpected keys: {few(unexpected)}" if unexpected else "",
             f"{len(shapes)} shape mismatches: {few(shapes)}" if shapes else ""]
    return "; ".join(p for p in parts if p)


def load_state_into(model: torch.nn.Module, state_dict: dict, source="checkpoint") -> None:
    """Strict load with one clear message naming missing/unexpected/mis-shaped keys."""
    own = model.state_dict()
    mismatch = describe_key_mismatch(
        [k for k in own if k not in state_dict], [k for k in state_dict if k not in own],
        [k for k in own if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)])
    if mismatch:
        raise FrposeError(f"{source} does not fit this model ({mismatch}); "
                          "is it a checkpoint of another model or input size?")
    model.load_state_dict(state_dict, strict=True)
