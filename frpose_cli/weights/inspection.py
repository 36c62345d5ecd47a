"""``frpose models --inspect FILE|URL|NAME``: what a weights file is, in one screen.

For a user debugging a file found online: the container (zip or legacy ``torch.save``, ONNX,
TorchScript; a zip cut short is named so), its top-level parts and which of them frpose reads,
the key layout, the card it fits (or why not), channel order, the input size if the file records one, how many tensors are
used and the names of those ignored, and the Python globals its pickle needs: plain data torch
allows, inert placeholders (:mod:`frpose_cli.weights.inert`), or refused.  Nothing in the file is
run to find this out: the globals are read with :func:`~frpose_cli.weights.checkpoint.scan_globals`
before anything is unpickled, and a file needing a refused global is described, not loaded.
An ONNX file is described by its graph (:mod:`frpose_cli.weights.onnx_inspection`), a TorchScript or OpenVINO
export by its metadata; a checkpoint and every export share the rows that say what model the file holds
(card, input size, codec, keypoints, channel order, precision, source: :mod:`frpose_cli.weights.model_rows`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from frpose_cli.errors import FrposeError
from frpose_cli.weights.checkpoint import (FORMAT as CHECKPOINT_FORMAT, load_state_into, read_checkpoint_file,
                                           runs_code, scan_globals, zip_damage)
from frpose_cli.weights.published import (LAYOUT_CHANNEL_ORDER, LAYOUT_NAMES, infer_depth, load_published_into,
                                          preprocessor_disagreement, recorded_input_size)

# Top-level parts of training checkpoints that hold no weights, and why frpose ignores each.
PART_NOTES = {
    "meta": "metadata (read for the recorded input size only)",
    "message_hub": "mmengine training logs (loss/lr history)",
    "param_schedulers": "learning-rate schedule state",
    "optimizer": "optimizer state",
    "scheduler": "learning-rate schedule state",
    "scaler": "mixed-precision loss scaler",
    "rng": "random-number generator state",
    "epoch": "training progress",
    "iter": "training progress",
    "perf": "a validation score",
    "best_state_dict": "a second copy of the weights",
    "model": "architecture name",
    "best": "the best validation figures so far",
    "train_config": "the training options (for --resume)",
    "partial": "where a stopped epoch stopped (for --resume)",
}
# What frpose reads from its own checkpoints besides the weights (weights.checkpoint.save_checkpoint, train).
CHECKPOINT_PARTS = {"format": "the checkpoint format", "card": "the model card", "codec": "the codec",
                "epoch": "training progress (source)", "metrics": "validation figures (source)",
                "init": "where training started (source)"}


@dataclass
class WeightsReport:
    given: str
    path: Path
    rows: list = field(default_factory=list)     # (label, text) in display order

    def add(self, label: str, text) -> None:
        self.rows.append((label, str(text)))

    def text(self) -> str:
        width = max(len(label) for label, _ in self.rows)
        return "\n".join(f"{label:<{width}}  {value}" for label, value in self.rows)


def _few(names, n: int = 6) -> str:
    names = list(names)
    return ", ".join(names[:n]) + (f" (+{len(names) - n} more)" if len(names) > n else "")


def inspect_weights(given: str) -> WeightsReport:
    from frpose_cli.weights.loader import detect_file_kind, published_state, resolve_weights
    resolved = resolve_weights(str(given), pose_only=False)
    path, entry = resolved.path, resolved.entry
    report = WeightsReport(str(given), path)
    size = path.stat().st_size
    report.add("file", f"{path} ({size / 2 ** 20:.1f} MB)" if size >= 2 ** 20 else f"{path} ({size / 1024:.1f} kB)")
    if entry is not None:
        report.add("zoo entry", f"{entry.name}: {entry.source}")
    kind = detect_file_kind(path)
    if kind == "onnx":
        from frpose_cli.weights.onnx_inspection import describe_onnx
        describe_onnx(report, path)
        return report
    if kind in ("torchscript", "openvino"):
        from frpose_cli.weights.model_rows import describe_openvino, describe_torchscript
        (describe_torchscript if kind == "torchscript" else describe_openvino)(report, path)
        return report
    damage = zip_damage(path)
    if damage:   # nothing in it can be read: say so instead of guessing what the bytes are
        report.add("container", f"DAMAGED: {damage}; get or copy the file again")
        return report
    found = scan_globals(path)
    report.add("container", f"{found.file_format} torch.save file" + (" (pre-1.6 torch)" if found.file_format == "legacy" else ""))
    plain = [n for n in found.names if n not in found.inert and n not in found.refused]
    report.add("globals", (_few(plain, 8) or "none") + " (plain data)")
    report.add("inert", _few(found.inert) + " (rebuilt as inert placeholders, no code run)" if found.inert else "none")
    if found.refused:
        report.add("refused", "; ".join(f"{n} ({'runs code when unpickled' if runs_code(n) else 'not known to be plain data'})"
                                        for n in found.refused) + ": frpose will not unpickle this file")
        return report
    obj = read_checkpoint_file(path)
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        _frpose_checkpoint(report, obj)
        return report
    _published(report, obj, entry, published_state)
    return report


def _parts(report: WeightsReport, obj, weights_key: str | None, read: dict | None = None) -> None:
    """The file's top-level parts: the weights, those read (``read``: part → what it is) and those ignored."""
    if not isinstance(obj, dict) or weights_key is None:
        report.add("parts", "a bare state dict")
        return
    read = read or {}
    others = [k for k in obj if k != weights_key]
    report.add("parts", f"{weights_key} (the weights)" + "".join(
        f"; {k}: read, {read[k]}" if k in read else f"; {k}: ignored, {PART_NOTES.get(k, 'not weights')}"
        for k in others))


