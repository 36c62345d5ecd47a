"""Device choice: CUDA when present, else CPU; never a hard-coded ``.cuda()``."""
from __future__ import annotations

import torch

from frpose_cli.errors import FrposeError


def pick_device(name: str | None = None) -> torch.device:
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise FrposeError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FrposeError(f"device {name} asked for, but CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise FrposeError(f"device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    return dev


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
