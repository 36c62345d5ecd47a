"""Heatmap loss: the paper's MSE (Eq. 2) with Simple Baselines' target weights."""
from __future__ import annotations

import torch
from torch import nn


class JointsMSELoss(nn.Module):
    """``0.5 · mean over joints of MSE(w·pred, w·target)`` (SBN's JointsMSELoss).

    The mean runs over batch, joints and pixels, so the value does not depend on the
    heatmap size; joints with weight 0 (unlabelled or off the map) contribute nothing.
    """

    def __init__(self, use_target_weight: bool = True):
        super().__init__()
        self.use_target_weight = use_target_weight

    def forward(self, output: torch.Tensor, target: torch.Tensor, target_weight: torch.Tensor | None = None):
        diff = output.float() - target.float()
        if self.use_target_weight and target_weight is not None:
            diff = diff * target_weight.float().reshape(*target_weight.shape[:2], 1, 1)
        return 0.5 * (diff * diff).mean()
