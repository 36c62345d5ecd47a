"""OpenVINO as a torch module: the optional CPU runtime of the ``openvino`` and ``openvino_bf16``
set-ups and of OpenVINO IR files (``frpose export --format openvino``).

* **Optional**: ``pip install "frpose[openvino]"``.  The package is imported here only, and only
  when used, so frpose starts and behaves the same without it (:func:`available` asks without
  importing); asked for without it, one line says how to install it (:func:`import_openvino`).
* **One exporter**: the network reaches OpenVINO as the ONNX frpose already exports
  (:mod:`frpose_cli.runtime.export_format`): in memory with symbolic batch, height and width for
  the set-ups, as the ``onnxruntime`` set-up does; from a file for IR (``.xml`` + ``.bin``) and
  ONNX exports.
* **Compiled for the CPU plugin** (:func:`compile_config`) with
  - the inference precision hint ``f32`` or ``bf16``, always set: OpenVINO's own default on CPUs
    with AMX or AVX512-BF16 is bf16, which would make the float32 set-up silently bf16.  bf16 is
    only asked for where the CPU has it natively (:func:`frpose_cli.precision.formats.unavailable_reason`,
    the rule of torch's bf16 set-up);
  - the performance hint LATENCY: one stream using every thread.  frpose's engine makes one
    synchronous call at a time (a batch of crops), which is what LATENCY serves; THROUGHPUT
    splits the threads into several streams that pay only with several requests in flight;
  - torch's thread count, so the backends share the machine alike and are timed alike.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from frpose_cli.errors import FrposeError
from frpose_cli.runtime.external import ExternalNet

HINTS = {"fp32": "f32", "bf16": "bf16"}      # frpose precision → OpenVINO's inference precision hint
METADATA_PATHS = (["frpose"], ["framework", "frpose"])   # ours; an ONNX file's metadata_props as OpenVINO reads them


def available() -> bool:
    """Whether the openvino package is installed (without importing it: that takes a while)."""
    try:
        return importlib.util.find_spec("openvino") is not None
    except (ImportError, ValueError):
        return False


def missing_message(what: str = "--backend openvino") -> str:
    return f'{what} needs the openvino package: pip install "frpose[openvino]"'


def import_openvino(what: str = "--backend openvino"):
    try:
        import openvino
    except ImportError:
        raise FrposeError(missing_message(what)) from None
    return openvino


@functools.lru_cache(maxsize=1)
def _core():
    return import_openvino().Core()


def _first_line(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else 'no detail'}"


def compile_config(precision: str, threads: int | None = None) -> dict:
    """The CPU plugin's configuration for ``precision`` (fp32 or bf16) on ``threads`` (None: torch's)."""
    if precision not in HINTS:
        raise ValueError(f"precision must be one of {', '.join(HINTS)} on OpenVINO, got {precision!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive int or None, got {threads!r}")
    return {"INFERENCE_PRECISION_HINT": HINTS[precision], "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": threads or torch.get_num_threads()}


def read_model(source, what: str = "--backend openvino"):
    """An OpenVINO model from ONNX bytes or a file (``.xml`` IR or ``.onnx``)."""
    import_openvino(what)
    try:
        return _core().read_model(str(source) if isinstance(source, Path) else source)
    except Exception as e:  # OpenVINO raises RuntimeError subclasses of its own
        raise FrposeError(f"OpenVINO cannot read {source if isinstance(source, (str, Path)) else 'the model'} "
                          f"({_first_line(e)})") from None


def file_metadata(model) -> str | None:
    """The frpose metadata (JSON) an IR or ONNX file carries, or None."""
    for path in METADATA_PATHS:
        if model.has_rt_info(path):
            return model.get_rt_info(path).astype(str)
    return None


class OpenVinoNet(ExternalNet):
    """An OpenVINO model compiled for the CPU as a module (:class:`~frpose_cli.runtime.external.ExternalNet`):
    a static batch runs in chunks as on ONNX Runtime; heatmaps come back float32."""

    backend = "openvino"

    def __init__(self, model, precision: str = "fp32", threads: int | None = None, source: str = "the model"):
        ov = import_openvino()
        config = compile_config(precision, threads)
        if len(model.inputs) != 1:
            raise FrposeError(f"{source}: {len(model.inputs)} inputs; frpose feeds one, the images")
        inp = model.inputs[0]
        dtypes = {ov.Type.f32: np.float32, ov.Type.f16: np.float16, ov.Type.f64: np.float64}
        if inp.get_element_type() not in dtypes:
            raise FrposeError(f"{source}: its input is {inp.get_element_type()}; frpose feeds images as float tensors")
        batch = inp.get_partial_shape()[0]
        super().__init__(batch.get_length() if batch.is_static else None, dtypes[inp.get_element_type()])
        try:
            self.compiled = _core().compile_model(model, "CPU", config)
        except Exception as e:
            raise FrposeError(f"OpenVINO cannot compile {source} for the CPU ({_first_line(e)})") from None
        self.request = self.compiled.create_infer_request()
        self.precision, self.config = precision, config

    def run(self, batch: np.ndarray) -> np.ndarray:
        # infer() copies the output out of the request (share_outputs=False), so chunks never alias
        return self.request.infer({0: batch})[0]


def openvino_net(net: torch.nn.Module, precision: str = "fp32", threads: int | None = None) -> OpenVinoNet:
    """The ``openvino`` / ``openvino_bf16`` inference set-up: ``net`` exported to ONNX in memory with
    symbolic batch, height and width (as the ``onnxruntime`` set-up), compiled by OpenVINO."""
    from frpose_cli.runtime.export_cache import onnx_graph   # kept between runs
    return OpenVinoNet(read_model(onnx_graph(net)), precision, threads, "the network")


def _fsync(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def write_ir(onnx_data: bytes, metadata_json: str, out) -> Path:
    """OpenVINO IR of an exported ONNX model: ``out`` (``.xml``) and the ``.bin`` beside it, with the
    frpose metadata in the model's ``rt_info`` (``frpose``).  Weights stay float32 (``save_model``
    would halve them to float16 by default, which the parity check's 1e-3 does not allow).  Both
    files are written in a temp folder beside ``out`` and renamed into place, the ``.bin`` first:
    a reader that finds the ``.xml`` finds its weights."""
    if not isinstance(onnx_data, bytes):
        raise TypeError(f"onnx_data must be the bytes of an ONNX model, got {type(onnx_data).__name__}")
    if not isinstance(metadata_json, str):
        raise TypeError(f"metadata_json must be a JSON string, got {type(metadata_json).__name__}")
    ov = import_openvino("--format openvino")
    out = Path(out)
    if out.suffix.lower() != ".xml":
        raise ValueError(f"out must name an .xml file, got {out}")
    model = read_model(onnx_data, "--format openvino")
    model.set_rt_info(metadata_json, ["frpose"])
    weights = out.with_suffix(".bin")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    placed = False
    try:
        try:
            ov.save_model(model, str(tmp / out.name), compress_to_fp16=False)
        except Exception as e:   # OpenVINO's own RuntimeError (a full disk, say)
            raise FrposeError(f"OpenVINO cannot write {out} ({_first_line(e)})") from None
        for f in (tmp / weights.name, tmp / out.name):
            _fsync(f)
        os.replace(tmp / weights.name, weights)
        placed = True
        os.replace(tmp / out.name, out)
    except BaseException:
        if placed:
            weights.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
