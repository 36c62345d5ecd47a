"""``frpose models --inspect FILE.onnx``: the graph's inputs and outputs, its frpose metadata, and
whether frpose runs it.

frpose runs an ONNX graph that is a pose heatmap model — one float image input N×3×H×W (N fixed
or symbolic) whose first output is heatmaps N×K×h×w — *and* carries frpose metadata (the card:
keypoint names, input normalisation, codec), read as :func:`frpose_cli.load.load_onnx` reads it and
described in the rows a checkpoint gets (:mod:`frpose_cli.weights.model_rows`).
A pose model without the metadata is named as one, with how to get a file frpose runs; anything
else (a classifier, a detector, bytes that only have the name) is described by what it holds.
"""
from __future__ import annotations

from pathlib import Path

from frpose_cli.errors import FrposeError
from frpose_cli.weights.model_rows import add_export_rows

HEATMAP_MODEL = "one float input N×3×H×W giving heatmaps N×K×h×w"


def _dtype(ort_type: str) -> str:
    """ONNX Runtime's ``tensor(float)`` as ``float32``; sequences and maps as they are."""
    inner = ort_type[len("tensor("):-1] if ort_type.startswith("tensor(") else ort_type
    return {"float": "float32", "double": "float64"}.get(inner, inner)


def _shape(shape) -> str:
    """``batch×3×256×192``: symbolic dimensions by name, unknown ones as ``?``."""
    if shape is None:   # not a tensor, or of unknown rank
        return "?"
    return "×".join("?" if d is None else str(d) for d in shape) if shape else "scalar"


def _tensors(args) -> str:
    return "; ".join(f"{a.name}: {_dtype(a.type)} {_shape(a.shape)}" for a in args) or "none"


def _is_heatmap_model(inputs, outputs) -> bool:
    from frpose_cli.runtime.onnxrt import INPUT_TYPES
    if len(inputs) != 1 or not outputs:
        return False
    image, heatmaps = inputs[0].shape or [], outputs[0].shape or []
    if len(image) != 4 or len(heatmaps) != 4 or image[1] != 3:
        return False
    other_batch = isinstance(image[0], int) and isinstance(heatmaps[0], int) and image[0] != heatmaps[0]
    return inputs[0].type in INPUT_TYPES and outputs[0].type.startswith("tensor(float") and not other_batch


def _what_else(outputs) -> str:
    """A guess at a foreign graph's purpose from its outputs, for the user who found it."""
    ranks = [len(o.shape or ()) for o in outputs]
    if ranks == [2]:
        return f"its output {_shape(outputs[0].shape)} is one vector per input: class scores or features (a classifier?)"
    if len(outputs) >= 2 and 2 in ranks and 3 in ranks:
        return "boxes and scores among its outputs: a detector?"
    return "its outputs do not look like heatmaps"


def describe_onnx(report, path: Path) -> None:
    """Add the ONNX file's rows to ``report`` (an inspection.WeightsReport)."""
    from frpose_cli.runtime.export_format import METADATA_KEY
    from frpose_cli.runtime.onnxrt import ort_session
    try:
        session = ort_session(str(path), threads=1)
    except FrposeError as e:
        if "INVALID_PROTOBUF" in str(e):   # ONNX Runtime's code for bytes that are no ONNX model at all
            report.add("kind", f"not a readable ONNX model: its {path.stat().st_size} bytes do not parse as "
                               "one (a damaged or cut-short file, or only its name says ONNX)")
        else:
            report.add("kind", f"an ONNX file that ONNX Runtime cannot load: {e}")
        report.add("frpose runs it", "no")
        return
    modelmeta = session.get_modelmeta()
    inputs, outputs = session.get_inputs(), session.get_outputs()
    report.add("kind", "ONNX model" + (f" (producer: {modelmeta.producer_name})" if modelmeta.producer_name else ""))
    report.add("inputs", _tensors(inputs))
    report.add("outputs", _tensors(outputs))
    meta_json = modelmeta.custom_metadata_map.get(METADATA_KEY)
    if meta_json is None:
        others = sorted(modelmeta.custom_metadata_map)
        report.add("metadata", "no frpose metadata" + (f" (other keys: {', '.join(others)})" if others else ""))
    card = add_export_rows(report, meta_json, path)
    if not _is_heatmap_model(inputs, outputs):
        report.add("frpose runs it", f"no: not a pose heatmap model (frpose runs {HEATMAP_MODEL}); "
                                     + _what_else(outputs))
        return
    heatmaps = outputs[0].shape[1]
    if card is None:
        report.add("frpose runs it", f"no, not as it is: a pose heatmap model ({heatmaps} heatmaps) without frpose "
                                     "metadata, so its keypoints, input normalisation and codec are unknown; export "
                                     "its checkpoint with `frpose export`")
    elif isinstance(heatmaps, int) and heatmaps != card.keypoints.num_keypoints:
        report.add("frpose runs it", f"no: the graph gives {heatmaps} heatmaps, its metadata's card "
                                     f"{card.keypoints.num_keypoints} keypoints")
    else:
        report.add("frpose runs it", "yes: a pose heatmap model with its card in the metadata "
                                     "(`frpose predict --weights FILE`, onnxruntime backend)")
