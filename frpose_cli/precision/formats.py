"""Number formats: which precision may run where, and the one call that turns a loaded float32
network + card into the runnable model of a precision (``--precision fp32|bf16|fp16|int8|auto``).

Where each precision runs (:func:`unavailable_reason` says why not, in one line):

=========  ===============================================  =========================
precision  CPU                                              CUDA
=========  ===============================================  =========================
fp32       everywhere (``onnxruntime``, or ``fused`` torch;  ``fused``
           ``openvino`` where installed)
bf16       only with AVX512-BF16 or AMX-BF16 (torch          compute capability ≥ 8.0
           autocast, or OpenVINO's bf16 hint); elsewhere
           oneDNN emulates it ~60× slower, so it is never
           tried
fp16       —                                                ≥ 7.0 (and 6.0)
int8       ONNX Runtime static int8 (AVX2, VNNI, AMX; ARM64)  —
=========  ===============================================  =========================

``auto`` (the CPU default; float32 on GPUs unless asked) gates and times the candidates (with
OpenVINO's fp32 and bf16 set-ups among them where openvino is installed) once per model, input
size, machine and calibration source, and caches what it gated
(:mod:`frpose_cli.precision.autoselect`; :func:`frpose_cli.precision.runnable.runnable_model` is the
entry point every verb uses).  ``FRPOSE_PRECISION``
sets the default for every verb that has one (e.g. ``fp32`` on machines whose results must not move);
``eval`` has none: it runs fp32 unless ``--precision`` says otherwise.
"""
from __future__ import annotations

import importlib.util

import torch

from frpose_cli.errors import FrposeError
from frpose_cli.settings import PRECISION_CHOICES
from frpose_cli.runtime import ovrt
from frpose_cli.runtime.export_cache import weights_fingerprint  # noqa: F401 (autoselect's cache key)
from frpose_cli.runtime.optimize import SETUP_TABLE, default_setup, prepare_for_inference, setup_named
from frpose_cli.runtime.pose_model import PoseModel

CHOICES = PRECISION_CHOICES   # declared in settings.py, which checks $FRPOSE_PRECISION without importing torch
PRECISIONS = tuple(c for c in CHOICES if c != "auto")


def default_precision(device) -> str:
    """``$FRPOSE_PRECISION`` if set, else ``auto`` on the CPU and ``fp32`` on GPUs."""
    from frpose_cli.settings import settings
    if settings().precision:
        return settings().precision
    return "auto" if torch.device(device).type == "cpu" else "fp32"


def check_precision(name: str, what: str = "--precision") -> str:
    if name not in CHOICES:
        raise FrposeError(f"unknown {what} {name!r}; choose from {', '.join(CHOICES)}")
    return name


def _has_onnxruntime() -> bool:
    return all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime"))


def unavailable_reason(precision: str, device, hw, backend: str = "auto") -> str | None:
    """Why ``precision`` cannot run natively on ``device`` with ``backend``; None when it can."""
    device = torch.device(device)
    if device.type == "cuda":
        gpu = hw.gpu
        if backend in ("onnxruntime", "openvino"):
            return f"the {backend} backend runs on the CPU here; drop --device or use --backend torch"
        if precision == "int8":
            return "int8 runs on ONNX Runtime's CPU provider; use --device cpu"
        if precision == "bf16" and not (gpu and gpu.native_bf16):
            return f"{gpu.describe() if gpu else 'this GPU'} has no native bf16 (needs compute capability 8.0+)"
        if precision == "fp16" and not (gpu and gpu.native_fp16):
            return f"{gpu.describe() if gpu else 'this GPU'} has no fast fp16 (needs 6.0 or 7.0+)"
        return None
    isa = f"this CPU ({hw.cpu.describe()})"
    if backend == "openvino" and not ovrt.available():
        return ovrt.missing_message("the openvino backend")
    if precision == "fp16":
        return "fp16 runs on CUDA GPUs; on the CPU use fp32, bf16 (where native) or int8"
    if precision == "bf16":
        if backend == "onnxruntime":
            return "bf16 runs on torch or OpenVINO: use --backend torch, openvino or auto"
        if not hw.cpu.native_bf16:   # the same rule for torch's autocast and OpenVINO's bf16 hint
            return (f"{isa} has no native bf16 (AVX512-BF16 or AMX-BF16): oneDNN would emulate it, "
                    "about 60x slower than float32")
    if precision == "int8":
        if backend in ("torch", "openvino"):
            return "int8 runs on ONNX Runtime: use --backend onnxruntime or auto"
        if not _has_onnxruntime():
            return "int8 needs the onnx and onnxruntime packages: pip install onnx onnxruntime"
        if hw.cpu.int8_dot is None:
            return f"{isa} has no SIMD int8 path (needs AVX2, VNNI or AMX on x86, or 64-bit ARM)"
    return None


