"""Global Context Block (GCNet, Cao et al. 2019) as used in the paper's Fig. 1(b).

    F ──1×1 conv C→1──► SAH (logits) ──softmax over H·W──► weights
    context = Σ_positions F · weights                       (C-vector)
    context ─► 1×1 C→C·r ─► LayerNorm ─► ReLU ─► 1×1 C·r→C  (channel transform)
    F' = F + context (broadcast to every position)

Returns ``(F', sah)``: the spatial attention heatmap handed on to SA-MFCD is the
pre-softmax logit map (a softmax over positions is a distribution whose values
shrink with map size, so maps of different stages would not be comparable;
the logits are).  The last conv is zero-initialised so the block starts as the
identity and does not disturb an ImageNet-pretrained encoder.
"""
from __future__ import annotations

import torch
from torch import nn


class GlobalContextBlock(nn.Module):
    def __init__(self, channels: int, ratio: float = 0.25):
        super().__init__()
        hidden = max(1, int(round(channels * ratio)))
        self.attention = nn.Conv2d(channels, 1, kernel_size=1)
        self.transform = nn.Sequential(
            nn.Conv2d(channels, hidden, kernel_size=1),
            nn.LayerNorm([hidden, 1, 1]),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, kernel_size=1),
        )
        nn.init.kaiming_normal_(self.attention.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.attention.bias)
        nn.init.zeros_(self.transform[-1].weight)
        nn.init.zeros_(self.transform[-1].bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, c, h, w = x.shape
        sah = self.attention(x)                                   # N×1×H×W logits
        weights = torch.softmax(sah.reshape(n, 1, h * w), dim=-1)  # N×1×HW
        context = torch.bmm(x.reshape(n, c, h * w), weights.transpose(1, 2))  # N×C×1
        context = self.transform(context.reshape(n, c, 1, 1))
        return x + context, sah
