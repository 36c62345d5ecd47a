"""RTMDet (Lyu et al., 2022), the one-stage detector of mmpose's RTMPose pipeline, as mmdet 3.x builds it
for inference: a CSPNeXt backbone (P5), a CSPNeXt PAFPN neck and the "separate BN" head, whose
convolutions may be shared across the three levels while each level keeps its own batch norms.

Module names are mmdet's, so a published checkpoint's ``state_dict`` loads as it is (``backbone.stem.0.conv
.weight``, ``bbox_head.rtm_cls.0.bias``, ...).  :func:`spec_from_state` reads every width and depth from the
file itself; the two things a file cannot say, whether box distances go through ``exp`` and the
depthwise layout, come from the named detector (:data:`frpose_cli.inference.rtmdet_detector.FAMILIES`),
and a file whose layout disagrees is refused.  Decoding, NMS and the letterbox live with the detector
(:mod:`frpose_cli.inference.rtmdet_detector`); this module is the network alone.

Each ``conv → bn → act`` unit is an ``nn.Sequential`` (mmcv's ``ConvModule`` order, SiLU, BN eps 1e-5:
the configs' ``SyncBN`` with its defaults), so :func:`frpose_cli.net.folding.fold_batchnorm` folds it.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

BN_EPS = 1e-5                  # dict(type='SyncBN') in the configs: torch's default eps
SPP_KERNELS = (5, 9, 13)       # CSPNeXt's SPP bottleneck before its last stage
STRIDES = (8, 16, 32)          # the head's three levels (P3-P5)


def conv_bn_act(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """mmcv's ConvModule with a norm: a bias-free conv, BatchNorm, SiLU."""
    return nn.Sequential(OrderedDict(conv=nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                                     bn=nn.BatchNorm2d(cout, eps=BN_EPS), activate=nn.SiLU(inplace=True)))


def separable(cin: int, cout: int, k: int, stride: int = 1) -> nn.Sequential:
    """mmcv's DepthwiseSeparableConvModule: a depthwise k×k unit, then a pointwise 1×1 unit."""
    return nn.Sequential(OrderedDict(depthwise_conv=conv_bn_act(cin, cin, k, stride, groups=cin),
                                     pointwise_conv=conv_bn_act(cin, cout, 1)))


