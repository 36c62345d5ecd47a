"""Small building blocks shared by the network modules."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(in_ch: int, out_ch: int, kernel_size: int = 3) -> nn.Sequential:
    """Conv → BN → ReLU: the paper follows every SA-MFCD / fusion conv with BN and ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


def deconv_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    """One SBN decoder: ConvTranspose2d(k4, s2, p1) doubles the resolution exactly."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_ch, out_ch, kernel_size=4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


def resize_to(x: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Resize a feature map to ``size`` (no-op when it already matches).

    With bilinear and align_corners=False, halving is exactly 2×2 average pooling and
    doubling is the usual half-pixel-centred interpolation, so maps stay aligned with
    the stride-2 deconvolutions whichever way they move.
    """
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    return F.interpolate(x, size=size, mode=mode, align_corners=False)
