"""Export a pose network to ONNX or TorchScript with its metadata, and check parity.

The exported network is the BN-folded one (exact up to float rounding, see
:mod:`frpose_cli.optimize`): one input ``images`` (N, 3, H, W) float32, normalised with the
card's mean/std, one output ``heatmaps`` (N, K, H/stride, W/stride).

Metadata (JSON, ``frpose-export/1``) travels inside the file — ONNX ``metadata_props``
key ``frpose``, TorchScript extra file ``frpose.json`` — so ``predict``/``eval`` need
only the file.  It holds the full model card (``card``) plus the fields a non-frpose
consumer needs at a glance: model, input_size, heatmap_size, stride, sigma, codec,
keypoint_names, flip_pairs (null: never flip), skeleton, oks_sigmas, normalize (mean/std on 0-1 RGB),
dynamic_batch, opset.

ONNX goes through ``torch.onnx.export(..., dynamo=False)``: the TorchScript-based
exporter works offline with no extra package (``dynamo=True`` needs onnxscript).
"""
from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .cards import ModelCard
from .codecs import codec_for_card
from .errors import FrposeError
from .fileio import atomic_write_binary
from .inference import normalize_input
from .oks_sigmas import resolve_sigmas
from .optimize import fold_batchnorm

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
DEFAULT_OPSET = 17
HEATMAP_TOLERANCE = 1e-3         # largest |heatmap difference| a parity check accepts


def export_metadata(card: ModelCard, codec_name: str | None, fmt: str, dynamic_batch: bool,
                    batch: int, opset: int | None, source: str = "") -> dict:
    from .runtime import EXPORT_FORMAT
    codec = codec_name or card.codec
    return {
        "format": EXPORT_FORMAT, "export": fmt, "model": card.name,
        "input_size": list(card.input_size), "heatmap_size": list(card.heatmap_size),
        "stride": card.stride, "sigma": card.sigma, "codec": {"name": codec, "sigma": card.sigma,
                                                             "stride": card.stride},
        "keypoint_names": list(card.keypoints.names),
        "flip_pairs": card.keypoints.to_dict()["flip_pairs"], "skeleton": card.keypoints.to_dict()["skeleton"],
        "oks_sigmas": resolve_sigmas(card.keypoints).sigmas,
        "normalize": dict(card.normalize), "input_range": "RGB / 255, then (x - mean) / std",
        "dynamic_batch": bool(dynamic_batch), "batch": None if dynamic_batch else int(batch),
        "opset": opset, "source": str(source), "torch": torch.__version__, "card": card.to_dict(),
    }


def _export_net(net: torch.nn.Module) -> torch.nn.Module:
    """CPU, eval mode, BN folded, contiguous: what both exporters trace."""
    return fold_batchnorm(net.cpu().eval()).to(memory_format=torch.contiguous_format)


def onnx_bytes(net: torch.nn.Module, card: ModelCard, codec_name: str | None = None, dynamic_batch: bool = True,
               batch: int = 1, opset: int = DEFAULT_OPSET, source: str = "") -> bytes:
    """A serialized ONNX model of ``net`` carrying the frpose metadata."""
    try:
        import onnx
    except ImportError:
        raise FrposeError("ONNX export needs the onnx package: pip install onnx onnxruntime") from None
    from .runtime import METADATA_KEY
    x = torch.zeros(batch, 3, *card.input_size)
    buf = io.BytesIO()
    axes = {"images": {0: "batch"}, "heatmaps": {0: "batch"}} if dynamic_batch else None
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")   # the exporter's deprecation/tracer notices
            torch.onnx.export(_export_net(net), (x,), buf, dynamo=False, opset_version=opset,
                              input_names=["images"], output_names=["heatmaps"], dynamic_axes=axes,
                              do_constant_folding=True)
    except Exception as e:  # unsupported opset, operator, ...
        raise FrposeError(f"ONNX export failed at opset {opset} ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200] if str(e) else 'no detail'})") from None
    model = onnx.load_from_string(buf.getvalue())
    meta = export_metadata(card, codec_name, "onnx", dynamic_batch, batch, opset, source)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    model.producer_name = "frpose"
    return model.SerializeToString()


