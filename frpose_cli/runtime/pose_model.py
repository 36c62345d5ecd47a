"""The common face of every loaded pose model, whatever runs it (torch set-ups, TorchScript, ONNX
Runtime in float32 or int8): ``heatmaps = pose_model(images)`` plus what the model is.  Built by
:func:`frpose_cli.load.load_pose_model` and :func:`frpose_cli.precision.formats.wrap`."""
from __future__ import annotations

import torch
from torch import nn

from frpose_cli.cards import ModelCard
from frpose_cli.runtime.optimize import input_memory_format


class PoseModel(nn.Module):
    """Common face of every backend: ``forward(images) -> heatmaps`` (N, K, Hh, Wh) float32."""

    def __init__(self, net: nn.Module, card: ModelCard, codec_name: str | None, backend: str, setup: str,
                 weights=None, what: str = "", precision: str = "fp32"):
        super().__init__()
        self.net, self.card, self.codec_name = net, card, codec_name or card.codec
        self.backend, self.setup, self.weights, self.what = backend, setup, weights, what
        self.precision = precision
        self.selection = None      # --precision auto: the autoselect.Selection that chose the set-up

    @property
    def source(self) -> str:
        return str(self.weights.path) if self.weights is not None else ""

    @property
    def input_memory_format(self) -> torch.memory_format:
        return input_memory_format(self.setup)

    @property
    def fixed_batch(self) -> int | None:
        """The batch a static-batch ONNX export takes (None: any)."""
        return getattr(self.net, "fixed_batch", None)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images.contiguous(memory_format=self.input_memory_format)).float()
