"""The ``onnxruntime`` set-up's graph of a network, kept on disk between runs.

On the CPU a checkpoint runs on ONNX Runtime (``runtime/onnxrt.py``), which needs the network
exported to ONNX first, then a session built from it: seconds, more than the pose network takes for
one photo (docs/benchmarks.md, "Start-up").  A script that calls ``frpose predict`` per file, or a video preview, would pay it
every time, where the same network's exported ``.onnx`` starts at once.  So the exported graph is
kept in ``$FRPOSE_HOME/onnx/`` (``home.frpose_home``), keyed by what decides its bytes: the network's
tensors and module structure, torch's version (its exporter) and the opset.  Keying by the tensors
rather than the file means a checkpoint that is copied, moved or re-saved still hits, and a
retrained one never does.  The newest :data:`KEEP` graphs are kept (each is the size of the
weights).  A cached file that ONNX Runtime cannot read is exported again and replaced; a cache folder
that cannot be written only costs the export.
"""
from __future__ import annotations

import hashlib
import os
import weakref
from pathlib import Path

import torch

from frpose_cli.runtime.export_format import DEFAULT_OPSET, onnx_bytes_any_size

KEEP = 4
FORMAT = 1   # bump when onnx_bytes_any_size's graph changes for the same network


_fingerprints: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def weights_fingerprint(net: torch.nn.Module) -> str:
    """A short hash of the network's tensors: caches tell trained networks apart by it.  Remembered per
    network until a tensor changes (torch counts in-place writes in ``_version``): the precision
    cache and this one both ask, and hashing frpose-r34's 130 MB takes 0.2 s."""
    state = sorted(net.state_dict().items())
    versions = tuple((name, t._version, t.data_ptr()) for name, t in state)
    known = _fingerprints.get(net)
    if known is not None and known[0] == versions:
        return known[1]
    h = hashlib.sha256()
    for name, t in state:
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    _fingerprints[net] = (versions, h.hexdigest()[:16])
    return _fingerprints[net][1]


def graph_key(net: torch.nn.Module, opset: int = DEFAULT_OPSET) -> str:
    """What the exported bytes depend on; the repr holds each module's settings (resize modes, …)."""
    structure = hashlib.sha256(repr(net).encode()).hexdigest()[:16]
    text = f"{weights_fingerprint(net)}|{structure}|torch {torch.__version__}|opset {opset}|format {FORMAT}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cache_folder() -> Path:
    from frpose_cli.home import frpose_home
    return frpose_home() / "onnx"


def onnx_graph(net: torch.nn.Module, fresh: bool = False, folder: Path | None = None) -> bytes:
    """``net``'s graph for the in-memory set-ups (ONNX Runtime's, OpenVINO's): the cached bytes when
    there are some and not ``fresh``, else exported now and kept."""
    path = (folder or cache_folder()) / f"{graph_key(net)}.onnx"
    if not fresh:
        try:
            data = path.read_bytes()
            os.utime(path)   # most recently used: kept longest
            return data
        except OSError:
            pass
    data = onnx_bytes_any_size(net)
    _store(path, data)
    return data


def _store(path: Path, data: bytes) -> None:
    from frpose_cli.fileio import atomic_write_binary
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # no fsync: a graph cut short by a crash fails to load and is exported again (onnxrt.onnxruntime_net)
        atomic_write_binary(path, lambda f: f.write(data), durable=False)
        graphs = sorted(path.parent.glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in graphs[KEEP:]:
            old.unlink(missing_ok=True)
    except OSError:   # a read-only or full cache folder: the graph is used from memory this time
        pass
