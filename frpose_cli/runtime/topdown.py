"""Top-down inference shared by ``frpose eval`` and ``frpose predict``: network → heatmaps
(with the flip test) → keypoints in image pixels.

Public API (stable)::

    run_heatmaps(model, images, flip=True, flip_index=None, stride=1, codec=None, shift=None)
        -> torch.Tensor (N, K, Hh, Wh), float32 on the CPU
    flip_shift(stride)                 -> float   heatmap-pixel shift for SBN-style codecs
    flip_shift_for_codec(codec)        -> float   the shift right for any codec (0 for UDP)
    flip_back(heatmaps, flip_index, shift) -> heatmaps of a flipped crop mapped back
    shift_heatmaps_x(heatmaps, shift)  -> heatmaps moved right by ``shift`` pixels
    decode_to_image(codec, heatmaps, centers, scales, rotations=None)
        -> (keypoints float32 (N, K, 2) image pixels, scores float32 (N, K))

Flip test and its shift (derivation in docs/evaluation.md)
----------------------------------------------------------
The crop is mirrored as an array: input pixel x ↦ W-1-x (pixel centres at integers, see
:mod:`frpose_cli.data.geometry`).  The heatmaps of the mirrored crop are mirrored back as an
array too: heatmap pixel u ↦ Wh-1-u.  A codec reads heatmap coordinate u as input
coordinate x = a·u + b (SBN/DARK: a = stride, b = 0; UDP: a = (W-1)/(Wh-1), b = 0).  For
the mirrored-back map to line up with the unflipped one, it must be moved right by

    d = (W - 1 - 2b)/a - (Wh - 1)   heatmap pixels,

which is 1 - 1/stride for SBN/DARK: 0.75 at stride 4, **0 at stride 1** (full-resolution
heatmaps need no shift), and 0 for UDP at any stride.  The ``sbn`` codec, whose targets sit
on whole heatmap pixels, rounds it half up (1 at stride 4, as Simple Baselines; 0 at
stride 1).  Fractional shifts are applied by linear interpolation along x; the edge
column is repeated (as SBN does for its 1-pixel shift).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from frpose_cli.data.geometry import transform_points, warp_matrix


def flip_shift(stride: int) -> float:
    """Exact shift (heatmap pixels, rightwards) that aligns a mirrored-back heatmap at
    ``stride`` for codecs that read heatmap pixel u as input pixel u·stride (dark; sbn
    rounds it, see :func:`flip_shift_for_codec`)."""
    return 1.0 - 1.0 / float(stride)


def flip_shift_for_codec(codec) -> float:
    """The aligning shift for ``codec`` from its own heatmap→input map (x = a·u + b).

    The ``sbn`` codec centres its Gaussians on whole heatmap pixels (``round(x/stride)``),
    so a joint's mirrored-back peak sits a whole number of pixels off (1 for three of
    every four sub-pixel positions at stride 4, 0 for the other): its shift is the derived
    one rounded half up, which keeps averaged peaks sharp.  That is Simple Baselines'
    one pixel at stride 4 and 0 at stride 1.  Sub-pixel codecs (dark, udp) take it exactly.
    """
    (_, w), (_, wh) = codec.input_size, codec.heatmap_size
    x0, x1 = codec.from_heatmap(np.array([[0.0, 0.0], [1.0, 0.0]], np.float32))[:, 0].astype(np.float64)
    a, b = x1 - x0, x0
    exact = round(float((w - 1 - 2 * b) / a - (wh - 1)), 4)  # float32 maps: drop 1e-6 noise
    return float(math.floor(exact + 0.5)) if getattr(codec, "name", "") == "sbn" else exact


def shift_heatmaps_x(heatmaps: torch.Tensor, shift: float) -> torch.Tensor:
    """``out[..., u] = heatmaps[..., u - shift]`` with linear interpolation, edges repeated.

    An integer shift is an exact copy of columns (as Simple Baselines' one-pixel shift)."""
    if shift == 0:
        return heatmaps
    w = heatmaps.shape[-1]
    src = torch.arange(w, dtype=torch.float64) - float(shift)
    src = src.clamp(0, w - 1)
    lo = src.floor().long()
    hi = (lo + 1).clamp(max=w - 1)
    frac = (src - lo.double()).to(heatmaps.dtype).to(heatmaps.device)
    lo, hi = lo.to(heatmaps.device), hi.to(heatmaps.device)
    left, right = heatmaps.index_select(-1, lo), heatmaps.index_select(-1, hi)
    return torch.where(frac == 0, left, left * (1 - frac) + right * frac)


def flip_back(heatmaps: torch.Tensor, flip_index, shift: float = 0.0) -> torch.Tensor:
    """Heatmaps predicted on a mirrored crop → the unmirrored crop's frame: mirror along x,
    swap left/right joints (``flip_index`` from ``KeypointSpec.flip_index()``), shift."""
    out = heatmaps.flip(-1)
    if flip_index is not None:
        out = out[:, list(flip_index)]
    return shift_heatmaps_x(out, shift)


@torch.inference_mode()
def run_heatmaps(model: torch.nn.Module, images: torch.Tensor, flip: bool = True, flip_index=None,
                 stride: int = 1, codec=None, shift: float | None = None) -> torch.Tensor:
    """Network heatmaps for a batch of normalised crops ``images`` (N, 3, H, W).

    The batch goes to the model's device; heatmaps come back float32 on the CPU.  With
    ``flip`` the mirrored crops run in the same forward pass and the average of both is
    returned; ``flip_index`` (required for ``flip``) swaps left/right joints.  The shift
    is ``shift`` if given, else the one right for ``codec`` if given, else
    :func:`flip_shift` of ``stride``.
    """
    device = next(model.parameters()).device
    images = images.to(device, non_blocking=True)
    n = images.shape[0]
    batch = torch.cat([images, images.flip(-1)]) if flip else images
    out = model(batch).float()
    heatmaps = out[:n]
    if flip:
        if flip_index is None:
            raise ValueError("flip test needs flip_index (KeypointSpec.flip_index())")
        if shift is None:
            shift = flip_shift_for_codec(codec) if codec is not None else flip_shift(stride)
        heatmaps = (heatmaps + flip_back(out[n:], flip_index, shift)) * 0.5
    return heatmaps.cpu()


def decode_to_image(codec, heatmaps, centers, scales, rotations=None):
    """Decode heatmaps with ``codec`` and map crop pixels back to image pixels.

    ``centers``/``scales`` (N, 2) are the crops' ``geometry.box_to_center_scale`` values,
    ``rotations`` (N,) degrees (default 0).  The crop→image matrix is the inverse of the
    one the crop was cut with (UDP's for UDP codecs).
    Returns ``(keypoints float32 (N, K, 2), scores float32 (N, K))``.
    """
    kpts, scores = codec.decode(heatmaps)
    centers = np.asarray(centers, dtype=np.float64).reshape(-1, 2)
    scales = np.asarray(scales, dtype=np.float64).reshape(-1, 2)
    rots = np.zeros(len(centers)) if rotations is None else np.asarray(rotations, np.float64).reshape(-1)
    h, w = codec.input_size
    out = np.empty_like(kpts, dtype=np.float32)
    for i in range(len(kpts)):
        inv = warp_matrix(centers[i], scales[i], rots[i], (w, h), inv=True, udp=codec.use_udp)
        out[i] = transform_points(kpts[i].astype(np.float64), inv)
    return out, scores
