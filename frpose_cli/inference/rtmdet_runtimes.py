"""RTMDet on runtimes outside torch: ONNX Runtime (``onnxruntime`` set-up, a dependency) and OpenVINO
(``openvino`` / ``openvino_bf16``, ``pip install "frpose[openvino]"``).

The network (not the decoding: that stays :func:`frpose_cli.inference.rtmdet_detector.decode`) is exported
to ONNX in memory with a symbolic batch (the canvas is square and fixed per detector), compiled for the CPU
plugin with the pose network's configuration (:func:`frpose_cli.runtime.ovrt.compile_config`: the precision
hint always set, LATENCY, torch's thread count), and wrapped as a module returning what the torch network
returns, so the trial, the gate and the cache treat it as any other set-up.  In ``openvino_bf16`` OpenVINO
chooses which layers run in bf16 (its CPU plugin keeps the last convolutions' accumulation in f32)."""
from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from torch import nn

from frpose_cli.errors import FrposeError
from frpose_cli.inference.detector_setups import RUNTIME_SETUPS
from frpose_cli.net.rtmdet import STRIDES
from frpose_cli.runtime import ovrt

SETUPS = {"openvino": "fp32", "openvino_bf16": "bf16"}   # set-up → OpenVINO precision


class _Flat(nn.Module):
    """The network with its per-level pairs flattened into six outputs (ONNX returns tensors, not pairs)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return tuple(t for pair in self.net(x) for t in pair)


def onnx_bytes(net: nn.Module, size: int) -> bytes:
    buf = io.BytesIO()
    names = [f"{kind}_{i}" for i in range(len(STRIDES)) for kind in ("cls", "reg")]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Flat(net).eval(), (torch.zeros(1, 3, size, size),), buf, dynamo=False, opset_version=17,
                          input_names=["images"], output_names=names,
                          dynamic_axes={"images": {0: "batch"}, **{n: {0: "batch"} for n in names}})
    return buf.getvalue()


class OpenVinoRTMDet(nn.Module):
    """A compiled RTMDet: the normalised batch (N, 3, S, S) → per level (logits, distances), float32, CPU."""

    def __init__(self, net: nn.Module, size: int, precision: str = "fp32", threads: int | None = None):
        super().__init__()
        model = ovrt.read_model(onnx_bytes(net, size), "--detector set-up openvino")
        try:
            self.compiled = ovrt._core().compile_model(model, "CPU", ovrt.compile_config(precision, threads))
        except Exception as e:  # OpenVINO raises RuntimeError subclasses of its own
            raise FrposeError(f"OpenVINO cannot compile the detector ({type(e).__name__})") from None
        self.request = self.compiled.create_infer_request()
        self.precision = precision
        self.anchor = nn.Parameter(torch.empty(0), requires_grad=False)   # so callers can ask for a dtype

    def forward(self, x: torch.Tensor):
        out = self.request.infer({0: x.detach().to("cpu", torch.float32).contiguous().numpy()})
        flat = [torch.from_numpy(np.ascontiguousarray(out[i], np.float32)) for i in range(2 * len(STRIDES))]
        return [(flat[2 * i], flat[2 * i + 1]) for i in range(len(STRIDES))]


class OrtRTMDet(nn.Module):
    """The same through ONNX Runtime's CPU provider (the pose network's session options: runtime/onnxrt.py)."""

    def __init__(self, net: nn.Module, size: int, threads: int | None = None):
        super().__init__()
        from frpose_cli.runtime.onnxrt import ort_session
        self.session = ort_session(onnx_bytes(net, size), threads)
        self.anchor = nn.Parameter(torch.empty(0), requires_grad=False)

    def forward(self, x: torch.Tensor):
        out = self.session.run(None, {"images": x.detach().to("cpu", torch.float32).contiguous().numpy()})
        flat = [torch.from_numpy(np.ascontiguousarray(o, np.float32)) for o in out]
        return [(flat[2 * i], flat[2 * i + 1]) for i in range(len(STRIDES))]


def build(setup: str, net: nn.Module, size: int) -> nn.Module:
    """``net`` (BatchNorm folded) in one of :data:`RUNTIME_SETUPS`."""
    if setup == "onnxruntime":
        return OrtRTMDet(net, size)
    return OpenVinoRTMDet(net, size, SETUPS[setup])


def unavailable_reason(setup: str, device, hw) -> str | None:
    """Why a runtime set-up cannot run here (None: it can)."""
    if setup not in RUNTIME_SETUPS:
        raise ValueError(f"setup must be one of {', '.join(RUNTIME_SETUPS)}")
    if torch.device(device).type != "cpu":
        return f"{setup} runs the detector on the CPU only here"
    if setup == "onnxruntime":
        return None
    if not ovrt.available():
        return ovrt.missing_message(f"--detector set-up {setup}")
    if SETUPS[setup] == "bf16":
        from frpose_cli.precision.formats import unavailable_reason as precision_unavailable
        return precision_unavailable("bf16", device, hw, backend="torch")
    return None
