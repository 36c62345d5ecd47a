"""`frpose eval`: thin option parsing over :mod:`frpose_cli.evaluate` (protocol in docs/evaluation.md)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from .options import CALIB_DATA_HELP, PRECISION_HELP

DET_FOLDER = "person_detection_results"


def _log(msg: str) -> None:
    print(f"frpose: {msg}", file=sys.stderr)


def _paths(data: Path | None, split: str, ann: Path | None, images: Path | None):
    from ..errors import FrposeError
    if ann is None:
        if data is None:
            raise FrposeError("give --data COCO_ROOT (or --ann ANN.json and --images DIR)")
        ann = data / "annotations" / f"person_keypoints_{split}.json"
    if images is None and data is not None:
        images = data / split
    return ann, images


def _default_boxes(data: Path | None):
    """The one detection file under COCO_ROOT/person_detection_results, if there is exactly one."""
    from ..errors import FrposeError
    found = sorted((data / DET_FOLDER).glob("*.json")) if data is not None and (data / DET_FOLDER).is_dir() else []
    if len(found) == 1:
        return found[0]
    where = f"{data / DET_FOLDER} holds {len(found)} JSON files" if data is not None else "no --data given"
    raise FrposeError(f"choose the person boxes: --boxes DET_JSON (detector results) or --gt-boxes ({where})")


def evaluate(
    model: str = typer.Argument(None, help="Model card name, e.g. frpose-r34 (optional with --weights, "
                                "which records it; needed for --oracle)"),
    weights: Path = typer.Option(None, "--weights", "-w", help="Checkpoint from `frpose train`, a published "
                                 "Simple Baselines / mmpose file (sbn-* cards), or an `frpose export` ONNX/"
                                 "TorchScript file"),
    data: Path = typer.Option(None, "--data", help="COCO root: annotations/, SPLIT/ images, "
                              "person_detection_results/"),
    split: str = typer.Option("val2017", "--split", help="Split under --data"),
    ann: Path = typer.Option(None, "--ann", help="Keypoint annotation JSON (default: "
                             "DATA/annotations/person_keypoints_SPLIT.json)"),
    images: Path = typer.Option(None, "--images", help="Image folder (default: DATA/SPLIT)"),
    boxes: Path = typer.Option(None, "--boxes", help="Person detection results JSON (COCO format, category 1); "
                               "default: the one file in DATA/person_detection_results"),
    gt_boxes: bool = typer.Option(False, "--gt-boxes", help="Crop ground-truth boxes instead of detections"),
    det_thr: float = typer.Option(0.0, "--det-thr", help="Minimum detection score (the protocol keeps all: 0)"),
    flip: bool = typer.Option(True, "--flip/--no-flip", help="Flip test (average with the mirrored crop)"),
    codec: str = typer.Option(None, "--codec", help="Heatmap decoding: sbn | dark | udp (default: the card's)"),
    flip_shift: float = typer.Option(None, "--flip-shift", help="Heatmap shift after flipping back, in heatmap "
                                     "pixels (default: derived from the codec: at stride 4 sbn 1, dark 0.75; 0 at "
                                     "stride 1 and for udp)"),
    oracle: bool = typer.Option(False, "--oracle", help="Replace the network by the codec applied to the ground "
                                "truth: the AP the heatmap representation itself allows"),
    input_size: str = typer.Option(None, "--input-size", help="HxW for --oracle and for published weights, "
                                   "which do not record it (default: the card's)"),
    results: Path = typer.Option(None, "--results", help="Evaluate this COCO keypoint results JSON (no model)"),
    out: Path = typer.Option(None, "--out", "-o", help="Write the COCO-format results here "
                             "(default: runs/eval/MODEL-SPLIT-results.json)"),
    json_out: Path = typer.Option(None, "--json", help="Write the ten figures (AP … ARL) as JSON here"),
    backend: str = typer.Option("auto", "--backend", help="Network runtime: auto | torch | onnxruntime (auto: "
                                "ONNX files on onnxruntime, the rest on torch)"),
    precision: str = typer.Option(None, "--precision", help=PRECISION_HELP),
    calib_data: Path = typer.Option(None, "--calib-data", help=CALIB_DATA_HELP),
    cocoeval: str = typer.Option("pycocotools", "--cocoeval", help="Scoring: pycocotools | faster "
                                 "(faster-coco-eval); `--backend pycocotools|faster` is still accepted"),
    batch_size: int = typer.Option(32, "--batch-size", "-b", help="Person crops per network batch"),
    workers: int = typer.Option(2, "--workers", "-j", help="DataLoader worker processes"),
    device: str = typer.Option(None, "--device", help="cpu, cuda or cuda:N (default: cuda if available)"),
    nms_thr: float = typer.Option(0.9, "--nms-thr", help="OKS-NMS threshold per image"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar"),
) -> None:
    """COCO keypoint AP with the official protocol: boxes → crops → flip test → decode →
    rescoring → OKS-NMS → COCOeval.  Or score a results file (--results), or the codec alone (--oracle)."""
    from ..console import make_console

    from ..cocoeval import METRIC_NAMES, metrics_table
    from ..errors import FrposeError
    from ..fileio import atomic_write_json

    if backend in ("pycocotools", "faster"):   # the name this option had before --cocoeval existed
        backend, cocoeval = "auto", backend
    if batch_size < 1 or workers < 0:
        raise FrposeError("--batch-size must be ≥ 1 and --workers ≥ 0")
    if boxes is not None and gt_boxes:
        raise FrposeError("--boxes and --gt-boxes exclude each other")
    ann_file, image_dir = _paths(data, split, ann, images)
    start = time.perf_counter()
    if results is not None:
        if model or weights or oracle:
            raise FrposeError("--results evaluates a file; it takes no MODEL, --weights or --oracle")
        from ..evaluate import evaluate_results_file
        report = evaluate_results_file(results, ann_file, cocoeval)
        title = f"{results.name} on {ann_file.name}"
    elif oracle:
        if not model:
            raise FrposeError("--oracle needs a MODEL card name (its stride, σ and codec are measured)")
        if boxes is not None:
            raise FrposeError("--oracle uses ground-truth boxes (it encodes the ground truth); drop --boxes")
        from ..cards import load_card
        from ..evaluate import evaluate_oracle, resolve_codec
        card = load_card(model, input_size=input_size)
        report = evaluate_oracle(card, ann_file, codec=codec, flip=False, backend=cocoeval)
        c = resolve_codec(card, codec)
        title = (f"oracle {card.name} {card.input_size[0]}x{card.input_size[1]}: codec {c.name}, stride "
                 f"{c.stride}, σ {c.sigma:g} (median error {report['median_error_px']:.2f} px)")
    else:
        if weights is None:
            raise FrposeError("give --weights CKPT (or --oracle, or --results RESULTS.json)")
        if image_dir is None:
            raise FrposeError("give --data COCO_ROOT or --images DIR")
        from ..cards import parse_input_size
        from ..device import pick_device
        from ..evaluate import evaluate_model, resolve_codec
        from ..inference import flip_shift_for_codec
        from ..runtime import load_pose_model
        dev = pick_device(device)
        net = load_pose_model(weights, model_name=model, backend=backend, device=dev,
                              input_size=parse_input_size(input_size) if input_size else None,
                              precision=precision, calib_data=calib_data, log=_log)
        card = net.card
        box_source = None if gt_boxes else (boxes or _default_boxes(data))
        c = resolve_codec(card, codec or net.codec_name)
        shift = flip_shift_for_codec(c) if flip_shift is None else flip_shift
        _log(f"{card.name} {card.input_size[0]}x{card.input_size[1]} on {dev} ({net.backend}, {net.setup}) in "
             f"{net.precision}: boxes "
             f"{'ground truth' if box_source is None else box_source}, codec {c.name}, flip test "
             + (f"on (shift {shift:g} heatmap px)" if flip else "off"))
        report = evaluate_model(net, card, ann_file, image_dir, boxes=box_source, flip=flip, codec=c,
                                batch_size=batch_size, workers=workers, det_score_thr=det_thr,
                                flip_shift=shift, nms_thr=nms_thr, backend=cocoeval, progress=progress)
        title = f"{card.name} on {ann_file.name} ({'GT' if box_source is None else 'detector'} boxes)"
    seconds = time.perf_counter() - start
    if results is None:
        out = out or Path("runs") / "eval" / f"{model or card.name}-{split}-results.json"
        atomic_write_json(out, report["results"])
        _log(f"results: {out}")
    if report["skipped"]:
        _log("skipped: " + "; ".join(f"{n} {why}" for why, n in sorted(report["skipped"].items())))
    make_console().print(metrics_table(report, title=title))
    print(f"eval: {report['num_instances']} poses scored in {seconds:.1f} s")
    if json_out is not None:
        atomic_write_json(json_out, {name: report[name] for name in METRIC_NAMES}, indent=2)
        _log(f"metrics: {json_out}")
