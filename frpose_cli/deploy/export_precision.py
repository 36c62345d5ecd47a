"""``frpose export --precision int8|bf16``: reduced-precision deployable files, checked by the accuracy gate.

* ``int8`` → ONNX only: the BN-folded network exported as for float32 (same metadata, plus
  ``precision`` and ``calibration``), then quantized statically (:mod:`frpose_cli.runtime.quantize`)
  on real person crops.  ONNX Runtime (and other QDQ-aware runtimes) run it anywhere.
* ``bf16`` → TorchScript only: the BN-folded network traced under bfloat16 autocast, so the
  casts are in the file and it runs bf16 wherever it is loaded.  Exporting needs a CPU (or
  GPU) with native bf16, as every bf16 path does here (:mod:`frpose_cli.precision.formats`).
* ``fp16`` is an inference precision for CUDA (``--precision fp16`` on predict/eval), not an
  export: a float32 file loses nothing and autocast applies at run time.

The float32 export's parity check (1e-3 on heatmaps) cannot hold for reduced precision, so
the written file is checked by the accuracy gate instead: the file, loaded back as
``predict`` loads it, against the float32 network on real crops (:func:`frpose_cli.precision.gate.run_gate`).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from frpose_cli.errors import FrposeError
from frpose_cli.fileio import atomic_write_binary

FORMAT_FOR = {"int8": "onnx", "bf16": "torchscript"}


def check_export_precision(precision: str, fmt: str, hw, device="cpu") -> None:
    from frpose_cli.precision.formats import unavailable_reason
    if precision == "fp32":
        return
    if precision == "fp16":
        raise FrposeError("fp16 is applied at run time on CUDA (predict/eval --precision fp16); export float32")
    if precision not in FORMAT_FOR:
        raise FrposeError(f"--precision {precision} cannot be exported; choose fp32, int8 (onnx) or bf16 (torchscript)")
    if fmt != FORMAT_FOR[precision]:
        raise FrposeError(f"--precision {precision} exports to --format {FORMAT_FOR[precision]}, not {fmt}")
    reason = unavailable_reason(precision, device, hw, "onnxruntime" if precision == "int8" else "torch")
    if reason:
        raise FrposeError(f"--precision {precision}: {reason}")


def _with_precision(meta: dict, precision: str, extra: dict) -> dict:
    return {**meta, "precision": precision, **extra}


def export_int8(net, card, out, codec_name=None, dynamic_batch=True, opset=17, batch=1, source="",
                calib_data=None, hw=None) -> Path:
    import onnx

    from frpose_cli.precision.crops import calibration_crops
    from frpose_cli.runtime.export_format import onnx_bytes
    from frpose_cli.hardware import detect
    from frpose_cli.runtime.quantize import CALIBRATION_BATCH, calibration_batches, quantize_int8, reduce_range_for
    from frpose_cli.runtime.export_format import METADATA_KEY
    hw = hw or detect("cpu")
    crops = calibration_crops(card, calib_data, codec_name=codec_name)
    model = onnx.load_from_string(onnx_bytes(net, card, codec_name, dynamic_batch, batch, opset, source))
    for p in model.metadata_props:
        if p.key == METADATA_KEY:
            p.value = json.dumps(_with_precision(json.loads(p.value), "int8", {
                "calibration": {"method": "ONNX Runtime static QDQ, MinMax, per-channel int8 weights, uint8 "
                                          "activations", "reduce_range": reduce_range_for(hw),
                                "crops": crops.describe()}}))
    inputs = crops.inputs.numpy()
    if not dynamic_batch:   # a static graph takes exactly `batch` images per feed: repeat crops to fill one
        inputs = np.concatenate([inputs] * -(-batch // len(inputs)))
        inputs = inputs[:len(inputs) // batch * batch]
    batches = calibration_batches(inputs, CALIBRATION_BATCH if dynamic_batch else batch)
    data = quantize_int8(model.SerializeToString(), batches, reduce_range_for(hw))
    return atomic_write_binary(out, lambda f: f.write(data))


def export_bf16(net, card, out, codec_name=None, dynamic_batch=True, batch=1, source="") -> Path:
    from frpose_cli.runtime.export_format import export_metadata
    from frpose_cli.runtime.optimize import Autocast, fold_batchnorm
    from frpose_cli.runtime.export_format import METADATA_KEY
    x = torch.zeros(batch, 3, *card.input_size)
    module = Autocast(fold_batchnorm(net.cpu().eval()), "cpu", torch.bfloat16).eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, (x,), check_trace=False)
    meta = _with_precision(export_metadata(card, codec_name, "torchscript", dynamic_batch, batch, None, source),
                           "bf16", {"autocast": "bfloat16, traced: the casts are part of the graph"})
    extra = {f"{METADATA_KEY}.json": json.dumps(meta)}

    def save(f):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.save(traced, f, _extra_files=extra)
    return atomic_write_binary(out, save)


def export_reduced(net, card, fmt, out, precision, codec_name=None, dynamic_batch=True, opset=17, batch=1,
                   source="", calib_data=None, hw=None) -> Path:
    """Write ``net`` as a ``precision`` (int8 or bf16) file; see the module docstring."""
    from frpose_cli.hardware import detect
    hw = hw or detect("cpu")
    check_export_precision(precision, fmt, hw)
    out = Path(out)
    if out.is_dir():
        raise FrposeError(f"--out {out} is a folder; give a file name")
    if precision == "int8":
        return export_int8(net, card, out, codec_name, dynamic_batch, opset, batch, source, calib_data, hw)
    return export_bf16(net, card, out, codec_name, dynamic_batch, batch, source)


def gate_exported(net, exported, card, codec_name=None, calib_data=None):
    """The accuracy gate of an exported reduced-precision file against the float32 network."""
    from frpose_cli.precision.crops import gate_crops
    from frpose_cli.precision.gate import run_gate
    from frpose_cli.runtime.optimize import prepare_for_inference
    crops = gate_crops(card, calib_data, codec_name=codec_name)
    reference = prepare_for_inference(net.cpu(), torch.device("cpu"), "eager")
    return run_gate(reference, exported, card, crops, precision=exported.precision, codec_name=codec_name)


def resolve_export_precision(precision: str, net, card, codec_name=None, calib_data=None, log=None) -> str:
    """``auto`` → what ``--precision auto`` picks for ``net`` on this CPU; other names pass through."""
    from frpose_cli.precision.formats import check_precision
    check_precision(precision)
    if precision != "auto":
        return precision
    from frpose_cli.precision.autoselect import choose
    from frpose_cli.hardware import detect
    selection, _ = choose(net, card, torch.device("cpu"), "auto", detect("cpu"), calib_data, codec_name, log)
    return selection.precision
