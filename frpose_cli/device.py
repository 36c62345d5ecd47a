"""Device choice: CUDA when present, else CPU; never a hard-coded ``.cuda()``.

:func:`pick_device` is the one place the default is decided: the CLI verbs and the Python API
(:func:`frpose_cli.load.load_pose_model` with ``device=None``) both call it, so a script and
``frpose predict`` run on the same device.
"""
from __future__ import annotations

import torch

from frpose_cli.errors import ArgumentValueError, FrposeError


def pick_device(name: str | None = None, cpu_only: bool = False) -> torch.device:
    """``name`` checked against this machine; None/""/"auto" → CUDA if present, else the CPU.
    ``cpu_only``: what will run has only a CPU path here (ONNX Runtime's CPU provider), so the
    default is the CPU rather than an error."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() and not cpu_only else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ArgumentValueError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FrposeError(f"device {name} asked for, but CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise FrposeError(f"device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    return dev


def synchronize(device: torch.device, current_stream_only: bool = False) -> None:
    """Wait for the device's queued work: all of it, or only this thread's current CUDA stream (so a
    timer in one thread does not wait for another thread's stream)."""
    if device.type == "cuda":
        if current_stream_only:
            torch.cuda.current_stream(device).synchronize()
        else:
            torch.cuda.synchronize(device)
