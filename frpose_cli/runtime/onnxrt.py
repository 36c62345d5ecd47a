"""ONNX Runtime as a torch module: sessions with frpose's thread budget, and the in-memory
``onnxruntime`` inference set-up (a network exported to ONNX without touching the disk)."""
from __future__ import annotations

import numpy as np
import torch

from frpose_cli.errors import FrposeError
from frpose_cli.runtime.external import ExternalNet


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
INPUT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


class OnnxRuntimeNet(ExternalNet):
    """An ONNX Runtime CPU session as a module (:class:`~frpose_cli.runtime.external.ExternalNet`); a
    float16 or float64 graph input is fed in its own type, and heatmaps come back float32."""

    backend = "onnxruntime"

    def __init__(self, session, source: str = "the ONNX model"):
        inp = session.get_inputs()[0]
        if inp.type not in INPUT_TYPES:
            raise FrposeError(f"{source}: its input '{inp.name}' is {inp.type}; frpose feeds images as float "
                              "tensors (float32, float16 or float64 inputs)")
        super().__init__(inp.shape[0] if isinstance(inp.shape[0], int) else None, INPUT_TYPES[inp.type])
        self.session, self.input_name = session, inp.name

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]


def onnxruntime_net(net: torch.nn.Module, threads=None) -> OnnxRuntimeNet:
    """The ``onnxruntime`` inference set-up: ``net`` exported with symbolic batch, height and width
    (the network is fully convolutional), run by ONNX Runtime; the graph is kept between runs
    (:mod:`frpose_cli.runtime.export_cache`)."""
    from frpose_cli.runtime.export_cache import onnx_graph
    try:
        session = ort_session(onnx_graph(net), threads)
    except FrposeError:   # a kept graph that is damaged (a disk that filled up): exported again
        session = ort_session(onnx_graph(net, fresh=True), threads)
    return OnnxRuntimeNet(session)
