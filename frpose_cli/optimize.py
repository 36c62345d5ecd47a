"""Inference set-ups for CPU/GPU speed without changing results.

``fold_batchnorm`` folds every eval-mode BatchNorm into the (transposed) convolution
before it, which removes one full pass over each feature map; ``channels_last``
(NHWC) lets oneDNN on CPU and cuDNN on GPU pick their fastest convolution kernels.
Both are exact up to float rounding (checked in tests/test_optimize.py).
``channels_last`` and ``folded`` are each half of ``fused``, kept to measure each part;
``bf16`` runs ``fused`` under bfloat16 autocast (only worth it on CPUs with native bf16:
AVX512-BF16/AMX, see :func:`cpu_has_native_bf16`); ``compile`` is ``fused`` through
``torch.compile`` (slow first call); ``onnxruntime`` exports the BN-folded network to ONNX
in memory and runs it on ONNX Runtime's CPU provider (:mod:`frpose_cli.runtime`).
Measured choice of the CPU default (:func:`default_setup`): docs/design.md.
"""
from __future__ import annotations

import importlib.util

import torch
from torch import nn

from .net.folding import fold_batchnorm

SETUPS = ("eager", "channels_last", "folded", "fused", "bf16", "compile", "onnxruntime")
_CHANNELS_LAST = ("channels_last", "fused", "bf16", "compile")


def default_setup(device: torch.device) -> str:
    """The fastest correct set-up measured (docs/design.md, "Inference set-ups"): ONNX Runtime on
    CPU when onnx and onnxruntime are installed, else ``fused`` (also on GPU)."""
    if device.type == "cpu" and all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime")):
        return "onnxruntime"
    return "fused"


def cpu_has_native_bf16() -> bool:
    """True when oneDNN has native bf16 kernels on this CPU (without them bf16 is emulated, slowly)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class Bfloat16Autocast(nn.Module):
    """Runs ``net`` under bfloat16 autocast and returns float32 heatmaps."""

    def __init__(self, net: nn.Module, device_type: str):
        super().__init__()
        self.net, self.device_type = net, device_type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return self.net(x).float()


def prepare_for_inference(model: nn.Module, device: torch.device, setup: str = "fused") -> nn.Module:
    """Eval-mode model on ``device`` in one of :data:`SETUPS`."""
    if setup not in SETUPS:
        raise ValueError(f"unknown inference set-up {setup!r}; choose from {SETUPS}")
    model = model.eval()
    if setup == "onnxruntime":
        if device.type != "cpu":
            raise ValueError("the onnxruntime set-up runs on the CPU")
        from .onnxrt import onnxruntime_net   # lazy: only this set-up needs onnxruntime
        return onnxruntime_net(model)
    if setup in ("folded", "fused", "bf16", "compile"):
        model = fold_batchnorm(model)
    if setup in _CHANNELS_LAST:
        model = model.to(memory_format=torch.channels_last)
    model = model.to(device)
    if setup == "bf16":
        model = Bfloat16Autocast(model, device.type)
    if setup == "compile":
        model = torch.compile(model)
    return model


def input_memory_format(setup: str) -> torch.memory_format:
    return torch.channels_last if setup in _CHANNELS_LAST else torch.contiguous_format