def conv_unit(depthwise: bool, cin: int, cout: int, k: int, stride: int = 1) -> nn.Sequential:
    return separable(cin, cout, k, stride) if depthwise else conv_bn_act(cin, cout, k, stride)


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation without the squeeze: x × hardsigmoid(1×1 conv(global mean of x))."""

    def __init__(self, channels: int):
        super().__init__()
        self.fc = nn.Conv2d(channels, channels, 1)
        self.act = nn.Hardsigmoid()

    def forward(self, x):
        return x * self.act(self.fc(x.mean((2, 3), keepdim=True)))


class CSPNeXtBlock(nn.Module):
    def __init__(self, channels: int, add_identity: bool, depthwise: bool):
        super().__init__()
        self.conv1 = conv_unit(depthwise, channels, channels, 3)
        self.conv2 = separable(channels, channels, 5)   # always depthwise 5×5 (the "NeXt")
        self.add_identity = add_identity

    def forward(self, x):
        out = self.conv2(self.conv1(x))
        return out + x if self.add_identity else out


class CSPLayer(nn.Module):
    def __init__(self, cin: int, cout: int, mid: int, blocks: int, add_identity: bool, depthwise: bool,
                 attention: bool):
        super().__init__()
        self.main_conv = conv_bn_act(cin, mid, 1)
        self.short_conv = conv_bn_act(cin, mid, 1)
        self.final_conv = conv_bn_act(2 * mid, cout, 1)
        self.blocks = nn.Sequential(*(CSPNeXtBlock(mid, add_identity, depthwise) for _ in range(blocks)))
        self.attention = ChannelAttention(2 * mid) if attention else None

    def forward(self, x):
        y = torch.cat((self.blocks(self.main_conv(x)), self.short_conv(x)), 1)
        return self.final_conv(y if self.attention is None else self.attention(y))


class SPPBottleneck(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        mid = channels // 2
        self.conv1 = conv_bn_act(channels, mid, 1)
        self.poolings = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in SPP_KERNELS)
        self.conv2 = conv_bn_act(mid * (len(SPP_KERNELS) + 1), channels, 1)

    def forward(self, x):
        x = self.conv1(x)
        return self.conv2(torch.cat([x] + [pool(x) for pool in self.poolings], 1))


@dataclass(frozen=True)
class RTMDetSpec:
    """Every size of an RTMDet, as read from a checkpoint (:func:`spec_from_state`)."""
    stem: tuple                # (middle, out) channels of the three stem convs
    stages: tuple              # per stage: (out channels, CSP middle channels, blocks)
    depthwise: bool            # separable convs in the stages, neck and head (nano)
    attention: bool            # channel attention in the backbone's CSP layers
    neck_mid: tuple            # CSP middle channels of the neck's 4 CSP layers (top-down, then bottom-up)
    neck_blocks: int
    neck_out: int
    head_feat: int
    head_convs: int            # stacked convs per branch and level
    num_classes: int
    pred_kernel: int
    share_conv: bool           # the head's convs shared by the levels (their batch norms are not)
    exp_on_reg: bool           # box distances = exp(output) × stride (m and larger) or output × stride

    @property
    def out_channels(self) -> tuple:
        return tuple(s[0] for s in self.stages[1:])


class CSPNeXt(nn.Module):
    def __init__(self, spec: RTMDetSpec):
        super().__init__()
        mid, out = spec.stem
        self.stem = nn.Sequential(conv_bn_act(3, mid, 3, 2), conv_bn_act(mid, mid, 3), conv_bn_act(mid, out, 3))
        cin = out
        for i, (cout, csp_mid, blocks) in enumerate(spec.stages):
            last = i == len(spec.stages) - 1
            parts = [conv_unit(spec.depthwise, cin, cout, 3, 2)] + ([SPPBottleneck(cout)] if last else [])
            parts.append(CSPLayer(cout, cout, csp_mid, blocks, not last, spec.depthwise, spec.attention))
            self.add_module(f"stage{i + 1}", nn.Sequential(*parts))
            cin = cout

    def forward(self, x):
        x = self.stage1(self.stem(x))
        c3 = self.stage2(x)
        c4 = self.stage3(c3)
        return c3, c4, self.stage4(c4)


class CSPNeXtPAFPN(nn.Module):
    def __init__(self, spec: RTMDetSpec):
        super().__init__()
        c3, c4, c5 = spec.out_channels
        mids, dw, n = spec.neck_mid, spec.depthwise, spec.neck_blocks
        self.reduce_layers = nn.ModuleList([conv_bn_act(c5, c4, 1), conv_bn_act(c4, c3, 1)])
        self.top_down_blocks = nn.ModuleList([CSPLayer(2 * c4, c4, mids[0], n, False, dw, False),
                                              CSPLayer(2 * c3, c3, mids[1], n, False, dw, False)])
        self.downsamples = nn.ModuleList([conv_unit(dw, c3, c3, 3, 2), conv_unit(dw, c4, c4, 3, 2)])
        self.bottom_up_blocks = nn.ModuleList([CSPLayer(2 * c3, c4, mids[2], n, False, dw, False),
                                               CSPLayer(2 * c4, c5, mids[3], n, False, dw, False)])
        self.out_convs = nn.ModuleList(conv_unit(dw, c, spec.neck_out, 3) for c in (c3, c4, c5))

    def forward(self, feats):
        c3, c4, c5 = feats
        up = nn.functional.interpolate
        p5 = self.reduce_layers[0](c5)                     # the reduced top map is what the bottom-up path reads
        p4 = self.top_down_blocks[0](torch.cat([up(p5, scale_factor=2.0, mode="nearest"), c4], 1))
        p4r = self.reduce_layers[1](p4)
        p3 = self.top_down_blocks[1](torch.cat([up(p4r, scale_factor=2.0, mode="nearest"), c3], 1))
        n4 = self.bottom_up_blocks[0](torch.cat([self.downsamples[0](p3), p4r], 1))
        n5 = self.bottom_up_blocks[1](torch.cat([self.downsamples[1](n4), p5], 1))
        return tuple(conv(x) for conv, x in zip(self.out_convs, (p3, n4, n5)))


class SepBNHead(nn.Module):
    """Per level: ``head_convs`` 3×3 units for classes and for boxes, then one prediction conv each.
    Returns per level (class logits, box distances in input pixels: left, top, right, bottom)."""

    def __init__(self, spec: RTMDetSpec):
        super().__init__()
        dw, feat, k = spec.depthwise, spec.head_feat, spec.pred_kernel

        def branch():
            return nn.ModuleList(nn.ModuleList(conv_unit(dw, spec.neck_out if i == 0 else feat, feat, 3)
                                               for i in range(spec.head_convs)) for _ in STRIDES)
        self.cls_convs, self.reg_convs = branch(), branch()
        self.rtm_cls = nn.ModuleList(nn.Conv2d(feat, spec.num_classes, k, padding=k // 2) for _ in STRIDES)
        self.rtm_reg = nn.ModuleList(nn.Conv2d(feat, 4, k, padding=k // 2) for _ in STRIDES)
        if spec.share_conv:   # mmdet shares the conv of each unit, not its batch norm
            for level in range(1, len(STRIDES)):
                for i in range(spec.head_convs):
                    self.cls_convs[level][i].conv = self.cls_convs[0][i].conv
                    self.reg_convs[level][i].conv = self.reg_convs[0][i].conv
        self.exp_on_reg = spec.exp_on_reg

    def forward(self, feats):
        out = []
        for level, (x, stride) in enumerate(zip(feats, STRIDES)):
            c, r = x, x
            for unit in self.cls_convs[level]:
                c = unit(c)
            for unit in self.reg_convs[level]:
                r = unit(r)
            # the prediction convs may stay float32 in a reduced-precision set-up: their input follows them
            reg = self.rtm_reg[level](r.to(self.rtm_reg[level].weight.dtype))
            cls = self.rtm_cls[level](c.to(self.rtm_cls[level].weight.dtype))
            out.append((cls, (reg.exp() if self.exp_on_reg else reg) * stride))
        return out


class RTMDet(nn.Module):
    """The network: a normalised BGR batch (N, 3, S, S) → per level (logits (N, C, h, w), distances (N, 4, h, w))."""

    def __init__(self, spec: RTMDetSpec):
        super().__init__()
        self.spec = spec
        self.backbone = CSPNeXt(spec)
        self.neck = CSPNeXtPAFPN(spec)
        self.bbox_head = SepBNHead(spec)

    def forward(self, x):
        return self.bbox_head(self.neck(self.backbone(x)))


def _out(state: dict, prefix: str) -> int:
    """Output channels of the conv unit at ``prefix`` (plain or separable)."""
    for key in (f"{prefix}.conv.weight", f"{prefix}.pointwise_conv.conv.weight"):
        if key in state:
            return int(state[key].shape[0])
    raise KeyError(prefix)


def _count(state: dict, pattern: str) -> int:
    found = {int(m.group(1)) for k in state for m in [re.match(pattern, k)] if m}
    return max(found) + 1 if found else 0


def spec_from_state(state: dict, exp_on_reg: bool) -> RTMDetSpec:
    """The :class:`RTMDetSpec` a mmdet RTMDet ``state_dict`` was saved from (KeyError/ValueError when it is
    not one: the caller words the error).  ``exp_on_reg`` is the named detector's (not in the file)."""
    if not isinstance(exp_on_reg, bool):
        raise TypeError("exp_on_reg must be a bool")
    if "backbone.stage5.0.conv.weight" in state or "backbone.stage5.0.depthwise_conv.conv.weight" in state:
        raise ValueError("a P6 (1280 px, four-level) RTMDet; only P5 models are supported")
    depthwise = "backbone.stage1.0.depthwise_conv.conv.weight" in state
    stages = []
    for i in range(1, 5):
        csp = f"backbone.stage{i}.{2 if i == 4 else 1}"
        stages.append((_out(state, f"backbone.stage{i}.0"), _out(state, f"{csp}.main_conv"),
                       _count(state, rf"{re.escape(csp)}\.blocks\.(\d+)\.")))
    neck_mid = tuple(_out(state, f"neck.{part}.{j}.main_conv")
                     for part in ("top_down_blocks", "bottom_up_blocks") for j in (0, 1))
    cls0 = state["bbox_head.rtm_cls.0.weight"]
    conv_keys = [f"bbox_head.cls_convs.{lvl}.0.conv.weight" for lvl in range(len(STRIDES))]
    share = all(k in state for k in conv_keys) and all(torch.equal(state[conv_keys[0]], state[k]) for k in conv_keys)
    spec = RTMDetSpec(stem=(_out(state, "backbone.stem.0"), _out(state, "backbone.stem.2")), stages=tuple(stages),
                      depthwise=depthwise, attention="backbone.stage1.1.attention.fc.weight" in state,
                      neck_mid=neck_mid, neck_blocks=_count(state, r"neck\.top_down_blocks\.0\.blocks\.(\d+)\."),
                      neck_out=_out(state, "neck.out_convs.0"), head_feat=_out(state, "bbox_head.cls_convs.0.0"),
                      head_convs=_count(state, r"bbox_head\.cls_convs\.0\.(\d+)\."), num_classes=int(cls0.shape[0]),
                      pred_kernel=int(cls0.shape[-1]), share_conv=share, exp_on_reg=exp_on_reg)
    if min(s[2] for s in stages) < 1 or spec.neck_blocks < 1 or spec.head_convs < 1:
        raise ValueError("a CSP layer or head branch without blocks")
    return spec


