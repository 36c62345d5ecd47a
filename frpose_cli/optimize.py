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

import copy
import importlib.util

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

SETUPS = ("eager", "channels_last", "folded", "fused", "bf16", "compile", "onnxruntime")
_CHANNELS_LAST = ("channels_last", "fused", "bf16", "compile")


def _fold_sequence(modules: list[tuple[str, nn.Module]], parent: nn.Module) -> None:
    for (name_a, a), (name_b, b) in zip(modules, modules[1:]):
        if isinstance(b, nn.BatchNorm2d) and isinstance(a, (nn.Conv2d, nn.ConvTranspose2d)):
            setattr(parent, name_a, fuse_conv_bn_eval(a, b, transpose=isinstance(a, nn.ConvTranspose2d)))
            setattr(parent, name_b, nn.Identity())


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Return an eval-mode copy of ``model`` with every Conv→BN pair folded into one conv.

    Pairs are found in Sequentials and in torchvision ResNet blocks (conv1/bn1, conv2/bn2,
    conv3/bn3), which covers every BN of :class:`~frpose_cli.net.network.PoseNet`.
    """
    model = copy.deepcopy(model).eval()
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            _fold_sequence(list(module.named_children()), module)
        for i in (1, 2, 3):
            conv, bn = getattr(module, f"conv{i}", None), getattr(module, f"bn{i}", None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, f"conv{i}", fuse_conv_bn_eval(conv, bn))
                setattr(module, f"bn{i}", nn.Identity())
    return model


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
        from .runtime import onnxruntime_net   # lazy: runtime imports this module
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
