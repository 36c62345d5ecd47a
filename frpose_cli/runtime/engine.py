"""The one top-down engine: image + person boxes → keypoints in image pixels with scores.

``frpose predict`` (:class:`frpose_cli.inference.predict.PosePredictor`), ``frpose eval``
(:func:`frpose_cli.evaluation.evaluate.infer_poses`), the accuracy gate
(:func:`frpose_cli.precision.gate.run_gate`, so it gates exactly what the verbs run) and bench's
accuracy figures all go through :class:`TopDownEngine`:

1. **crops** (:meth:`TopDownEngine.crops`): box → centre/scale (aspect-ratio fix, ×1.25 padding,
   :func:`frpose_cli.data.geometry.box_to_center_scale`) → affine crop (UDP's matrix for UDP
   codecs), RGB uint8.  Images come from :mod:`frpose_cli.data.images`, the one decoding policy;
   eval's crops are cut by :class:`frpose_cli.data.dataset.CocoPoseDataset` with the same two
   functions (and a rotation of 0).
2. **heatmaps** (:meth:`TopDownEngine.heatmaps`): the uint8 crops go to the model's device (a
   quarter of float32's bytes cross the bus), become its input there
   (:func:`frpose_cli.data.normalize.crops_to_input`: mean/std and the channel order the weights
   were trained on), and run in chunks of ``batch_size`` with the flip test in the same forward pass
   (:func:`frpose_cli.runtime.topdown.run_heatmaps`); the model's set-up (memory format, static
   batch, precision) is the :class:`~frpose_cli.runtime.pose_model.PoseModel`'s own business.
3. **decode** (:meth:`TopDownEngine.decode`): the codec's decoder, then crop → image pixels
   (:func:`frpose_cli.runtime.topdown.decode_to_image`).

Rescoring and OKS-NMS are one shared step after the engine (:mod:`frpose_cli.metrics.oks_nms`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from frpose_cli.data.codecs import HeatmapCodec, codec_for_card
from frpose_cli.data.geometry import box_to_center_scale, crop_image
from frpose_cli.data.normalize import crops_to_input
from frpose_cli.runtime.topdown import decode_to_image, flip_shift_for_codec, run_heatmaps


@dataclass(frozen=True)
class CropGeometry:
    """How person boxes become network-sized crops (input size and the codec's UDP flag): small and
    model-free, so predict's DataLoader workers can crop too."""
    input_wh: tuple
    udp: bool

    def crops(self, image_rgb: np.ndarray, boxes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Affine crops of the ``boxes`` (x, y, w, h, ...) of an RGB image: uint8 (N, H, W, 3), and
        their centres and scales (N, 2)."""
        w, h = self.input_wh
        centers, scales, crops = [], [], []
        for box in boxes:
            c, s = box_to_center_scale(np.asarray(box, np.float64)[:4], w / h)
            centers.append(c)
            scales.append(s)
            crops.append(crop_image(image_rgb, c, s, 0, self.input_wh, udp=self.udp))
        return (np.stack(crops) if crops else np.zeros((0, h, w, 3), np.uint8),
                np.array(centers, np.float32).reshape(-1, 2), np.array(scales, np.float32).reshape(-1, 2))


class TopDownEngine:
    """``model`` (a PoseModel or any module mapping network input to heatmaps) with its card's
    geometry, normalisation, codec and flip test."""

    def __init__(self, model: torch.nn.Module, card, codec: HeatmapCodec | str | None = None, flip: bool = True,
                 batch_size: int = 32, flip_shift: float | None = None):
        self.model, self.card, self.batch_size = model, card, max(1, int(batch_size))
        if not isinstance(codec, HeatmapCodec):
            codec = codec_for_card(card, codec or getattr(model, "codec_name", None))
        self.codec = codec
        # No left/right pairs known: no flip test (it would average in mislabelled joints).
        self.flip = bool(flip) and card.keypoints.can_flip
        self.flip_index = card.keypoints.flip_index()
        self.shift = flip_shift_for_codec(codec) if flip_shift is None else float(flip_shift)
        h, w = card.input_size
        self.geometry = CropGeometry((w, h), codec.use_udp)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def crops(self, image_rgb: np.ndarray, boxes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """uint8 crops (N, H, W, 3) of the boxes and their centres and scales (:class:`CropGeometry`)."""
        return self.geometry.crops(image_rgb, boxes)

    def heatmaps(self, crops_uint8) -> torch.Tensor:
        """(N, K, Hh, Wh) float32 heatmaps on the CPU of uint8 RGB crops (N, H, W, 3), flip test included."""
        crops = torch.as_tensor(crops_uint8)
        if crops.dtype != torch.uint8 or crops.ndim != 4 or crops.shape[-1] != 3:
            raise ValueError(f"crops must be uint8 (N, H, W, 3), got {tuple(crops.shape)} {crops.dtype}")
        outs, device = [], self.device
        for i in range(0, len(crops), self.batch_size):
            x = crops_to_input(crops[i:i + self.batch_size].to(device, non_blocking=True), self.card.normalize)
            outs.append(run_heatmaps(self.model, x, flip=self.flip, flip_index=self.flip_index, codec=self.codec,
                                     shift=self.shift))
        if outs:
            return torch.cat(outs)
        return torch.zeros((0, self.card.keypoints.num_keypoints, *self.codec.heatmap_size))

    def decode(self, heatmaps, centers, scales, rotations=None) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints (N, K, 2) float32 in image pixels and their scores (N, K)."""
        return decode_to_image(self.codec, heatmaps, centers, scales, rotations)

    def __call__(self, image_rgb: np.ndarray, boxes) -> tuple[np.ndarray, np.ndarray]:
        crops, centers, scales = self.crops(image_rgb, boxes)
        return self.decode(self.heatmaps(crops), centers, scales)