def spec_for(widen: float, deepen: float, depthwise: bool, neck_out: int, share_conv: bool, exp_on_reg: bool,
             num_classes: int = 1) -> RTMDetSpec:
    """The spec mmdet's builders give for a config's factors (CSPNeXt P5, expand ratio 0.5, two head convs)."""
    if not (0 < widen <= 2 and 0 < deepen <= 2):
        raise ValueError("widen and deepen must be in (0, 2]")
    c = [int(x * widen) for x in (64, 128, 256, 512, 1024)]
    blocks = [max(round(n * deepen), 1) for n in (3, 6, 6, 3)]
    return RTMDetSpec(stem=(int(64 * widen // 2), c[0]), stages=tuple((c[i + 1], c[i + 1] // 2, blocks[i]) for i in range(4)),
                      depthwise=depthwise, attention=True, neck_mid=(c[3] // 2, c[2] // 2, c[3] // 2, c[4] // 2),
                      neck_blocks=max(round(3 * deepen), 1), neck_out=neck_out, head_feat=neck_out, head_convs=2,
                      num_classes=num_classes, pred_kernel=1, share_conv=share_conv, exp_on_reg=exp_on_reg)


# The published person detectors' configs (mmpose projects/rtmpose/rtmdet/person/): for timing without a file.
PUBLISHED = {"rtmdet-nano": dict(widen=0.25, deepen=0.33, depthwise=True, neck_out=64, share_conv=False,
                                 exp_on_reg=False),
             "rtmdet-m": dict(widen=0.75, deepen=0.67, depthwise=False, neck_out=192, share_conv=True,
                              exp_on_reg=True)}
