"""BatchNorm folding: an eval-mode BatchNorm after a (transposed) convolution is an affine map of
its output, so it can be merged into the convolution's weights and bias.  Exact up to float
rounding (tests/test_optimize.py); used by the fused inference set-ups and by every export."""
from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


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
