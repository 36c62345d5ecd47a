"""The encoder-decoder pose network of Fig. 1(a) and its ablations (Table 1).

One class covers the whole family; :class:`ArchSpec` says which parts are on:

=====================  ========  ========  =========
name                   decoders  GCB       fusion
=====================  ========  ========  =========
SBN                    3         no        none
FR-SBN                 5         no        none
FR-SBN+GCB             5         yes       none
FR-SBN+GCB+skip        5         yes       skip
FR-SBN+GCB+SA-MFCD     5         yes       sa_mfcd   (the paper's model, "frpose")
=====================  ========  ========  =========

Strides: stem 2, max-pool 4, stages 4/8/16/32; each decoder doubles, so decoder *i*
outputs at stride 32/2^i and three decoders end at 1/4, five at full resolution.
GCBs follow the four encoder stages and the first three decoders.  Fusion (skip or
SA-MFCD) enters decoders 2-4, i.e. strides 8, 4 and 2.  For the vanilla skip the
encoder map of the same stride is used: stage 2, stage 1 and, for stride 2 where
no Res-stage exists, the stem (conv1-BN-ReLU) output.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torchvision
from torch import nn

from frpose_cli.net.gcb import GlobalContextBlock
from frpose_cli.net.layers import deconv_bn_relu
from frpose_cli.net.sa_mfcd import SAMFCD, DecoderFusion

RESNET_DEPTHS = (18, 34, 50, 101, 152)
FUSIONS = ("none", "skip", "sa_mfcd")


@dataclass(frozen=True)
class ArchSpec:
    """Which parts of the network are on; every value comes from a model card (scripts/make_cards.py
    writes them, docs/design.md says why for the choices the paper leaves open)."""
    depth: int
    decoder_widths: tuple[int, ...]
    gcb: bool
    fusion: str
    gcb_ratio: float
    fused_width: int
    resize_mode: str
    attention_act: str
    fusion_decoders: tuple[int, ...]
    num_keypoints: int = 17    # the card's keypoint set decides (cards.ModelCard.from_dict)
    # SA-MFCD's up-sampling (net/sa_mfcd.py): the cards say "deconv"; a card dict without the field
    # (checkpoints of earlier frpose versions) was trained with interpolation
    fusion_upsample: str = "interpolate"

    def __post_init__(self):
        if self.depth not in RESNET_DEPTHS:
            raise ValueError(f"backbone depth must be one of {RESNET_DEPTHS}, not {self.depth}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, not {self.fusion!r}")
        if self.fusion != "none" and len(self.decoder_widths) < max(self.fusion_decoders):
            raise ValueError("fusion enters decoders 2-4: it needs at least 4 decoders")
        if self.fusion == "sa_mfcd" and not self.gcb:
            raise ValueError("SA-MFCD takes its attention maps from the GCBs: set gcb: true")
        object.__setattr__(self, "decoder_widths", tuple(self.decoder_widths))
        object.__setattr__(self, "fusion_decoders", tuple(self.fusion_decoders))

    @property
    def stride(self) -> int:
        """Input pixels per heatmap pixel."""
        return 32 // 2 ** len(self.decoder_widths)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["decoder_widths"] = list(self.decoder_widths)
        d["fusion_decoders"] = list(self.fusion_decoders)
        return d


def _resnet(depth: int) -> nn.Module:
    # weights=None: nothing is downloaded here; ImageNet weights are loaded explicitly
    # from a file by frpose_cli.weights.loader when the user asks for them.
    return getattr(torchvision.models, f"resnet{depth}")(weights=None)


class PoseNet(nn.Module):
    def __init__(self, spec: ArchSpec):
        super().__init__()
        self.spec = spec
        r = _resnet(spec.depth)
        self.stem = nn.Sequential(r.conv1, r.bn1, r.relu)     # stride 2
        self.maxpool = r.maxpool                               # stride 4
        self.stages = nn.ModuleList([r.layer1, r.layer2, r.layer3, r.layer4])
        expansion = 4 if spec.depth >= 50 else 1
        stage_ch = [64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion]

        widths = spec.decoder_widths
        in_ch = [stage_ch[3], *widths[:-1]]
        self.decoders = nn.ModuleList(deconv_bn_relu(i, o) for i, o in zip(in_ch, widths))
        n_gcb_dec = min(3, len(widths))
        if spec.gcb:
            self.encoder_gcbs = nn.ModuleList(GlobalContextBlock(c, spec.gcb_ratio) for c in stage_ch)
            self.decoder_gcbs = nn.ModuleList(
                GlobalContextBlock(widths[i], spec.gcb_ratio) for i in range(n_gcb_dec))

        self.sa_mfcd = None
        self.fusions = nn.ModuleDict()
        if spec.fusion == "sa_mfcd":
            self.sa_mfcd = SAMFCD(stage_ch[:3], spec.fused_width, spec.resize_mode, spec.attention_act,
                                  spec.fusion_upsample)
            for d in spec.fusion_decoders:
                self.fusions[str(d)] = DecoderFusion(widths[d - 1], spec.fused_width)
        elif spec.fusion == "skip":
            for d in spec.fusion_decoders:
                self.fusions[str(d)] = DecoderFusion(widths[d - 1], self._skip_channels(d, stage_ch))

        self.final_layer = nn.Conv2d(widths[-1], spec.num_keypoints, kernel_size=1)
        self._init_head()

    @staticmethod
    def _skip_channels(decoder: int, stage_ch: list[int]) -> int:
        stride = 32 // 2 ** decoder
        return 64 if stride == 2 else stage_ch[{4: 0, 8: 1, 16: 2}[stride]]

    def _init_head(self):
        # Simple Baselines' initialisation for everything after the encoder.
        for m in [*self.decoders.modules(), *self.fusions.modules(),
                  *(self.sa_mfcd.modules() if self.sa_mfcd else [])]:
            if isinstance(m, nn.ConvTranspose2d):
                nn.init.normal_(m.weight, std=0.001)
            elif isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.final_layer.weight, std=0.001)
        nn.init.zeros_(self.final_layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = self.stem(x)
        y = self.maxpool(stem)
        feats, sahs = [], []
        for i, stage in enumerate(self.stages):
            y = stage(y)
            if self.spec.gcb:
                y, sah = self.encoder_gcbs[i](y)
                sahs.append(sah)
            feats.append(y)

        refined = self.sa_mfcd(feats[:3], sahs[:3]) if self.sa_mfcd is not None else None
        for i, decoder in enumerate(self.decoders):
            d = i + 1
            y = decoder(y)
            if str(d) in self.fusions:
                if refined is not None:
                    extra = self.sa_mfcd.distribute(refined, tuple(y.shape[-2:]))
                else:
                    extra = self._skip_source(d, stem, feats)
                y = self.fusions[str(d)](y, extra)
            if self.spec.gcb and i < len(self.decoder_gcbs):
                y, _ = self.decoder_gcbs[i](y)
        return self.final_layer(y)

    @staticmethod
    def _skip_source(decoder: int, stem: torch.Tensor, feats: list[torch.Tensor]) -> torch.Tensor:
        stride = 32 // 2 ** decoder
        return stem if stride == 2 else feats[{4: 0, 8: 1, 16: 2}[stride]]