def onnx_bytes_any_size(net: torch.nn.Module, opset: int = DEFAULT_OPSET) -> bytes:
    """ONNX of ``net`` with symbolic batch, height and width and no metadata: the in-memory
    ``onnxruntime`` inference set-up.  Every resize in the network is relative (×2, ½, to
    another map's size), so one graph serves every input size (checked in tests/test_runtime.py)."""
    buf = io.BytesIO()
    axes = {"images": {0: "batch", 2: "height", 3: "width"},
            "heatmaps": {0: "batch", 2: "heatmap_height", 3: "heatmap_width"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(_export_net(net), (torch.zeros(1, 3, 256, 192),), buf, dynamo=False,
                          opset_version=opset, input_names=["images"], output_names=["heatmaps"],
                          dynamic_axes=axes, do_constant_folding=True)
    return buf.getvalue()


def write_torchscript(net: torch.nn.Module, card: ModelCard, out: Path, codec_name: str | None = None,
                      dynamic_batch: bool = True, batch: int = 1, source: str = "") -> Path:
    from .runtime import METADATA_KEY
    x = torch.zeros(batch, 3, *card.input_size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")   # TracerWarnings about shape-dependent Python ifs
        # The traced graph has no batch-size dependence (every op is per-sample), so it runs any batch.
        traced = torch.jit.trace(_export_net(net), (x,), check_trace=False)
    meta = export_metadata(card, codec_name, "torchscript", dynamic_batch, batch, None, source)
    extra = {f"{METADATA_KEY}.json": json.dumps(meta)}

    def save(f):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)   # "torch.jit.save is deprecated"
            torch.jit.save(traced, f, _extra_files=extra)
    return atomic_write_binary(out, save)


def export_model(net: torch.nn.Module, card: ModelCard, fmt: str, out, codec_name: str | None = None,
                 dynamic_batch: bool = True, opset: int = DEFAULT_OPSET, batch: int = 1, source: str = "") -> Path:
    """Write ``net`` as ``fmt`` to ``out`` atomically; returns the path."""
    if fmt not in FORMATS:
        raise FrposeError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    if batch < 1:
        raise FrposeError(f"--batch must be at least 1 (got {batch})")
    out = Path(out)
    if out.is_dir():
        raise FrposeError(f"--out {out} is a folder; give a file name such as {card.name}{SUFFIXES[fmt]}")
    if fmt == "onnx":
        data = onnx_bytes(net, card, codec_name, dynamic_batch, batch, opset, source)
        return atomic_write_binary(out, lambda f: f.write(data))
    return write_torchscript(net, card, out, codec_name, dynamic_batch, batch, source)


@dataclass
class ParityReport:
    heatmap_max_abs: float        # largest |exported - torch| over every heatmap value
    heatmap_peak: float           # largest |torch heatmap| value, for scale
    keypoint_max_px: float        # largest decoded keypoint distance, input-crop pixels
    batch: int
    tolerance: float = HEATMAP_TOLERANCE

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.heatmap_max_abs)) and self.heatmap_max_abs <= self.tolerance

    def line(self) -> str:
        return (f"parity: max |heatmap diff| {self.heatmap_max_abs:.2e} (peak {self.heatmap_peak:.3g}, "
                f"limit {self.tolerance:g}), max keypoint diff {self.keypoint_max_px:.3f} px "
                f"over {self.batch} inputs: {'PASS' if self.passed else 'FAIL'}")


def parity_inputs(card: ModelCard, batch: int, seed: int = 0) -> torch.Tensor:
    """Normalised image-like inputs: smooth random blobs (not white noise, so heatmaps have
    distinct peaks), reproducible from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    h, w = card.input_size
    coarse = torch.rand(batch, 3, max(h // 16, 2), max(w // 16, 2), generator=g)
    img = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
    return normalize_input(img, card.normalize)


@torch.inference_mode()
def parity_check(reference: torch.nn.Module, exported: torch.nn.Module, card: ModelCard,
                 codec_name: str | None = None, batch: int = 2) -> ParityReport:
    """Run ``reference`` (the torch network) and ``exported`` (a loaded PoseModel) on the same inputs."""
    x = parity_inputs(card, batch)
    ref = reference.cpu().eval()(x).float()
    out = exported(x).float()
    if out.shape != ref.shape:
        raise FrposeError(f"exported model returns {tuple(out.shape)}, torch {tuple(ref.shape)}")
    codec = codec_for_card(card, codec_name)
    k_ref, _ = codec.decode(ref)
    k_out, _ = codec.decode(out)
    return ParityReport(heatmap_max_abs=float((out - ref).abs().max()), heatmap_peak=float(ref.abs().max()),
                        keypoint_max_px=float(np.linalg.norm(k_out - k_ref, axis=-1).max()), batch=batch)
