"""What an exported model file is: the frpose metadata it carries and its ONNX serialisation.

Metadata (JSON, ``frpose-export/1``) travels inside the file — ONNX ``metadata_props`` key
``frpose``, TorchScript extra file ``frpose.json`` — so ``predict``/``eval`` need only the file.
It holds the full model card (``card``) plus the fields a non-frpose consumer needs at a
glance: model, input_size, heatmap_size, stride, sigma, codec, keypoint_names, flip_pairs (null: never flip), skeleton, oks_sigmas,
normalize (mean/std on 0-1 images, and the channel order the weights expect), dynamic_batch, opset.

The exported network is the BN-folded one (exact up to float rounding): one input ``images``
(N, 3, H, W) float32, normalised as ``normalize`` says, one output ``heatmaps``.  ONNX goes
through ``torch.onnx.export(..., dynamo=False)``: the TorchScript-based exporter works offline
with no extra package (``dynamo=True`` needs onnxscript).  :func:`onnx_bytes_any_size` is the
in-memory graph of the ``onnxruntime`` inference set-up (symbolic batch, height and width).
"""
from __future__ import annotations

import io
import json
import warnings

import torch

from frpose_cli.cards import ModelCard
from frpose_cli.errors import FrposeError
from frpose_cli.net.folding import fold_batchnorm
from frpose_cli.data.oks_sigmas import resolve_sigmas

EXPORT_FORMAT = "frpose-export/1"
METADATA_KEY = "frpose"            # ONNX metadata_props key / TorchScript extra file "frpose.json"
DEFAULT_OPSET = 17


def export_metadata(card: ModelCard, codec_name: str | None, fmt: str, dynamic_batch: bool,
                    batch: int, opset: int | None, source: str = "") -> dict:
    codec = codec_name or card.codec
    return {
        "format": EXPORT_FORMAT, "export": fmt, "model": card.name,
        "input_size": list(card.input_size), "heatmap_size": list(card.heatmap_size),
        "stride": card.stride, "sigma": card.sigma, "codec": {"name": codec, "sigma": card.sigma,
                                                             "stride": card.stride},
        "keypoint_names": list(card.keypoints.names),
        "flip_pairs": card.keypoints.to_dict()["flip_pairs"], "skeleton": card.keypoints.to_dict()["skeleton"],
        "oks_sigmas": resolve_sigmas(card.keypoints).sigmas,
        "normalize": {**card.normalize, "channel_order": card.channel_order}, "input_range": f"{card.channel_order.upper()} / 255, then (x - mean) / std",
        "dynamic_batch": bool(dynamic_batch), "batch": None if dynamic_batch else int(batch),
        "opset": opset, "source": str(source), "torch": torch.__version__, "card": card.to_dict(),
    }


def export_net(net: torch.nn.Module) -> torch.nn.Module:
    """CPU, eval mode, BN folded, contiguous: what both exporters trace."""
    return fold_batchnorm(net.cpu().eval()).to(memory_format=torch.contiguous_format)


def onnx_bytes(net: torch.nn.Module, card: ModelCard, codec_name: str | None = None, dynamic_batch: bool = True,
               batch: int = 1, opset: int = DEFAULT_OPSET, source: str = "") -> bytes:
    """A serialized ONNX model of ``net`` carrying the frpose metadata."""
    try:
        import onnx
    except ImportError:
        raise FrposeError("ONNX export needs the onnx package: pip install onnx onnxruntime") from None
    x = torch.zeros(batch, 3, *card.input_size)
    buf = io.BytesIO()
    axes = {"images": {0: "batch"}, "heatmaps": {0: "batch"}} if dynamic_batch else None
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")   # the exporter's deprecation/tracer notices
            torch.onnx.export(export_net(net), (x,), buf, dynamo=False, opset_version=opset,
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
    # traced at 64×64 (2×2 after the encoder's /32; 1×1 could be special-cased by the tracer): the graph is
    # the same at any size, and tracing a small input costs a fraction of 256×192's forward pass
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(export_net(net), (torch.zeros(1, 3, 64, 64),), buf, dynamo=False,
                          opset_version=opset, input_names=["images"], output_names=["heatmaps"],
                          dynamic_axes=axes, do_constant_folding=True)
    return buf.getvalue()


def card_from_metadata(meta_json: str, source: str) -> tuple[ModelCard, str | None, dict]:
    try:
        meta = json.loads(meta_json)
    except (TypeError, ValueError):
        raise FrposeError(f"{source}: its frpose metadata is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        raise FrposeError(f"{source}: metadata is not '{EXPORT_FORMAT}'")
    card = ModelCard.from_dict(meta["card"], source=source)
    return card, (meta.get("codec") or {}).get("name"), meta


def read_torchscript(path, map_location="cpu") -> tuple[torch.nn.Module, str]:
    """A TorchScript file's module and the frpose metadata it carries (JSON; "" when it has none)."""
    extra = {f"{METADATA_KEY}.json": ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)   # "torch.jit.load is deprecated"
            module = torch.jit.load(str(path), map_location=map_location, _extra_files=extra)
    except Exception as e:   # torch raises RuntimeError and others for files that are not TorchScript
        raise FrposeError(f"{path}: not a readable TorchScript file ({type(e).__name__})") from None
    return module, extra[f"{METADATA_KEY}.json"]
