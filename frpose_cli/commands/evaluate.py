"""`frpose eval`: thin option parsing over :mod:`frpose_cli.evaluate` (protocol in docs/evaluation.md)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from .options import CALIB_DATA_HELP, PRECISION_HELP, apply_offline, offline_option
from .train import SIGMAS_HELP

DET_FOLDER = "person_detection_results"


def is_image_info_file(ann_file) -> bool:
    """An image-info file (test-dev: images, no annotations), whose outputs testdev.py names itself."""
    from ..testdev import is_image_info
    try:
        return bool(is_image_info(ann_file))
    except Exception:   # unreadable files are reported, in one line, where they are loaded
        return False


def _log(msg: str) -> None:
    print(f"frpose: {msg}", file=sys.stderr)


def _paths(data: Path | None, split: str, ann: Path | None, images: Path | None):
    """COCO's layout; test splits (test-dev2017) have an image-info file and test2017/ images."""
    from ..errors import FrposeError
    test = split.startswith("test")
    if data is not None and not data.is_dir():
        raise FrposeError(f"--data {data}: no such folder (expected a COCO root with annotations/ and {split}/)")
    if ann is None:
        if data is None:
            raise FrposeError("give --data COCO_ROOT (or --ann ANN.json and --images DIR)")
        ann = data / "annotations" / (f"image_info_{split}.json" if test else f"person_keypoints_{split}.json")
    if images is None and data is not None:
        images = data / ("test2017" if test else split)
    return ann, images


def _default_boxes(data: Path | None, split: str = ""):
    """The detection file under COCO_ROOT/person_detection_results: the only one, or the only
    one whose name holds the split (e.g. ..._val2017_... beside ..._test-dev2017_...)."""
    from ..errors import FrposeError
    found = sorted((data / DET_FOLDER).glob("*.json")) if data is not None and (data / DET_FOLDER).is_dir() else []
    if len(found) > 1:
        found = [f for f in found if split and split in f.name] or found
    if len(found) == 1:
        return found[0]
    where = f"{data / DET_FOLDER} holds {len(found)} JSON files" if data is not None else "no --data given"
    raise FrposeError(f"choose the person boxes: --boxes DET_JSON (detector results) or --gt-boxes ({where})")