OPENVINO_SETUPS = tuple(name for name, s in SETUP_TABLE.items() if s.backend == "openvino")


def candidates(device, hw, backend: str = "auto") -> list[str]:
    """What ``auto`` may consider on this machine, the float32 reference first: the precisions
    (each on the set-up :func:`setup_for` gives it), then with ``--backend auto`` on the CPU the
    OpenVINO set-ups by name where openvino is installed (:func:`candidate_setup`)."""
    found = [p for p in PRECISIONS if unavailable_reason(p, device, hw, backend) is None]
    if backend == "auto" and torch.device(device).type == "cpu" and ovrt.available():
        found += [s for s in OPENVINO_SETUPS if unavailable_reason(SETUP_TABLE[s].precision, device, hw, "openvino")
                  is None]
    return found


def setup_for(precision: str, device, backend: str = "auto") -> str:
    """The inference set-up (:data:`~frpose_cli.runtime.optimize.SETUPS`) that runs ``precision``."""
    if backend == "openvino" and precision in ("fp32", "bf16"):
        return "openvino" if precision == "fp32" else "openvino_bf16"
    if precision != "fp32":
        return precision
    if backend == "torch":
        return "fused"
    if backend == "onnxruntime":
        return "onnxruntime"
    return default_setup(torch.device(device))


def candidate_reason(candidate: str, device, hw, backend: str = "auto") -> str | None:
    """Why the candidate ``candidate`` cannot run here (:func:`unavailable_reason`); None when it can."""
    if candidate in OPENVINO_SETUPS:
        return unavailable_reason(SETUP_TABLE[candidate].precision, device, hw, "openvino")
    if candidate not in PRECISIONS:
        return f"unknown candidate {candidate!r}"
    return unavailable_reason(candidate, device, hw, backend)


def candidate_setup(candidate: str, device, backend: str = "auto") -> str:
    """The set-up of one of :func:`candidates`: a precision's (:func:`setup_for`) or a set-up named."""
    return candidate if candidate in OPENVINO_SETUPS else setup_for(candidate, device, backend)


def build_setup(net, card, device, setup: str, calib_data=None, gate_ids=(), codec_name=None) -> torch.nn.Module:
    """``net`` prepared as ``setup``; int8 is calibrated on real crops (:mod:`frpose_cli.precision.crops`)
    other than the gate's people ``gate_ids``."""
    calibration = None
    if setup == "int8":
        from frpose_cli.precision.crops import calibration_crops
        calibration = calibration_crops(card, calib_data, exclude_ids=gate_ids, codec_name=codec_name).inputs
    return prepare_for_inference(net, torch.device(device), setup, calibration)


def wrap(module, setup: str, card, codec_name=None, source: str = ""):
    """A prepared module → the :class:`~frpose_cli.runtime.pose_model.PoseModel` every verb runs."""
    spec = setup_named(setup)
    return PoseModel(module, card, codec_name, spec.backend, setup, precision=spec.precision, what=source)
