"""Inference set-ups for CPU/GPU speed without changing results.

``fold_batchnorm`` folds every eval-mode BatchNorm into the (transposed) convolution
before it, which removes one full pass over each feature map; ``channels_last``
(NHWC) lets oneDNN on CPU and cuDNN on GPU pick their fastest convolution kernels.
Both are exact up to float rounding (checked in tests/test_optimize.py).
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

SETUPS = ("eager", "fused")


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


def prepare_for_inference(model: nn.Module, device: torch.device, setup: str = "fused") -> nn.Module:
    """Eval-mode model on ``device`` in one of :data:`SETUPS`."""
    if setup not in SETUPS:
        raise ValueError(f"unknown inference set-up {setup!r}; choose from {SETUPS}")
    model = model.eval()
    if setup == "fused":
        model = fold_batchnorm(model).to(memory_format=torch.channels_last)
    return model.to(device)


def input_memory_format(setup: str) -> torch.memory_format:
    return torch.channels_last if setup == "fused" else torch.contiguous_format
