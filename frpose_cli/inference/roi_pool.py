"""RoIAlign as a weighted gather over channels_last features, and a box head that reads its output as it lies.

torchvision's CPU RoIAlign kernel walks the boxes one channel plane at a time on one core: for the
R50-FPN's 1000 proposals an image it took 250-290 ms, a fifth of a bf16 detection on 2 cores, with no
FLOPs to show for it.  Every output value of RoIAlign is a weighted sum of at most 16 feature pixels
(2×2 samples a bin, 4 bilinear neighbours each), and the 16 (pixel, weight) pairs of a bin do not depend
on the channel.  So the pairs are worked out once per bin (a few ms of tensor arithmetic over
1000 × 49 bins), and the sum over all 256 channels at once is ``embedding_bag``'s weighted-sum mode over
the feature map seen as a table of pixels × channels.  In channels_last that table is the feature map
itself (no copy), each row a contiguous 1 KB vector: fbgemm's kernels sum them on every core, 25-30 ms
for the same boxes.

The numbers are RoIAlign's (``aligned=False``, as MultiScaleRoIAlign calls it) up to float rounding: the
same sample positions, bilinear weights, out-of-range rule and ÷4, summed in another order
(tests/test_detector_setups.py compares them on random boxes, including boxes reaching past the image).

The pooled features come out channels_last, (boxes, 7, 7, channels) in memory.  TwoMLPHead would
flatten them in (channels, 7, 7) order, a 50 MB copy an image; :class:`ChannelsLastBoxHead` instead has
its first layer's weight columns put once in (7, 7, channels) order, so the flatten is a view and the
product is the same up to float rounding.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _axis_samples(lo, hi, scale: float, bins: int, grid: int, size: int):
    """Along one axis of every box: the two neighbouring pixel indices of each sample point and their
    bilinear weights, shaped (boxes, bins, grid, 2); torchvision's RoIAlign rules (aligned=False)."""
    start = lo * scale
    length = torch.clamp(hi * scale - start, min=1.0)      # boxes under a pixel are stretched to one
    step = length / bins
    b = torch.arange(bins, dtype=lo.dtype, device=lo.device)[None, :, None]
    g = torch.arange(grid, dtype=lo.dtype, device=lo.device)[None, None, :]
    pos = start[:, None, None] + b * step[:, None, None] + (g + 0.5) * step[:, None, None] / grid
    inside = (pos >= -1.0) & (pos <= size)                  # a sample further out contributes 0
    pos = pos.clamp(min=0)
    low = pos.long()
    last = low >= size - 1                                  # on the last pixel: both neighbours are it
    low = torch.where(last, size - 1, low)
    high = torch.where(last, size - 1, low + 1)
    frac = torch.where(last, 0.0, pos - low.to(pos.dtype))
    weights = torch.stack([1 - frac, frac], -1) * inside[..., None]
    return torch.stack([low, high], -1), weights


def roi_align_gather(feature: torch.Tensor, rois: torch.Tensor, scale: float, output_size, sampling_ratio: int):
    """RoIAlign of ``rois`` (K, 5: image index, x1, y1, x2, y2) on ``feature`` (N, C, H, W), returned as
    (K, C, out_h, out_w) in channels_last memory."""
    n, c, h, w = feature.shape
    out_h, out_w = output_size
    table = feature.permute(0, 2, 3, 1).reshape(n * h * w, c)      # a view when channels_last
    k = len(rois)
    rows, wy = _axis_samples(rois[:, 2], rois[:, 4], scale, out_h, sampling_ratio, h)
    cols, wx = _axis_samples(rois[:, 1], rois[:, 3], scale, out_w, sampling_ratio, w)
    first = (rois[:, 0].long() * (h * w)).view(k, 1, 1, 1, 1, 1, 1)
    # (box, bin row, bin col, sample row, neighbour row, sample col, neighbour col)
    index = first + rows.view(k, out_h, 1, sampling_ratio, 2, 1, 1) * w + cols.view(k, 1, out_w, 1, 1, sampling_ratio, 2)
    weight = (wy.view(k, out_h, 1, sampling_ratio, 2, 1, 1) * wx.view(k, 1, out_w, 1, 1, sampling_ratio, 2)
              / (sampling_ratio * sampling_ratio))
    per_bin = 4 * sampling_ratio * sampling_ratio
    pooled = F.embedding_bag(index.reshape(-1, per_bin), table, per_sample_weights=weight.reshape(-1, per_bin).to(table.dtype),
                             mode="sum")
    return pooled.view(k, out_h, out_w, c).permute(0, 3, 1, 2)


class GatherRoIPool(nn.Module):
    """torchvision's MultiScaleRoIAlign (same levels, scales and boxes) pooled by :func:`roi_align_gather`.
    On CUDA, or with an adaptive sampling grid (``sampling_ratio`` ≤ 0), the pool runs as it is."""

    def __init__(self, pool: nn.Module):
        super().__init__()
        self.pool = pool

    def forward(self, features, boxes, image_shapes):
        pool = self.pool
        levels = [v for k, v in features.items() if k in pool.featmap_names]
        if pool.sampling_ratio <= 0 or levels[0].is_cuda:
            return pool(features, boxes, image_shapes)
        if pool.scales is None or pool.map_levels is None:   # the pool's own level rules, set up as it would
            from torchvision.ops.poolers import _setup_scales
            pool.scales, pool.map_levels = _setup_scales(levels, image_shapes, pool.canonical_scale,
                                                         pool.canonical_level)
        rois = torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], 1) for i, b in enumerate(boxes)])
        level_of = pool.map_levels(boxes) if len(levels) > 1 else torch.zeros(len(rois), dtype=torch.long)
        out_h, out_w = pool.output_size
        # every level's boxes are pooled into their rows; every box is on exactly one level
        result = torch.empty(len(rois), out_h, out_w, levels[0].shape[1], dtype=levels[0].dtype)
        for level, (feature, scale) in enumerate(zip(levels, pool.scales)):
            chosen = torch.where(level_of == level)[0]
            if len(chosen) == len(rois):       # all boxes (or none) on one level: nothing to put in place
                return roi_align_gather(feature, rois, scale, (out_h, out_w), pool.sampling_ratio)
            if len(chosen):
                pooled = roi_align_gather(feature, rois[chosen], scale, (out_h, out_w), pool.sampling_ratio)
                result.index_copy_(0, chosen, pooled.permute(0, 2, 3, 1))
        return result.permute(0, 3, 1, 2)


class ChannelsLastBoxHead(nn.Module):
    """torchvision's TwoMLPHead (flatten, fc6, ReLU, fc7, ReLU) reading pooled features in (7, 7, channels)
    order: fc6's weight columns are permuted once to match, so no copy is made before it."""

    def __init__(self, head: nn.Module, channels: int, output_size):
        super().__init__()
        out_h, out_w = output_size
        self.fc6 = nn.Linear(head.fc6.in_features, head.fc6.out_features, bias=head.fc6.bias is not None)
        with torch.no_grad():
            weight = head.fc6.weight.view(-1, channels, out_h, out_w).permute(0, 2, 3, 1)
            self.fc6.weight.copy_(weight.reshape(head.fc6.weight.shape))
            if head.fc6.bias is not None:
                self.fc6.bias.copy_(head.fc6.bias)
        self.fc6.to(head.fc6.weight.dtype)
        self.fc7 = head.fc7

    def forward(self, x):
        x = x.permute(0, 2, 3, 1).reshape(len(x), -1)    # a view of channels_last pooled features
        return F.relu(self.fc7(F.relu(self.fc6(x))))
