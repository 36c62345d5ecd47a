"""The precision cache: what ``--precision auto`` decided and gated, per (model, input size,
backend, machine, calibration source), in ``precision.json`` of the user cache folder.

An entry holds the choice, every throughput, gate figure and reason; a chosen int8 model is
stored beside the file (``precision-<hash of the key>.int8.onnx``, its sha256 in the entry), so a
later run loads the very model that was gated.  Reads never trust a damaged or foreign file (it
counts as empty and is rebuilt); writes are locked and atomic, and a read-only cache only costs
deciding again.  The key rules are in :mod:`frpose_cli.precision.autoselect`.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from frpose_cli.errors import FrposeError, warn
from frpose_cli.fileio import atomic_write_binary, atomic_write_json, locked
from frpose_cli.home import frpose_home

CACHE_VERSION = 2          # 1 stored decisions without what they gated: such files are decided again


def cache_file() -> Path:
    return frpose_home() / "precision.json"


def cache_key(model_key: str, input_size, signature: str, backend: str = "auto", calibration: str = "") -> str:
    """Without ``calibration`` the *base* key (model, size, backend, machine) entries are grouped by."""
    base = f"{model_key}|{input_size[0]}x{input_size[1]}|{backend}|{signature}"
    return f"{base}|calib:{calibration}" if calibration else base


def calibration_source(calib_data=None) -> tuple[str, list[Path]]:
    """(digest, roots): the COCO roots whose people calibrate int8 and gate (the vendored slice, where
    there is one, and ``--calib-data``) and a digest naming them — each root's resolved path and its
    annotation files' size and modification time (hashing a full COCO annotation file would cost
    every start half a second).  ``"none"`` and ``[]`` when no root has annotations."""
    from frpose_cli.precision import crops
    if calib_data and not Path(calib_data).is_dir():
        raise FrposeError(f"--calib-data {calib_data}: no such folder (expected a COCO root with annotations/)")
    h = hashlib.sha256(f"limit={crops.DEFAULT_LIMIT}".encode())
    roots = []
    for root in (crops.vendored_root(), Path(calib_data) if calib_data else None):
        files = [crops.split_paths(root, s)[0] for s in ("train2017", "val2017")] if root else []
        stats = [(f.name, f.stat()) for f in files if f.is_file()]
        if stats:
            roots.append(Path(root))
            h.update(str(Path(root).resolve()).encode())
            for name, st in stats:
                h.update(f"|{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return (h.hexdigest()[:16] if roots else "none"), roots


def read_cache(path: Path) -> dict:
    """The cached entries; an unreadable or foreign file counts as empty (it is rebuilt, not trusted)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or not isinstance(data.get("entries"), dict):
        return {}
    return data["entries"]


def write_cache_entry(path: Path, key: str, entry: dict) -> None:
    try:
        with locked(path):   # read, change, rewrite: another process's entry written meanwhile is kept
            entries = read_cache(path)
            entries.pop(key, None)    # re-inserted last: the newest entry is the last one (find_entry)
            entries[key] = entry
            atomic_write_json(path, {"version": CACHE_VERSION, "entries": entries}, indent=1)
    except OSError as e:   # a read-only cache must not stop inference: the choice is simply made again
        warn(f"cannot write the precision cache {path} ({e.strerror or e})")


def find_entry(entries: dict, base: str, key: str | None) -> dict | None:
    """The entry of ``key`` (a run naming its calibration source), or with ``key`` None the newest
    entry of ``base`` whatever source gated it."""
    if key is not None:
        entry = entries.get(key)
        return entry if isinstance(entry, dict) else None
    same = [e for e in entries.values() if isinstance(e, dict) and e.get("base") == base]
    return same[-1] if same else None


def artefact_file(path: Path, key: str) -> Path:
    return Path(path).parent / f"precision-{hashlib.sha256(key.encode()).hexdigest()[:20]}.int8.onnx"


def store_artefact(path: Path, key: str, data: bytes) -> dict | None:
    """Write the gated model beside the cache; its entry field, or None when it cannot be written."""
    target = artefact_file(path, key)
    try:
        atomic_write_binary(target, lambda f: f.write(data))
    except OSError as e:
        warn(f"cannot store the gated int8 model {target} ({e.strerror or e}); it is gated again next time")
        return None
    return {"file": target.name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def load_artefact(path: Path, entry: dict) -> tuple[bytes | None, str]:
    """(the stored model's bytes, "") when present and matching its sha256, else (None, why not)."""
    art = entry.get("artefact") if isinstance(entry.get("artefact"), dict) else {}
    target = Path(path).parent / Path(str(art.get("file", ""))).name   # a name, never a path out of the cache
    if not art.get("file") or not target.is_file():
        return None, f"the gated int8 model {target} is missing"
    try:
        data = target.read_bytes()
    except OSError as e:
        return None, f"the gated int8 model {target} is unreadable ({e.strerror or e})"
    if hashlib.sha256(data).hexdigest() != art.get("sha256"):
        return None, f"the gated int8 model {target} is corrupt (sha256 mismatch)"
    return data, ""
