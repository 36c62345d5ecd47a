"""Inference set-ups for CPU/GPU speed without changing results.

``fold_batchnorm`` folds every eval-mode BatchNorm into the (transposed) convolution
before it, which removes one full pass over each feature map; ``channels_last``
(NHWC) lets oneDNN on CPU and cuDNN on GPU pick their fastest convolution kernels.
Both are exact up to float rounding (checked in tests/test_optimize.py).
``channels_last`` and ``folded`` are each half of ``fused``, kept to measure each part;
``compile`` is ``fused`` through ``torch.compile`` (slow first call); ``onnxruntime``
exports the BN-folded network to ONNX in memory and runs it on ONNX Runtime's CPU provider
(:mod:`frpose_cli.runtime.load`).  Measured choice of the CPU float32 default
(:func:`default_setup`): docs/design.md.

Reduced precision (:data:`SETUP_PRECISION`; which one runs where: :mod:`frpose_cli.runtime.precision`):
``bf16`` and ``fp16`` run ``fused`` under autocast (bf16 only where the CPU or GPU has it
natively, fp16 on CUDA), ``int8`` is ONNX Runtime static int8 calibrated on real crops
(:mod:`frpose_cli.runtime.quantize`).  They change results slightly; the accuracy gate
(:mod:`frpose_cli.runtime.gate`) measures by how much.
"""
from __future__ import annotations

import importlib.util

import torch
from torch import nn

from frpose_cli.net.folding import fold_batchnorm

SETUPS = ("eager", "channels_last", "folded", "fused", "compile", "onnxruntime", "bf16", "fp16", "int8")
SETUP_PRECISION = {s: "fp32" for s in SETUPS} | {"bf16": "bf16", "fp16": "fp16", "int8": "int8"}
_CHANNELS_LAST = ("channels_last", "fused", "bf16", "fp16", "compile")
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def default_setup(device: torch.device) -> str:
    """The fastest correct set-up measured (docs/design.md, "Inference set-ups"): ONNX Runtime on
    CPU when onnx and onnxruntime are installed, else ``fused`` (also on GPU)."""
    if device.type == "cpu" and all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime")):
        return "onnxruntime"
    return "fused"


class Autocast(nn.Module):
    """Runs ``net`` under autocast to ``dtype`` (bf16/fp16) and returns float32 heatmaps."""

    def __init__(self, net: nn.Module, device_type: str, dtype: torch.dtype):
        super().__init__()
        self.net, self.device_type, self.dtype = net, device_type, dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=self.dtype):
            return self.net(x).float()


def prepare_for_inference(model: nn.Module, device: torch.device, setup: str = "fused",
                          calibration: torch.Tensor | None = None) -> nn.Module:
    """Eval-mode model on ``device`` in one of :data:`SETUPS`; ``int8`` needs ``calibration``,
    real network inputs (N, 3, H, W) to fit its scales on (:func:`frpose_cli.runtime.crops.calibration_crops`)."""
    if setup not in SETUPS:
        raise ValueError(f"unknown inference set-up {setup!r}; choose from {SETUPS}")
    model = model.eval()
    if setup in ("onnxruntime", "int8"):
        if device.type != "cpu":
            raise ValueError(f"the {setup} set-up runs on the CPU")
        if setup == "int8":
            if calibration is None:
                raise ValueError("the int8 set-up needs calibration inputs")
            from frpose_cli.runtime.quantize import int8_net   # lazy: only this set-up needs onnxruntime's quantizer
            return int8_net(model, calibration)
        from frpose_cli.runtime.onnxrt import onnxruntime_net   # lazy: only this set-up needs onnxruntime
        return onnxruntime_net(model)
    if setup == "fp16" and device.type != "cuda":
        raise ValueError("the fp16 set-up runs on CUDA")
    if setup in ("folded", "fused", "bf16", "fp16", "compile"):
        model = fold_batchnorm(model)
    if setup in _CHANNELS_LAST:
        model = model.to(memory_format=torch.channels_last)
    model = model.to(device)
    if setup in _AUTOCAST:
        model = Autocast(model, device.type, _AUTOCAST[setup])
    if setup == "compile":
        model = torch.compile(model)
    return model


def input_memory_format(setup: str) -> torch.memory_format:
    return torch.channels_last if setup in _CHANNELS_LAST else torch.contiguous_format
