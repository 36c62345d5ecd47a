"""Spatial-Attention-based Multi-Scale Feature Collection and Distribution (Fig. 1(c)).

Collection: the GCB outputs after Res-stages 1-3 are resized to stage-1 resolution
(stride 4), concatenated and fused by a 3×3 conv (→ ``fused_width``); the three
spatial attention heatmaps (SAHs) of the same GCBs are resized, concatenated and
fused by a 3×3 conv to one map.  Refinement: features × fused attention map.
Distribution: :meth:`SAMFCD.distribute` resizes the refined map to a decoder's
resolution; :class:`DecoderFusion` concatenates it with that decoder's
deconvolution output and fuses back to the decoder width with a 3×3 conv.
Every conv is followed by BN and ReLU, as the paper states.
"""
from __future__ import annotations

import torch
from torch import nn

from frpose_cli.net.layers import conv_bn_relu, resize_to


class SAMFCD(nn.Module):
    def __init__(self, in_channels: list[int], fused_width: int = 256,
                 resize_mode: str = "bilinear", attention_act: str = "relu"):
        super().__init__()
        self.resize_mode = resize_mode
        self.feature_fuse = conv_bn_relu(sum(in_channels), fused_width, 3)
        if attention_act == "relu":      # the paper: every conv → BN → ReLU
            self.attention_fuse = conv_bn_relu(len(in_channels), 1, 3)
        elif attention_act == "sigmoid":  # a bounded gate, kept as a switch for ablations
            self.attention_fuse = nn.Sequential(
                nn.Conv2d(len(in_channels), 1, 3, padding=1, bias=False),
                nn.BatchNorm2d(1), nn.Sigmoid())
        else:
            raise ValueError(f"attention_act must be 'relu' or 'sigmoid', not {attention_act!r}")
        self.out_channels = fused_width

    def forward(self, features: list[torch.Tensor], sahs: list[torch.Tensor]) -> torch.Tensor:
        size = tuple(features[0].shape[-2:])
        feats = torch.cat([resize_to(f, size, self.resize_mode) for f in features], dim=1)
        maps = torch.cat([resize_to(s, size, self.resize_mode) for s in sahs], dim=1)
        return self.feature_fuse(feats) * self.attention_fuse(maps)

    def distribute(self, refined: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return resize_to(refined, size, self.resize_mode)


class DecoderFusion(nn.Module):
    """Concatenate an extra map into a decoder and fuse back to its width (3×3 conv-BN-ReLU).

    Used both for SA-MFCD distribution and for the vanilla skip connections of the
    FR-SBN+GCB+skip ablation, so the two differ only in what they feed in.
    """

    def __init__(self, decoder_width: int, extra_channels: int):
        super().__init__()
        self.fuse = conv_bn_relu(decoder_width + extra_channels, decoder_width, 3)

    def forward(self, decoded: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([decoded, extra], dim=1))
