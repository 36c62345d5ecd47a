"""A network run by a runtime outside torch (ONNX Runtime, OpenVINO) as a torch module: the one shape
every such backend takes, so :class:`~frpose_cli.runtime.pose_model.PoseModel` and the engine see
a module whatever runs it.  Subclasses say how one batch runs (:meth:`ExternalNet.run`)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from frpose_cli.errors import FrposeError


class ExternalNet(nn.Module):
    """Images (N, 3, H, W) → float32 heatmaps on the CPU.  A static-batch graph (``fixed_batch``)
    runs larger batches in chunks of its batch, the last one padded; the input is fed as
    ``input_dtype``."""

    backend = "external"

    def __init__(self, fixed_batch: int | None = None, input_dtype=np.float32):
        super().__init__()
        self.fixed_batch, self.input_dtype = fixed_batch, input_dtype
        # No weights live in torch; a zero-size parameter lets callers ask for the device
        # (next(model.parameters()).device), as run_heatmaps and evaluate_model do.
        self.device_anchor = nn.Parameter(torch.empty(0), requires_grad=False)

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        if self.device_anchor.device.type != "cpu":
            raise FrposeError(f"the {self.backend} backend runs on the CPU here; drop --device or use --backend torch")
        return out

    def run(self, batch: np.ndarray) -> np.ndarray:
        """One call of the runtime on exactly the batch it takes."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.detach().to("cpu", torch.float32).contiguous().numpy().astype(self.input_dtype, copy=False)
        step = self.fixed_batch or max(len(x), 1)
        outs = []
        for i in range(0, len(x), step):
            chunk = x[i:i + step]
            n = len(chunk)
            if n < step:   # a static-batch graph takes exactly `step` images: pad the last chunk
                chunk = np.concatenate([chunk, np.zeros((step - n, *chunk.shape[1:]), chunk.dtype)])
            outs.append(torch.from_numpy(np.ascontiguousarray(self.run(chunk)[:n], np.float32)))
        return torch.cat(outs)
