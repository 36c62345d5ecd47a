"""BatchNorm folding: an eval-mode BatchNorm after a (transposed) convolution is an affine map of
its output, so it can be merged into the convolution's weights and bias.  Exact up to float
rounding (tests/test_optimize.py); used by the fused inference set-ups, by every export, and by
the detector's set-ups (torchvision's ``FrozenBatchNorm2d``, the same affine map with frozen
statistics: :mod:`frpose_cli.inference.detector_setups`)."""
from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_conv_bn_weights


def _is_frozen_bn(module: nn.Module) -> bool:
    # by name: torchvision is imported only where a detector is built
    return type(module).__name__ == "FrozenBatchNorm2d" and hasattr(module, "running_var")


def _fuse_conv_frozen_bn(conv: nn.Conv2d, bn: nn.Module) -> nn.Conv2d:
    """``bn(conv(x))`` as one convolution: FrozenBatchNorm2d keeps the buffers torch's fusion reads."""
    fused = copy.deepcopy(conv)
    fused.weight, fused.bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps,
                                                    bn.weight, bn.bias)
    return fused


def _fuse(conv: nn.Module, bn: nn.Module) -> nn.Module | None:
    if isinstance(bn, nn.BatchNorm2d) and isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)):
        return fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, nn.ConvTranspose2d))
    if _is_frozen_bn(bn) and isinstance(conv, nn.Conv2d):
        return _fuse_conv_frozen_bn(conv, bn)
    return None


def _fold_sequence(modules: list[tuple[str, nn.Module]], parent: nn.Module) -> None:
    for (name_a, a), (name_b, b) in zip(modules, modules[1:]):
        fused = _fuse(a, b)
        if fused is not None:
            setattr(parent, name_a, fused)
            setattr(parent, name_b, nn.Identity())


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Return an eval-mode copy of ``model`` with every Conv→BN pair folded into one conv.

    Pairs are found in Sequentials and in torchvision ResNet blocks and stems (conv1/bn1,
    conv2/bn2, conv3/bn3), which covers every BN of :class:`~frpose_cli.net.network.PoseNet` and
    every frozen BN of torchvision's Faster R-CNN backbones (ResNet-50, MobileNetV3).
    """
    model = copy.deepcopy(model).eval()
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            _fold_sequence(list(module.named_children()), module)
        for i in (1, 2, 3):
            conv, bn = getattr(module, f"conv{i}", None), getattr(module, f"bn{i}", None)
            fused = _fuse(conv, bn) if isinstance(conv, nn.Conv2d) else None
            if fused is not None:
                setattr(module, f"conv{i}", fused)
                setattr(module, f"bn{i}", nn.Identity())
    return model
