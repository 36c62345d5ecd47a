"""Heatmap codecs: keypoints ↔ Gaussian heatmaps, one object per scheme.

A codec owns the input size, heatmap stride and σ (in heatmap pixels, as in the card:
8 at 256×192 and 12 at 384×288 for full-resolution cards, 2/3 for SBN's stride 4) and
does both directions, so training targets and inference decoding cannot disagree.

=========  ========================================  ==========================================
codec      encode (Gaussian centre in heatmap pixels)  decode (:mod:`frpose_cli.data.subpixel`)
=========  ========================================  ==========================================
sbn        ``round(p / stride)`` (integer, as SBN)   argmax + ¼-pixel step toward the higher
                                                     neighbour (SBN's rule), ``× stride``
dark       ``p / stride`` (sub-pixel)                argmax + Taylor step on the log of the
                                                     blurred heatmap, as mmpose (DARK, 2020)
udp        ``p · (Wh-1)/(W-1)`` (sub-pixel)          mmpose's UDP step, mapped back by
                                                     ``(W-1)/(Wh-1)``; crops ``udp=True``
dark-clip  as dark                                   frpose's bounded Taylor step (±1 px)
udp-clip   as udp                                    frpose's bounded Taylor step (±1 px)
=========  ========================================  ==========================================

Every codec: the Gaussian is cut at 3σ in x and y (SBN's square window); a joint has
weight 1 when it is labelled (``visible > 0``) and its 3σ window reaches the heatmap
(SBN's rule: a joint just outside the crop still pulls its border pixels), else weight 0
and an all-zero heatmap.  Keeping the border Gaussian matters most at stride 1, where
"centre on the map" would drop joints only 0.5 px outside it (docs/evaluation.md, oracle).  Coordinates follow the pixel-centre
convention of :mod:`frpose_cli.data.geometry`.  ``encode_torch`` builds the same targets for a
batch on the training device (3.3 MB a sample at 17×256×192 need not cross the bus).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from frpose_cli.errors import FrposeError
from frpose_cli.data.subpixel import blur_kernel_size, dark_clip, dark_reference, quarter_offset, udp_reference


class HeatmapCodec:
    name = "base"
    use_udp = False
    truncate = 3.0  # Gaussian support in σ

    def __init__(self, input_size, stride: int, sigma: float):
        h, w = (int(v) for v in input_size)
        stride = int(stride)
        if stride < 1 or h % stride or w % stride:
            raise FrposeError(f"heatmap stride {stride} does not divide input size {h}x{w}")
        if not sigma > 0:
            raise FrposeError(f"heatmap sigma must be positive (got {sigma})")
        self.input_size = (h, w)
        self.stride = stride
        self.sigma = float(sigma)
        self.heatmap_size = (h // stride, w // stride)

    def __repr__(self):
        h, w = self.input_size
        return f"{type(self).__name__}(input {h}x{w}, stride {self.stride}, sigma {self.sigma:g})"

    def to_dict(self) -> dict:
        return {"name": self.name, "sigma": self.sigma, "stride": self.stride}

    # --- coordinate maps between crop input pixels and heatmap pixels -----------------
    def _scale_xy(self) -> tuple[float, float]:
        """Heatmap pixels per input pixel in x and y."""
        return 1.0 / self.stride, 1.0 / self.stride

    def to_heatmap(self, points):
        sx, sy = self._scale_xy()
        return points * points.new_tensor([sx, sy]) if torch.is_tensor(points) \
            else np.asarray(points, np.float32) * np.array([sx, sy], np.float32)

    def from_heatmap(self, points):
        sx, sy = self._scale_xy()
        return np.asarray(points, np.float32) / np.array([sx, sy], np.float32)

    def _centre(self, mu):
        """Where the Gaussian is centred for heatmap coordinates ``mu``."""
        return mu

    # --- encode ------------------------------------------------------------------------
    def encode(self, keypoints, visible):
        """``keypoints`` (K, 2) in crop input pixels, ``visible`` (K,) →
        ``(heatmaps float32 (K, Hh, Wh), target_weight float32 (K,))``."""
        kp = np.asarray(keypoints, np.float32).reshape(-1, 2)
        vis = np.asarray(visible).reshape(-1)
        mu = self._centre(self.to_heatmap(kp))
        hh, wh = self.heatmap_size
        with np.errstate(invalid="ignore"):
            on_map = self._reaches_map(mu, np)
        weight = ((vis > 0) & on_map & np.isfinite(mu).all(1)).astype(np.float32)
        mu = np.where(weight[:, None] > 0, mu, 0.0).astype(np.float32)
        heat = np.zeros((len(kp), hh, wh), np.float32)
        r = int(math.floor(self.truncate * self.sigma)) + 1
        for k in np.flatnonzero(weight):
            # only the 3σ window is non-zero: fill that (the bulk of a full-resolution map is 0)
            cx, cy = int(np.floor(mu[k, 0] + 0.5)), int(np.floor(mu[k, 1] + 0.5))
            x0, x1, y0, y1 = max(0, cx - r), min(wh, cx + r + 1), max(0, cy - r), min(hh, cy + r + 1)
            gx = self._gauss_1d(np.arange(x0, x1, dtype=np.float32) - mu[k, 0])
            gy = self._gauss_1d(np.arange(y0, y1, dtype=np.float32) - mu[k, 1])
            np.multiply(gy[:, None], gx[None, :], out=heat[k, y0:y1, x0:x1])
        return heat, weight

    def _reaches_map(self, mu, xp):
        """True where some heatmap pixel lies within the 3σ window in both x and y
        (``xp`` is numpy or torch, so both encoders share one rule)."""
        hh, wh = self.heatmap_size
        r = self.truncate * self.sigma
        lo, hi = xp.ceil(mu - r), xp.floor(mu + r)
        return ((hi[..., 0] >= 0) & (lo[..., 0] <= wh - 1) & (hi[..., 0] >= lo[..., 0])
                & (hi[..., 1] >= 0) & (lo[..., 1] <= hh - 1) & (hi[..., 1] >= lo[..., 1]))

    def _gauss_1d(self, d):
        g = np.exp(-(d * d) / np.float32(2 * self.sigma ** 2)).astype(np.float32)
        return np.where(np.abs(d) <= self.truncate * self.sigma, g, np.float32(0))

    def encode_torch(self, keypoints: torch.Tensor, visible: torch.Tensor):
        """Batch :meth:`encode` on the keypoints' device: ``(B, K, 2), (B, K)`` →
        ``(heatmaps (B, K, Hh, Wh), target_weight (B, K))``, float32."""
        kp = keypoints.to(torch.float32)
        mu = self._centre(self.to_heatmap(kp))
        hh, wh = self.heatmap_size
        on_map = self._reaches_map(mu, torch)
        weight = ((visible > 0) & on_map & torch.isfinite(mu).all(-1)).to(torch.float32)
        mu = torch.where(weight[..., None] > 0, mu, torch.zeros_like(mu))
        two_var = 2 * self.sigma ** 2
        dx = torch.arange(wh, dtype=torch.float32, device=kp.device) - mu[..., 0:1]
        dy = torch.arange(hh, dtype=torch.float32, device=kp.device) - mu[..., 1:2]
        gx = torch.exp(-(dx * dx) / two_var) * (dx.abs() <= self.truncate * self.sigma)
        gy = torch.exp(-(dy * dy) / two_var) * (dy.abs() <= self.truncate * self.sigma)
        heat = gy[..., :, None] * gx[..., None, :] * weight[..., None, None]
        return heat, weight

    # --- decode ------------------------------------------------------------------------
    def decode(self, heatmaps):
        """``heatmaps`` (N, K, Hh, Wh) → ``(keypoints float32 (N, K, 2) in crop input
        pixels, scores float32 (N, K))``; the score is the heatmap's maximum."""
        if torch.is_tensor(heatmaps):
            heatmaps = heatmaps.detach().float().cpu().numpy()
        hm = np.asarray(heatmaps, np.float32)
        if hm.ndim != 4:
            raise FrposeError(f"decode expects heatmaps of shape (N, K, H, W), got {hm.shape}")
        n, k, h, w = hm.shape
        flat = hm.reshape(n, k, -1)
        best = flat.argmax(-1)
        scores = np.take_along_axis(flat, best[..., None], -1)[..., 0]
        coords = np.stack([best % w, best // w], -1).astype(np.float32)
        coords = self._refine(hm, coords)
        return self.from_heatmap(coords).astype(np.float32), scores.astype(np.float32)

    def _refine(self, hm, coords):
        return coords


class SBNCodec(HeatmapCodec):
    """Simple Baselines: integer Gaussian centres, argmax + quarter-pixel refinement."""
    name = "sbn"

    def _centre(self, mu):
        return torch.floor(mu + 0.5) if torch.is_tensor(mu) else np.floor(mu + 0.5)

    def _refine(self, hm, coords):
        return quarter_offset(hm, coords)


class DARKCodec(HeatmapCodec):
    """DARK: sub-pixel Gaussian centres, mmpose's Taylor-expansion decoding."""
    name = "dark"

    def __init__(self, input_size, stride: int, sigma: float):
        super().__init__(input_size, stride, sigma)
        self.blur_kernel = blur_kernel_size(self.sigma)

    def _refine(self, hm, coords):
        return dark_reference(hm, coords, self.blur_kernel)


class DARKClipCodec(DARKCodec):
    """DARK targets, frpose's bounded Taylor step (clipped to ±1 px, skipped off a maximum)."""
    name = "dark-clip"

    def _refine(self, hm, coords):
        return dark_clip(hm, coords, self.sigma)


class UDPCodec(DARKCodec):
    """UDP: unbiased input↔heatmap mapping ((W-1)/(Wh-1)) and crops; mmpose's UDP decoding."""
    name = "udp"
    use_udp = True

    def _scale_xy(self):
        (h, w), (hh, wh) = self.input_size, self.heatmap_size
        return (wh - 1) / (w - 1), (hh - 1) / (h - 1)

    def _refine(self, hm, coords):
        return udp_reference(hm, coords, self.blur_kernel)


class UDPClipCodec(UDPCodec):
    """UDP mapping and crops, frpose's bounded Taylor step."""
    name = "udp-clip"

    def _refine(self, hm, coords):
        return dark_clip(hm, coords, self.sigma)


CODECS = {c.name: c for c in (SBNCodec, DARKCodec, DARKClipCodec, UDPCodec, UDPClipCodec)}


def make_codec(name: str, input_size, stride: int, sigma: float) -> HeatmapCodec:
    if name not in CODECS:
        raise FrposeError(f"unknown heatmap codec {name!r}; choose one of {', '.join(CODECS)}")
    return CODECS[name](input_size, stride, sigma)


def codec_for_card(card, name: str | None = None) -> HeatmapCodec:
    """The card's codec (or ``name``) at the card's input size, stride and σ."""
    return make_codec(name or card.codec, card.input_size, card.stride, card.sigma)
