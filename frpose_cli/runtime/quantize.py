"""int8 inference: ONNX Runtime static quantization (QDQ, per-channel weights) calibrated on real crops.

Choices, each measured or forced by the hardware (figures in docs/benchmarks.md):

* **ONNX Runtime, not torch's x86 flow.**  torch's FX graph-mode quantization (the x86
  back-end; the PT2E flow has moved to the separate torchao package) cannot trace the
  paper's network: SA-MFCD resizes to a size read from another feature map.  On sbn-r50
  at 256x192, where it traces, it ran batch 1 faster (69 vs 82 ms) but batch 8 slower
  (497 vs 355 ms) than ONNX Runtime on this AVX2 machine.  ONNX Runtime quantizes every card.
* **QDQ format**: QuantizeLinear/DequantizeLinear pairs around float operators, which ONNX
  Runtime's CPU provider fuses into integer kernels (QLinearConv) and other runtimes can read.
* **uint8 activations, int8 weights (U8S8), per-channel weight scales**: the format ONNX
  Runtime's x86 kernels run fastest; int8 activations (S8S8) ran frpose-r34 1.3× slower here.
* **reduce_range (7-bit weights) on CPUs without VNNI**: there the AVX2 kernel adds pairs of
  u8×s8 products into 16 bits, which saturates with full-range weights; VNNI/AMX
  accumulate in 32 bits and keep the full range.
* **MinMax calibration** over real person crops (:mod:`frpose_cli.precision.crops`), batch by batch
  (the calibrator keeps every activation of what it is fed until it reduces them).
* **The heatmap layer stays float32**: the last convolution writes the heatmaps, whose
  values carry the sub-pixel keypoint position; it is <0.2 % of the MACs.

What the accuracy gate found: on the trained networks of docs/benchmarks.md this recipe fails
the gate for frpose-r34 and sbn-r152 alike.  Variants tried on frpose-r34 (same network and
crops; drift median / p95 px, AP change), all rejected too: 41 calibration crops instead of 11:
2.00 / 7.91 / −17.7; 8-bit weights: 2.06 / 8.52 / −21.2; Entropy calibration: 2.00 / 8.07 /
−17.5; Percentile 99.99 and 99.9 (they clip the large activations that carry the peaks): 3.9 /
14.6 / −35.4 and 6.0 / 27.8 / −54.6; GCBs in float: 2.06 / 7.95 / −18.9; GCBs and SA-MFCD
fusion in float: 2.00 / 7.52 / −23.9; the last four convolutions (the full-resolution
decoders, 39 % of the MACs) in float: 0.25 / 2.83 / −4.6.  The error is spread over the late,
heavy-tailed activations, which one uint8 scale per tensor cannot hold; static post-training
int8 is therefore kept whole and simple, and the gate decides per network — weights trained on
all of COCO may quantize better than networks fitted to 16 people, and ``predict``/``eval``
gate the weights they are given.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import torch

from frpose_cli.errors import FrposeError

CALIBRATION_BATCH = 4


def _ort_quantization():
    try:
        from onnxruntime import quantization
    except ImportError:
        raise FrposeError("int8 needs the onnxruntime package: pip install onnxruntime") from None
    return quantization


def output_producers(model) -> list[str]:
    """Names of the nodes that write the graph's outputs (the heatmap convolution)."""
    outputs = {o.name for o in model.graph.output}
    return [n.name for n in model.graph.node if outputs & set(n.output)]


def _name_nodes(model) -> None:
    """quantize_static excludes nodes by name; torch's exporter may leave some unnamed."""
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"


def calibration_batches(inputs: np.ndarray, batch: int = CALIBRATION_BATCH) -> list[np.ndarray]:
    """(N, 3, H, W) network inputs → the feeds the calibrator runs, ``batch`` crops each."""
    return [np.ascontiguousarray(inputs[i:i + batch], dtype=np.float32) for i in range(0, len(inputs), batch)]


def quantize_int8(fp32_onnx: bytes, batches: list[np.ndarray], reduce_range: bool = False,
                  keep_output_float: bool = True, input_name: str = "images") -> bytes:
    """Static int8 QDQ model of ``fp32_onnx`` calibrated on ``batches`` (each one feed of the input
    ``input_name``).  Metadata properties of the input model are kept."""
    import onnx
    q = _ort_quantization()
    if not batches:
        raise FrposeError("int8 calibration needs at least one real person crop")
    model = onnx.load_from_string(fp32_onnx)
    _name_nodes(model)
    metadata = [(p.key, p.value) for p in model.metadata_props]

    class Reader(q.CalibrationDataReader):
        """Feeds one range of batches at a time: with ``CalibStridedMinMax`` the calibrator reduces
        each range to min/max before the next, so memory holds one batch's activations, not all."""

        def __init__(self):
            self.set_range(0, len(batches))

        def __len__(self):
            return len(batches)

        def set_range(self, start_index, end_index):
            self.items = iter({input_name: b} for b in batches[start_index:end_index])

        def get_next(self):
            return next(self.items, None)

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)   # the quantizer's advice to pre-process is logged on every call
    with tempfile.TemporaryDirectory(prefix="frpose-int8-") as tmp:
        out = Path(tmp) / "int8.onnx"
        try:
            q.quantize_static(model, str(out), Reader(), quant_format=q.QuantFormat.QDQ, per_channel=True,
                              reduce_range=reduce_range, activation_type=q.QuantType.QUInt8,
                              weight_type=q.QuantType.QInt8, calibrate_method=q.CalibrationMethod.MinMax,
                              nodes_to_exclude=output_producers(model) if keep_output_float else [],
                              extra_options={"CalibStridedMinMax": 1})
        finally:
            root.setLevel(level)
        quantized = onnx.load(str(out))
    del quantized.metadata_props[:]
    for key, value in metadata:
        entry = quantized.metadata_props.add()
        entry.key, entry.value = key, value
    return quantized.SerializeToString()


def reduce_range_for(hw) -> bool:
    """7-bit weights where int8 products are summed in 16 bits (AVX2 without VNNI/AMX)."""
    return hw.cpu.int8_dot == "avx2"


def int8_session_bytes(net: torch.nn.Module, calibration: torch.Tensor, hw=None) -> bytes:
    """The ``int8`` inference set-up's model: ``net`` exported with symbolic batch and size
    (:func:`frpose_cli.runtime.export_format.onnx_bytes_any_size`) and quantized on ``calibration`` inputs."""
    from frpose_cli.runtime.export_format import onnx_bytes_any_size
    from frpose_cli.hardware import detect
    hw = hw or detect("cpu")
    batches = calibration_batches(calibration.detach().cpu().float().numpy())
    return quantize_int8(onnx_bytes_any_size(net), batches, reduce_range_for(hw))


def int8_net(net: torch.nn.Module, calibration: torch.Tensor, threads: int | None = None, hw=None):
    """An :class:`~frpose_cli.runtime.onnxrt.OnnxRuntimeNet` running ``net`` in int8."""
    return int8_net_from_bytes(int8_session_bytes(net, calibration, hw), threads)


def int8_net_from_bytes(model_bytes: bytes, threads: int | None = None):
    """A quantized model (as :func:`int8_session_bytes` made it) as a module.  ``.onnx_bytes`` keeps
    the bytes: ``--precision auto`` caches exactly the model it gated, not a recipe to redo it."""
    from frpose_cli.runtime.onnxrt import OnnxRuntimeNet, ort_session
    module = OnnxRuntimeNet(ort_session(model_bytes, threads))
    module.onnx_bytes = model_bytes
    return module
