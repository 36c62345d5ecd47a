"""`frpose eval`: the options of :class:`frpose_cli.evaluation.run_eval.EvalOptions`, handed to
:func:`~frpose_cli.evaluation.run_eval.run_eval` (protocol in docs/evaluation.md)."""
from __future__ import annotations

from pathlib import Path

import typer

from frpose_cli.option_ranges import limits
from frpose_cli.cli.options import (BACKEND_HELP, CALIB_DATA_HELP, SIGMAS_HELP, apply_download_options, apply_max_pixels, max_pixels_option, offline_option,
                                    shard_option, strict_hash_option)

# eval is the measurement: a published AP is reproduced at the precision it was measured at, on
# every device (predict keeps `auto` on the CPU, where speed is what the user asked for).
EVAL_PRECISION_HELP = ("fp32 | bf16 | fp16 | int8 | auto (default: fp32 on every device, the reference precision "
                       "published figures were measured at; auto: the fastest precision that passes the accuracy "
                       "gate, as predict uses on the CPU)")


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
                             "DATA/annotations/person_keypoints_SPLIT.json); or PoseTrack ground truth (a "
                             "folder of per-sequence files, or one): poseval's AP and MOTA of --results"),
    images: Path = typer.Option(None, "--images", help="Image folder (default: DATA/SPLIT)"),
    boxes: Path = typer.Option(None, "--boxes", help="Person detection results JSON (COCO format, category 1); "
                               "default: the one file in DATA/person_detection_results"),
    gt_boxes: bool = typer.Option(False, "--gt-boxes", help="Crop ground-truth boxes instead of detections"),
    detector: str = typer.Option(None, "--detector", help="Find the person boxes with this zoo detector (or auto) "
                                 "instead of a detection file; they are written beside the results "
                                 "(RESULTS-detections.json). Default: the detection file (the paper's protocol)"),
    detector_weights: str = typer.Option(None, "--detector-weights", help="Weights of the --detector architecture, "
                                         "file or URL (default: the zoo's)"),
    det_size: int = typer.Option(None, "--det-size", **limits("--det-size"),
        help="Detector input size (default: the detector's own)"),
    det_thr: float = typer.Option(0.0, "--det-thr", **limits("--det-thr"),
        help="Minimum detection score (the protocol keeps all: 0)"),
    flip: bool = typer.Option(True, "--flip/--no-flip", help="Flip test (average with the mirrored crop)"),
    codec: str = typer.Option(None, "--codec", help="Heatmap decoding: sbn | dark | udp (mmpose's) | dark-clip | "
                              "udp-clip (frpose's bounded step); default: the card's"),
    flip_shift: float = typer.Option(None, "--flip-shift", **limits("--flip-shift"),
        help="Heatmap shift after flipping back, in heatmap "
                                     "pixels (default: derived from the codec: at stride 4 sbn 1, dark 0.75; 0 at "
                                     "stride 1 and for udp)"),
    oracle: bool = typer.Option(False, "--oracle", help="Replace the network by the codec applied to the ground "
                                "truth: the AP the heatmap representation itself allows"),
    input_size: str = typer.Option(None, "--input-size", help="HxW for --oracle and for published weights, "
                                   "which do not record it (default: the card's)"),
    results: Path = typer.Option(None, "--results", help="Evaluate this COCO keypoint results JSON (no model); "
                                 "with PoseTrack --ann, the prediction files (same names)"),
    out: Path = typer.Option(None, "--out", "-o", help="Write the COCO-format results here, never over an existing file "
                             "(default: a new runs/eval/runN/results.json, oracle-results.json with --oracle)"),
    json_out: Path = typer.Option(None, "--json", help="Write the ten figures (AP … ARL) as JSON here (a new file)"),
    backend: str = typer.Option("auto", "--backend", help=BACKEND_HELP),
    precision: str = typer.Option("fp32", "--precision", help=EVAL_PRECISION_HELP),
    calib_data: Path = typer.Option(None, "--calib-data", help=CALIB_DATA_HELP),
    cocoeval: str = typer.Option("pycocotools", "--cocoeval", help="The COCOeval that scores: pycocotools (the "
                                 "reference) | faster (faster-coco-eval, same figures, quicker)"),
    batch_size: int = typer.Option(32, "--batch-size", "-b", **limits("--batch-size"),
        help="Person crops per network batch"),
    workers: int = typer.Option(2, "--workers", "-j", **limits("--workers"), help="DataLoader worker processes"),
    device: str = typer.Option(None, "--device", help="cpu, cuda or cuda:N (default: cuda if available)"),
    nms_thr: float = typer.Option(0.9, "--nms-thr", **limits("--nms-thr"), help="OKS-NMS threshold per image"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars"),
    offline: bool = offline_option(),
    strict_hash: bool = strict_hash_option(),
    max_pixels: int = max_pixels_option(),
    sigmas: str = typer.Option(None, "--sigmas", help=SIGMAS_HELP + "; with --weights the checkpoint's σ "
                               "come before COCO's table"),
    pck_alpha: float = typer.Option(0.2, "--pck", **limits("--pck"), help="PCK threshold α, a fraction of --pck-ref"),
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
    shard: str = shard_option("images"),
) -> None:
    """COCO keypoint AP with the official protocol: boxes → crops → flip test → decode →
    rescoring → OKS-NMS → COCOeval.  Or score a results file (--results), or the codec alone (--oracle)."""
    from frpose_cli.cards import parse_input_size
    from frpose_cli.evaluation.run_eval import EvalOptions, run_eval

    apply_download_options(offline, strict_hash)
    apply_max_pixels(max_pixels)
    run_eval(EvalOptions(
        model=model, weights=weights, data=data, split=split, ann=ann, images=images, boxes=boxes,
        gt_boxes=gt_boxes, detector=detector, detector_weights=detector_weights, det_size=det_size, det_thr=det_thr, flip=flip, codec=codec, flip_shift=flip_shift, oracle=oracle,
        input_size=parse_input_size(input_size) if input_size else None, results=results, out=out,
        json_out=json_out, backend=backend, precision=precision, calib_data=calib_data, cocoeval=cocoeval,
        batch_size=batch_size, workers=workers, device=device, nms_thr=nms_thr, progress=progress, sigmas=sigmas,
        pck_alpha=pck_alpha, pck_ref=pck_ref, analyze=analyze, compare=compare, analysis_dir=analysis_dir, alg=alg,
        shard=shard))
