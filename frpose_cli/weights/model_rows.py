"""``frpose models --inspect``: the rows that say what model a file holds, by the same names for a checkpoint
and for every exported file (card, input size, codec, keypoints, channel order, precision, source), and the
description of TorchScript and OpenVINO exports, read from their frpose metadata as ``predict`` reads it.

A checkpoint records its card and codec beside the weights (:mod:`frpose_cli.weights.checkpoint`); an export
records them in its metadata (:mod:`frpose_cli.runtime.export_format`): one account of both, so a file and
the file exported from it read alike.
"""
from __future__ import annotations

from pathlib import Path

from frpose_cli.errors import FrposeError

PRECISION_OF_DTYPE = {"torch.float32": "fp32", "torch.bfloat16": "bf16", "torch.float16": "fp16"}


def _names(names, n: int = 5) -> str:
    names = list(names)
    return ", ".join(names[:n]) + (f", … (+{len(names) - n} more)" if len(names) > n else "")


def add_model_rows(report, card, fits: str, codec: dict | None, precision: str, source: str, where: str) -> None:
    """The rows every frpose file gets (``report``: an inspection.WeightsReport); ``where`` says where the card
    is recorded, ``fits`` is appended to the card's row (e.g. ": fits")."""
    codec = codec or {}
    name = codec.get("name") or card.codec
    sigma, stride = codec.get("sigma", card.sigma), codec.get("stride", card.stride)
    report.add("card", f"{card.name} ({where}){fits}")
    report.add("input size", f"{card.input_size[0]}x{card.input_size[1]} ({where})")
    report.add("codec", f"{name} (σ {float(sigma):g}, stride {stride})")
    report.add("keypoints", f"{card.keypoints.num_keypoints}: {_names(card.keypoints.names)}")
    report.add("channel order", f"{card.channel_order} ({where})")
    report.add("precision", precision)
    report.add("source", source)


def checkpoint_precision(state_dict: dict) -> str:
    """The floating tensors' dtype as a precision name (a checkpoint runs in any precision asked for)."""
    dtypes = sorted({str(t.dtype) for t in state_dict.values() if hasattr(t, "is_floating_point")
                     and t.is_floating_point()})
    named = [PRECISION_OF_DTYPE.get(d, d) for d in dtypes]
    return f"{' + '.join(named) or 'none'} (the weights'; a checkpoint runs in the --precision asked for)"


def checkpoint_source(obj: dict) -> str:
    """Where an frpose checkpoint came from, by its training record."""
    if "epoch" not in obj:
        return "saved by frpose, with no training record"
    metrics = obj.get("metrics") or {}
    init = obj.get("init") or {}
    return (f"frpose train, after epoch {obj['epoch']}"
            + (f" (val AP {100 * metrics['val_AP']:.1f})" if isinstance(metrics.get("val_AP"), (int, float)) else "")
            + (f", started from {init['source']}" if init.get("source") else ""))


def add_export_rows(report, meta_json: str | None, path: Path):
    """``metadata`` and the model rows of an exported file from its frpose metadata (JSON, or None/"" when it
    carries none); returns its card, or None."""
    from frpose_cli.runtime.export_format import card_from_metadata
    if not meta_json:
        return None
    try:
        card, _, meta = card_from_metadata(meta_json, str(path))
    except (FrposeError, KeyError, TypeError) as e:
        report.add("metadata", f"frpose metadata that cannot be read ({e})")
        return None
    report.add("metadata", f"{meta['format']} (the card, codec and normalisation travel in the file)")
    source = (f"frpose export --format {meta.get('export', '?')}" + (f" of {meta['source']}" if meta.get("source")
              else "") + (f" (torch {meta['torch']})" if meta.get("torch") else ""))
    codec = meta.get("codec") if isinstance(meta.get("codec"), dict) else None
    add_model_rows(report, card, "", codec, f"{meta.get('precision', 'fp32')} (as exported: the file runs in it)",
                   source, "recorded in the metadata")
    return card


def describe_torchscript(report, path: Path) -> None:
    """A TorchScript file's rows (read as ``predict`` reads it; nothing of it runs)."""
    from frpose_cli.runtime.export_format import read_torchscript
    try:
        _, meta_json = read_torchscript(path)
    except FrposeError as e:
        report.add("kind", f"a TorchScript archive torch cannot load: {e}")
        report.add("frpose runs it", "no")
        return
    report.add("kind", "TorchScript module")
    if not meta_json:
        report.add("metadata", "no frpose metadata")
    card = add_export_rows(report, meta_json, path)
    report.add("frpose runs it", "yes: `frpose predict --weights FILE` (torch backend)" if card is not None else
               "no: a TorchScript file without frpose metadata; export its checkpoint with `frpose export`")


def describe_openvino(report, path: Path) -> None:
    """An OpenVINO IR's rows, from the metadata OpenVINO reads out of it (needs the openvino package)."""
    from frpose_cli.runtime import ovrt
    report.add("kind", f"OpenVINO IR (weights in {path.with_suffix('.bin').name})")
    if not ovrt.available():
        report.add("metadata", "not read: " + ovrt.missing_message("reading an OpenVINO IR"))
        report.add("frpose runs it", "with the openvino package (--backend openvino)")
        return
    try:
        meta_json = ovrt.file_metadata(ovrt.read_model(path, "reading an OpenVINO IR"))
    except FrposeError as e:
        report.add("metadata", f"not read: {e}")
        report.add("frpose runs it", "no")
        return
    if not meta_json:
        report.add("metadata", "no frpose metadata")
    card = add_export_rows(report, meta_json, path)
    report.add("frpose runs it", "yes: `frpose predict --weights FILE` (openvino backend)" if card is not None else
               "no: an IR without frpose metadata; export its checkpoint with `frpose export --format openvino`")