def evaluate(
    model: str = typer.Argument(None, help="Model card name, e.g. sbn-r50 (optional with --weights, which "
                                "records it; needed for --oracle). Without --weights: the card's zoo weights"),
    weights: str = typer.Option(None, "--weights", "-w", help="Checkpoint from `frpose train`, a published "
                                "Simple Baselines / mmpose file, an `frpose export` ONNX/TorchScript file, a zoo "
                                "name or an http(s) URL"),
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
    codec: str = typer.Option(None, "--codec", help="Heatmap decoding: sbn | dark | udp (mmpose's) | dark-clip | "
                              "udp-clip (frpose's bounded step); default: the card's"),
    flip_shift: float = typer.Option(None, "--flip-shift", help="Heatmap shift after flipping back, in heatmap "
                                     "pixels (default: derived from the codec: at stride 4 sbn 1, dark 0.75; 0 at "
                                     "stride 1 and for udp)"),
    oracle: bool = typer.Option(False, "--oracle", help="Replace the network by the codec applied to the ground "
                                "truth: the AP the heatmap representation itself allows"),
    input_size: str = typer.Option(None, "--input-size", help="HxW for --oracle and for published weights, "
                                   "which do not record it (default: the card's)"),
    results: Path = typer.Option(None, "--results", help="Evaluate this COCO keypoint results JSON (no model)"),
    out: Path = typer.Option(None, "--out", "-o", help="Write the COCO-format results here, never over an existing file "
                             "(default: a new runs/eval/runN/results.json, oracle-results.json with --oracle)"),
    json_out: Path = typer.Option(None, "--json", help="Write the ten figures (AP … ARL) as JSON here (a new file)"),
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
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars"),
    offline: bool = offline_option(),
    sigmas: str = typer.Option(None, "--sigmas", help=SIGMAS_HELP + "; with --weights the checkpoint's σ "
                               "come before COCO's table"),
    pck_alpha: float = typer.Option(0.2, "--pck", help="PCK threshold α, a fraction of --pck-ref"),
    pck_ref: str = typer.Option("box", "--pck-ref", help="PCK reference length: box (longer side), torso, head, "
                                "or two keypoint names A,B"),
    analyze: bool = typer.Option(False, "--analyze", help="Keypoint error diagnosis (Ronchi & Perona 2017): "
                                 "jitter/inversion/swap/miss, AP after correcting each, background errors, "
                                 "optimal rescoring; tables, --json figures and PNGs in --analysis-dir"),
    compare: Path = typer.Option(None, "--compare", help="With --analyze: another results file (or the --json "
                                 "of an --analyze run) shown side by side"),
    analysis_dir: Path = typer.Option(None, "--analysis-dir", help="Folder for the --analyze PNGs and "
                                      "analysis.json (default: a new runs/analyze/runN)"),
    alg: str = typer.Option(None, "--alg", help="test-dev: algorithm name in the server's file name "
                            "person_keypoints_SPLIT_ALG_results.json (default: the card name)"),
) -> None:
    """COCO keypoint AP with the official protocol: boxes → crops → flip test → decode →
    rescoring → OKS-NMS → COCOeval.  Or score a results file (--results), or the codec alone (--oracle)."""
    from ..console import make_console

    from ..cocoeval import METRIC_NAMES, load_ground_truth, metrics_table
    from ..errors import FrposeError
    from ..fileio import atomic_write_json
    from ..oks_sigmas import describe as describe_sigmas
    from ..pck import pck, reference_points

    apply_offline(offline)
    if backend in ("pycocotools", "faster"):   # the name this option had before --cocoeval existed
        backend, cocoeval = "auto", backend
    if batch_size < 1 or workers < 0:
        raise FrposeError("--batch-size must be ≥ 1 and --workers ≥ 0")
    if boxes is not None and gt_boxes:
        raise FrposeError("--boxes and --gt-boxes exclude each other")
    if compare is not None and not analyze:
        raise FrposeError("--compare is for --analyze: add --analyze")
    if not pck_alpha > 0:
        raise FrposeError(f"--pck must be a positive fraction (got {pck_alpha})")
    ann_file, image_dir = _paths(data, split, ann, images)
    if results is None and not oracle and weights is None and model:   # cheap checks before reading files
        from ..cards import parse_input_size
        from ..weights import default_weights_for
        weights = default_weights_for(model, parse_input_size(input_size) if input_size else None)

    def ground_truth(recorded=None):
        """The annotations with their OKS σ; a bad --pck-ref fails here, before any network runs."""
        gt = load_ground_truth(ann_file, sigmas, recorded=recorded, warn=_log)
        reference_points(gt.keypoints, pck_ref)
        return gt

    # Outputs are checked before any work, and results of another run are never overwritten.
    from ..outputs import check_output_file
    from ..run_folder import next_run_dir
    if out is None and results is None and not is_image_info_file(ann_file):
        out = next_run_dir(Path("runs/eval")) / ("oracle-results.json" if oracle else "results.json")
    if out is not None and results is None and not is_image_info_file(ann_file):
        check_output_file(out, "--out", overwrite=False)
    if json_out is not None:
        check_output_file(json_out, "--json", overwrite=False)
    if analyze:
        from ..analyze_report import check_analysis_dir
        analysis_dir = check_analysis_dir(analysis_dir or next_run_dir(Path("runs/analyze")))
    start = time.perf_counter()
    if results is not None:
        if model or weights or oracle:
            raise FrposeError("--results evaluates a file; it takes no MODEL, --weights or --oracle")
        from ..evaluate import evaluate_results_file
        gt = ground_truth()
        report = evaluate_results_file(results, ann_file, cocoeval, gt=gt)
        title = f"{results.name} on {ann_file.name}"
    elif oracle:
        if not model:
            raise FrposeError("--oracle needs a MODEL card name (its stride, σ and codec are measured)")
        if boxes is not None:
            raise FrposeError("--oracle uses ground-truth boxes (it encodes the ground truth); drop --boxes")
        from ..cards import load_card
        from ..evaluate import evaluate_oracle, resolve_codec
        card = load_card(model, input_size=input_size)
        gt = ground_truth(card.keypoints)
        report = evaluate_oracle(card, ann_file, codec=codec, flip=False, backend=cocoeval, gt=gt)
        c = resolve_codec(card, codec)
        title = (f"oracle {card.name} {card.input_size[0]}x{card.input_size[1]}: codec {c.name}, stride "
                 f"{c.stride}, σ {c.sigma:g} (median error {report['median_error_px']:.2f} px)")
    else:
        if weights is None and not model:
            raise FrposeError("give --weights CKPT or a MODEL with zoo weights (or --oracle, or --results RESULTS.json)")
        if image_dir is None:
            raise FrposeError("give --data COCO_ROOT or --images DIR")
        from ..cards import parse_input_size
        from ..device import pick_device
        from ..evaluate import evaluate_model, resolve_codec
        from ..inference import flip_shift_for_codec
        from ..runtime import load_pose_model
        dev = pick_device(device)
        from ..testdev import check_submission_paths, is_image_info, results_name
        test_dev = is_image_info(ann_file)
        if test_dev and (gt_boxes or analyze):
            raise FrposeError(f"{ann_file.name} has no annotations (a test split): scores come from the COCO "
                              "server, so --gt-boxes and --analyze need a split with annotations (val2017)")
        if test_dev and alg:
            results_name(split, alg)          # a bad name fails before the model loads
        if test_dev and out is not None:
            check_submission_paths(Path(out))
        size = parse_input_size(input_size) if input_size else None
        net = load_pose_model(weights, model_name=model, backend=backend, device=dev, input_size=size,
                              progress=progress, precision=precision, calib_data=calib_data, log=_log)
        card = net.card
        gt = None if test_dev else ground_truth(card.keypoints)
        box_source = None if gt_boxes else (boxes or _default_boxes(data, split))
        c = resolve_codec(card, codec or net.codec_name)
        shift = flip_shift_for_codec(c) if flip_shift is None else flip_shift
        flip_off = f"off ({card.keypoints.flip_problem()})" if flip and not card.keypoints.can_flip else "off"
        flip = flip and card.keypoints.can_flip
        _log(f"weights {net.weights} ({net.what}, {card.channel_order.upper()} input)")
        _log(f"{card.name} {card.input_size[0]}x{card.input_size[1]} on {dev} ({net.backend}, {net.setup}) in "
             f"{net.precision}: boxes "
             f"{'ground truth' if box_source is None else box_source}, codec {c.name}, flip test "
             + (f"on (shift {shift:g} heatmap px)" if flip else flip_off))
        kwargs = dict(boxes=box_source, flip=flip, codec=c, batch_size=batch_size, workers=workers,
                      det_score_thr=det_thr, flip_shift=shift, nms_thr=nms_thr, backend=cocoeval, progress=progress)
        if test_dev:
            from ..testdev import run_test_dev
            run_test_dev(net, card, ann_file, image_dir, split, alg, out, **kwargs)
            return
        report = evaluate_model(net, card, ann_file, image_dir, gt=gt, **kwargs)
        title = f"{card.name} on {ann_file.name} ({'GT' if box_source is None else 'detector'} boxes)"
    seconds = time.perf_counter() - start
    if results is None:
        atomic_write_json(out, report["results"])
        _log(f"results: {out}")
    if report.get("damaged_images"):
        _log(f"warning: {report['damaged_images']} images have damaged JPEG data (decoded anyway, their poses scored)")
    if report["skipped"]:
        _log("skipped: " + "; ".join(f"{n} {why}" for why, n in sorted(report["skipped"].items())))
    _log(describe_sigmas(gt.keypoints))
    pck_result = pck(gt, report["results"], pck_alpha, pck_ref)
    console = make_console()
    console.print(metrics_table(report, title=title))
    print(pck_result.line())
    print(f"eval: {report['num_instances']} poses scored in {seconds:.1f} s")
    figures = {**{name: report[name] for name in METRIC_NAMES}, **pck_result.to_dict()}
    if analyze:
        from ..analyze_report import run_analysis
        name = results.stem if results is not None else ("oracle " if oracle else "") + card.name
        figures["analysis"] = run_analysis(report["results"], ann_file, name, compare, analysis_dir, console)
        _log(f"analysis: {analysis_dir}")
    if json_out is not None:
        atomic_write_json(json_out, figures, indent=2)
        _log(f"metrics: {json_out}")
