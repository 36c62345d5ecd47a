"""Spatial-Attention-based Multi-Scale Feature Collection and Distribution (Fig. 1(c)).

Collection: the GCB outputs after Res-stages 1-3 are brought to stage-1 resolution
(stride 4), concatenated and fused by a 3×3 conv (→ ``fused_width``); the three
spatial attention heatmaps (SAHs) of the same GCBs are resized, concatenated and
fused by a 3×3 conv to one map.  Refinement: features × fused attention map.
Distribution: :meth:`SAMFCD.distribute` resizes the refined map to a decoder's
resolution; :class:`DecoderFusion` concatenates it with that decoder's
deconvolution output and fuses back to the decoder width with a 3×3 conv.
Every conv is followed by BN and ReLU, as the paper states.

How the lower-resolution feature maps are "up-sampled to match the highest one" the text leaves
open.  ``upsample="deconv"`` (the cards' reading) learns it the way the network's own decoders
up-sample: Simple Baselines deconvolutions (4×4, stride 2, BN, ReLU; ``fused_width`` = SBN's 256
channels at most, a narrower map keeping its width: 128 and 256 for ResNet-18/34), one for the
stride-8 map and two for the stride-16 map; this is what brings frpose-r34 to Table 2's size
(docs/design.md, "Model size").  ``upsample="interpolate"`` resizes them bilinearly (the reading of
earlier frpose versions, whose checkpoints record it); the one-channel attention maps are
interpolated in both readings.
"""
from __future__ import annotations

import torch
from torch import nn

from frpose_cli.net.layers import conv_bn_relu, deconv_bn_relu, resize_to

UPSAMPLES = ("deconv", "interpolate")


class SAMFCD(nn.Module):
    def __init__(self, in_channels: list[int], fused_width: int = 256,
                 resize_mode: str = "bilinear", attention_act: str = "relu", upsample: str = "interpolate"):
        super().__init__()
        if upsample not in UPSAMPLES:
            raise ValueError(f"upsample must be one of {UPSAMPLES}, not {upsample!r}")
        self.resize_mode = resize_mode
        # features i = 0, 1, 2 are at strides 4, 8, 16: i learned doublings bring each to stride 4
        self.upsamplers = nn.ModuleList()
        if upsample == "deconv":   # at most fused_width (SBN's 256) wide; a narrower map keeps its width
            widths = [in_channels[0]]
            for i, c in enumerate(in_channels[1:], start=1):
                w = min(c, fused_width)
                self.upsamplers.append(nn.Sequential(*[deconv_bn_relu(c if k == 0 else w, w) for k in range(i)]))
                widths.append(w)
            self.upsamplers.insert(0, nn.Identity())
            in_channels = widths
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
        if len(self.upsamplers):
            features = [up(f) for up, f in zip(self.upsamplers, features)]
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
