"""Crops → network input: the one place where pixel values become what a network was trained on.

``(x / 255 - mean) / std`` per channel (``card.normalize``), channels reversed first for weights
trained on BGR (``normalize["channel_order"] == "bgr"``: the original Simple Baselines files,
whose loader fed OpenCV's BGR images with ImageNet's RGB statistics applied by channel index).
Crops are RGB uint8 everywhere before this point (training samples, eval and predict crops, the
accuracy gate's and calibration's crops), so the channel order is handled here and nowhere else.
"""
from __future__ import annotations

import torch


def normalize_input(images01: torch.Tensor, normalize: dict) -> torch.Tensor:
    """RGB images in [0, 1], N×3×H×W → the network's input (see module docstring)."""
    if normalize.get("channel_order", "rgb") == "bgr":
        images01 = images01.flip(1)
    mean = torch.tensor(normalize["mean"], dtype=images01.dtype, device=images01.device).view(1, 3, 1, 1)
    std = torch.tensor(normalize["std"], dtype=images01.dtype, device=images01.device).view(1, 3, 1, 1)
    return (images01 - mean) / std


def crops_to_input(crops_uint8: torch.Tensor, normalize: dict) -> torch.Tensor:
    """uint8 RGB crops N×H×W×3 (on any device) → normalised float N×3×H×W network input.

    Computed as ``(x - 255·mean) · 1/(255·std)`` on the 0-255 values (float32 constants), the same
    mathematics as :func:`normalize_input` in two passes instead of three; training's inputs are
    bit for bit those of earlier frpose versions."""
    import numpy as np
    x = crops_uint8.permute(0, 3, 1, 2).float()
    if normalize.get("channel_order", "rgb") == "bgr":
        x = x.flip(1)
    mean = torch.from_numpy(np.array(normalize["mean"], np.float32) * 255).to(x.device).view(1, 3, 1, 1)
    inv_std = torch.from_numpy(1.0 / (np.array(normalize["std"], np.float32) * 255)).to(x.device).view(1, 3, 1, 1)
    return (x - mean) * inv_std
