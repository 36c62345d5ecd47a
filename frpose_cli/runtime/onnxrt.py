"""ONNX Runtime as a torch module: sessions with frpose's thread budget, and the in-memory
``onnxruntime`` inference set-up (a network exported to ONNX without touching the disk)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from frpose_cli.errors import FrposeError
from frpose_cli.runtime.export_format import onnx_bytes_any_size


def ort_session(model_bytes_or_path, threads: int | None = None):
    try:
        import onnxruntime as ort
    except ImportError:
        raise FrposeError("the onnxruntime backend needs the onnxruntime package: pip install onnxruntime") from None
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Same thread budget as torch, so backends are compared (and share the machine) fairly.
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(model_bytes_or_path, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise FrposeError(f"onnxruntime cannot load the model ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200] if str(e) else 'no detail'})") from None


# What a graph's input may be: float16 is what common float16 converters leave (onnxconverter-common's
# convert_float_to_float16 with its default keep_io_types=False); it is fed float16 and read back as float32.
_INPUT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


class OnnxRuntimeNet(nn.Module):
    """An ONNX Runtime CPU session as a module.  A static-batch graph runs larger batches in chunks;
    a float16 or float64 graph input is fed in its own type, and heatmaps come back float32."""

    def __init__(self, session, source: str = "the ONNX model"):
        super().__init__()
        self.session = session
        inp = session.get_inputs()[0]
        if inp.type not in _INPUT_TYPES:
            raise FrposeError(f"{source}: its input '{inp.name}' is {inp.type}; frpose feeds images as float "
                              "tensors (float32, float16 or float64 inputs)")
        self.input_dtype = _INPUT_TYPES[inp.type]
        self.input_name = inp.name
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        # No weights live in torch; a zero-size parameter lets callers ask for the device
        # (next(model.parameters()).device), as run_heatmaps and evaluate_model do.
        self.device_anchor = nn.Parameter(torch.empty(0), requires_grad=False)

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        if self.device_anchor.device.type != "cpu":
            raise FrposeError("the onnxruntime backend runs on the CPU here; drop --device or use --backend torch")
        return out

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.detach().to("cpu", torch.float32).contiguous().numpy().astype(self.input_dtype, copy=False)
        step = self.fixed_batch or max(len(x), 1)
        outs = []
        for i in range(0, len(x), step):
            chunk = x[i:i + step]
            n = len(chunk)
            if n < step:   # a static-batch graph takes exactly `step` images: pad the last chunk
                chunk = np.concatenate([chunk, np.zeros((step - n, *chunk.shape[1:]), chunk.dtype)])
            out = self.session.run(None, {self.input_name: chunk})[0][:n]
            outs.append(torch.from_numpy(np.ascontiguousarray(out, np.float32)))
        return torch.cat(outs)


def onnxruntime_net(net: nn.Module, threads=None) -> OnnxRuntimeNet:
    """The ``onnxruntime`` inference set-up: ``net`` exported in memory with symbolic batch,
    height and width (the network is fully convolutional), run by ONNX Runtime."""
    return OnnxRuntimeNet(ort_session(onnx_bytes_any_size(net), threads))