def _frpose_checkpoint(report: WeightsReport, obj: dict) -> None:
    from frpose_cli.weights.checkpoint import card_from_checkpoint
    from frpose_cli.weights.model_rows import add_model_rows, checkpoint_precision, checkpoint_source
    card = card_from_checkpoint(obj, report.path)
    _parts(report, obj, "state_dict", CHECKPOINT_PARTS)
    report.add("layout", f"frpose checkpoint ({CHECKPOINT_FORMAT})")
    try:
        load_state_into(card.build_model(), obj["state_dict"], report.path)
        fits = ": fits"
    except FrposeError as e:
        fits = f": does NOT fit: {e}"
    codec = obj.get("codec") if isinstance(obj.get("codec"), dict) else None
    add_model_rows(report, card, fits, codec, checkpoint_precision(obj["state_dict"]), checkpoint_source(obj),
                   "recorded in the file")
    report.add("tensors", f"{len(obj['state_dict'])} used, none ignored")


def _published(report: WeightsReport, obj, entry, published_state) -> None:
    from frpose_cli.cards import load_card
    weights_key = next((k for k in ("state_dict", "model") if isinstance(obj, dict) and k in obj
                        and isinstance(obj[k], dict)), None)
    _parts(report, obj, weights_key)
    layout, state, buffers = published_state(obj, str(report.path))
    report.add("layout", LAYOUT_NAMES.get(layout, f"unknown (keys such as {_few(list(state), 3)})")
               + (" (mmpose 0.x keypoint_head.*)" if layout == "mmpose" and _raw_has(obj, "keypoint_head.") else ""))
    size = (entry.input_size if entry else None) or recorded_input_size(obj)
    ignored = [f"data_preprocessor.{k}" for k in buffers]
    if layout == "unknown" and any(k.startswith("rpn.") for k in state) and any(k.startswith("roi_heads.") for k in state):
        report.add("card", "none: a torchvision Faster R-CNN, the person detector (--detector-weights)")
        report.add("tensors", f"{len(state)}")
        return
    if layout in ("unknown", "resnet"):
        report.add("card", "none: " + ("an ImageNet classifier, for `train --pretrained`" if layout == "resnet"
                                       else "not a pose layout frpose knows"))
        report.add("tensors", f"{len(state)} (none used for pose)" + (f"; ignored: {_few(ignored)}" if ignored else ""))
        return
    name = (entry.card if entry else None) or (f"sbn-r{infer_depth(state)}" if layout != "frpose" and infer_depth(state)
                                                else None)
    report.add("input size", f"{size[0]}x{size[1]} (" + ("zoo entry" if entry else "recorded in meta") + ")"
               if size else "not recorded (the card's default, or --input-size)")
    if name is None:
        report.add("card", "not recorded: pass --model (a bare frpose state dict)" if layout == "frpose" else
                   f"none: no ResNet encoder frpose knows (keys such as {_few(list(state), 3)})")
    else:
        card = load_card(name, input_size=size)
        try:
            net = card.build_model()
            (load_state_into(net, state, report.path) if layout == "frpose"
             else load_published_into(net, card, state, layout, str(report.path)))
            report.add("card", f"{name}: fits")
        except FrposeError as e:
            report.add("card", f"{name}: does NOT fit: {e}")
        note = preprocessor_disagreement(buffers, card)
        if buffers:
            report.add("preprocessing", note or f"data_preprocessor mean/std agree with {name}'s normalisation")
    order = entry.channel_order if entry else LAYOUT_CHANNEL_ORDER.get(layout, "rgb")
    report.add("channel order", f"{order} (what {LAYOUT_NAMES[layout]} weights were trained on)")
    report.add("tensors", f"{len(state)} used" + (f"; {len(ignored)} ignored: {_few(ignored)} "
                                                   "(mmengine preprocessing buffers, not weights)" if ignored else
                                                   ", none ignored"))


def _raw_has(obj, prefix: str) -> bool:
    inner = obj.get("state_dict", obj) if isinstance(obj, dict) else {}
    return isinstance(inner, dict) and any(str(k).startswith(prefix) for k in inner)
