"""Inference set-ups for CPU/GPU speed without changing results.

``fold_batchnorm`` folds every eval-mode BatchNorm into the (transposed) convolution
before it, which removes one full pass over each feature map; ``channels_last``
(NHWC) lets oneDNN on CPU and cuDNN on GPU pick their fastest convolution kernels.
Both are exact up to float rounding (checked in tests/test_optimize.py).
``channels_last`` and ``folded`` are each half of ``fused``, kept to measure each part;
``compile`` is ``fused`` through ``torch.compile`` (slow first call); ``onnxruntime``
exports the BN-folded network to ONNX in memory and runs it on ONNX Runtime's CPU provider
(:mod:`frpose_cli.load`); ``openvino`` runs the same in-memory ONNX on OpenVINO's CPU plugin, when the
optional openvino package is installed (:mod:`frpose_cli.runtime.ovrt`).  Measured choice of the CPU float32 default
(:func:`default_setup`): docs/design.md.

Reduced precision (:data:`SETUP_PRECISION`; which one runs where: :mod:`frpose_cli.precision.formats`):
``bf16`` and ``fp16`` run ``fused`` under autocast (bf16 only where the CPU or GPU has it
natively, fp16 on CUDA), ``int8`` is ONNX Runtime static int8 calibrated on real crops
(:mod:`frpose_cli.runtime.quantize`), ``openvino_bf16`` is OpenVINO with its bf16 inference precision
hint (native bf16 only, as torch's).  They change results slightly; the accuracy gate
(:mod:`frpose_cli.precision.gate`) measures by how much.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch
from torch import nn

from frpose_cli.net.folding import fold_batchnorm

BACKENDS = ("auto", "torch", "onnxruntime", "openvino")   # what --backend takes; a set-up names the one it runs on


@dataclass(frozen=True)
class Setup:
    """One way of running a network: what it runs on, at which precision, with which transforms.
    Every property of a set-up is read from here, never inferred from its name."""
    name: str
    backend: str            # "torch" | "onnxruntime" | "openvino"
    precision: str          # "fp32" | "bf16" | "fp16" | "int8"
    fold_bn: bool = False   # BatchNorm folded into the convolution before it
    channels_last: bool = False
    device: str = "any"     # "any" | "cpu" | "cuda"


SETUP_TABLE = {s.name: s for s in (
    Setup("eager", "torch", "fp32"),
    Setup("channels_last", "torch", "fp32", channels_last=True),
    Setup("folded", "torch", "fp32", fold_bn=True),
    Setup("fused", "torch", "fp32", fold_bn=True, channels_last=True),
    Setup("compile", "torch", "fp32", fold_bn=True, channels_last=True),
    Setup("onnxruntime", "onnxruntime", "fp32", fold_bn=True, device="cpu"),
    Setup("bf16", "torch", "bf16", fold_bn=True, channels_last=True),
    Setup("fp16", "torch", "fp16", fold_bn=True, channels_last=True, device="cuda"),
    Setup("int8", "onnxruntime", "int8", fold_bn=True, device="cpu"),
    Setup("openvino", "openvino", "fp32", fold_bn=True, device="cpu"),
    Setup("openvino_bf16", "openvino", "bf16", fold_bn=True, device="cpu"),
)}
SETUPS = tuple(SETUP_TABLE)
SETUP_PRECISION = {name: s.precision for name, s in SETUP_TABLE.items()}
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_backend(name: str) -> str:
    """``name`` if it is a backend this machine can run; an optional one not installed is one line."""
    from frpose_cli.errors import FrposeError
    if name not in BACKENDS:
        raise FrposeError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    if name == "openvino":
        from frpose_cli.runtime.ovrt import available, missing_message   # lazy: never imports openvino itself
        if not available():
            raise FrposeError(missing_message())
    return name


def setup_named(name: str) -> Setup:
    if name not in SETUP_TABLE:
        raise ValueError(f"unknown inference set-up {name!r}; choose from {SETUPS}")
    return SETUP_TABLE[name]


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
    real network inputs (N, 3, H, W) to fit its scales on (:func:`frpose_cli.precision.crops.calibration_crops`)."""
    spec = setup_named(setup)
    model = model.eval()
    if spec.device not in ("any", device.type):
        raise ValueError(f"the {setup} set-up runs on {'the CPU' if spec.device == 'cpu' else 'CUDA'}")
    if spec.backend == "openvino":   # the network leaves torch: exported (BN folded by the exporter)
        from frpose_cli.runtime.ovrt import openvino_net   # lazy: openvino is optional
        return openvino_net(model, spec.precision)
    if spec.backend == "onnxruntime":   # the network leaves torch: exported (BN folded by the exporter)
        if setup == "int8":
            if calibration is None:
                raise ValueError("the int8 set-up needs calibration inputs")
            from frpose_cli.runtime.quantize import int8_net   # lazy: only this set-up needs onnxruntime's quantizer
            return int8_net(model, calibration)
        from frpose_cli.runtime.onnxrt import onnxruntime_net   # lazy: only this set-up needs onnxruntime
        return onnxruntime_net(model)
    if spec.fold_bn:
        model = fold_batchnorm(model)
    if spec.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = model.to(device)
    if setup in _AUTOCAST:
        model = Autocast(model, device.type, _AUTOCAST[setup])
    if setup == "compile":
        model = torch.compile(model)
    return model


def input_memory_format(setup: str) -> torch.memory_format:
    return torch.channels_last if setup_named(setup).channels_last else torch.contiguous_format
