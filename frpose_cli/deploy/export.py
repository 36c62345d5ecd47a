"""`frpose export` core: write a pose network as ONNX, TorchScript or OpenVINO IR carrying its metadata
(:mod:`frpose_cli.runtime.export_format` says what the file holds), then check parity against torch.
IR is the ONNX export converted by OpenVINO (one exporter), its metadata in the model's ``rt_info``.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from frpose_cli.cards import ModelCard
from frpose_cli.data.codecs import codec_for_card
from frpose_cli.errors import FrposeError
from frpose_cli.fileio import atomic_write_binary
from frpose_cli.runtime.export_format import DEFAULT_OPSET, METADATA_KEY, export_metadata, export_net, onnx_bytes
from frpose_cli.data.normalize import normalize_input

FORMATS = ("onnx", "torchscript", "openvino")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt", "openvino": ".xml"}
HEATMAP_TOLERANCE = 1e-3         # largest |heatmap difference| a parity check accepts


def write_torchscript(net: torch.nn.Module, card: ModelCard, out: Path, codec_name: str | None = None,
                      dynamic_batch: bool = True, batch: int = 1, source: str = "") -> Path:
    x = torch.zeros(batch, 3, *card.input_size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")   # TracerWarnings about shape-dependent Python ifs
        # The traced graph has no batch-size dependence (every op is per-sample), so it runs any batch.
        traced = torch.jit.trace(export_net(net), (x,), check_trace=False)
    meta = export_metadata(card, codec_name, "torchscript", dynamic_batch, batch, None, source)
    extra = {f"{METADATA_KEY}.json": json.dumps(meta)}

    def save(f):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)   # "torch.jit.save is deprecated"
            torch.jit.save(traced, f, _extra_files=extra)
    return atomic_write_binary(out, save)


def write_openvino(net: torch.nn.Module, card: ModelCard, out: Path, codec_name: str | None = None,
                   dynamic_batch: bool = True, batch: int = 1, opset: int = DEFAULT_OPSET, source: str = "") -> Path:
    """OpenVINO IR: ``out`` (``.xml``) and the ``.bin`` beside it, converted from the ONNX export."""
    from frpose_cli.runtime.ovrt import import_openvino, write_ir
    import_openvino("--format openvino")   # before the export's work, not after
    if out.suffix.lower() != ".xml":
        raise FrposeError(f"--out {out}: an OpenVINO IR is an .xml file (its weights go to the .bin beside it)")
    data = onnx_bytes(net, card, codec_name, dynamic_batch, batch, opset, source)
    meta = export_metadata(card, codec_name, "openvino", dynamic_batch, batch, opset, source)
    return write_ir(data, json.dumps(meta), out)


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
    if fmt == "openvino":
        return write_openvino(net, card, out, codec_name, dynamic_batch, batch, opset, source)
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
