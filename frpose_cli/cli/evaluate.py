"""`frpose eval`: thin option parsing over :mod:`frpose_cli.evaluation.evaluate` (protocol in docs/evaluation.md)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from frpose_cli.cli.options import BACKEND_HELP, CALIB_DATA_HELP, apply_download_options, offline_option, strict_hash_option, shard_option
from frpose_cli.cli.train import SIGMAS_HELP

DET_FOLDER = "person_detection_results"


def is_image_info_file(ann_file) -> bool:
    """An image-info file (test-dev: images, no annotations), whose outputs testdev.py names itself."""
    from frpose_cli.evaluation.testdev import is_image_info
    try:
        return bool(is_image_info(ann_file))
    except Exception:   # unreadable files are reported, in one line, where they are loaded
        return False


def _log(msg: str) -> None:
    print(f"frpose: {msg}", file=sys.stderr)


def _paths(data: Path | None, split: str, ann: Path | None, images: Path | None):
    """COCO's layout; test splits (test-dev2017) have an image-info file and test2017/ images."""
    from frpose_cli.errors import FrposeError
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
    from frpose_cli.errors import FrposeError
    found = sorted((data / DET_FOLDER).glob("*.json")) if data is not None and (data / DET_FOLDER).is_dir() else []
    if len(found) > 1:
        found = [f for f in found if split and split in f.name] or found
    if len(found) == 1:
        return found[0]
    where = f"{data / DET_FOLDER} holds {len(found)} JSON files" if data is not None else "no --data given"
    raise FrposeError(f"choose the person boxes: --boxes DET_JSON (detector results) or --gt-boxes ({where})")


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
    backend: str = typer.Option("auto", "--backend", help=BACKEND_HELP),
    precision: str = typer.Option("fp32", "--precision", help=EVAL_PRECISION_HELP),
    calib_data: Path = typer.Option(None, "--calib-data", help=CALIB_DATA_HELP),
    cocoeval: str = typer.Option("pycocotools", "--cocoeval", help="The COCOeval that scores: pycocotools (the "
                                 "reference) | faster (faster-coco-eval, same figures, quicker)"),
    batch_size: int = typer.Option(32, "--batch-size", "-b", help="Person crops per network batch"),
    workers: int = typer.Option(2, "--workers", "-j", help="DataLoader worker processes"),
    device: str = typer.Option(None, "--device", help="cpu, cuda or cuda:N (default: cuda if available)"),
    nms_thr: float = typer.Option(0.9, "--nms-thr", help="OKS-NMS threshold per image"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars"),
    offline: bool = offline_option(),
    strict_hash: bool = strict_hash_option(),
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
    shard: str = shard_option("images"),
) -> None:
    """COCO keypoint AP with the official protocol: boxes → crops → flip test → decode →
    rescoring → OKS-NMS → COCOeval.  Or score a results file (--results), or the codec alone (--oracle)."""
    from frpose_cli.metrics.cocoeval import load_ground_truth
    from frpose_cli.errors import FrposeError
    from frpose_cli.metrics.pck import reference_points
    from frpose_cli.distributed import world_size
    from frpose_cli.inference import shards

    apply_download_options(offline, strict_hash)
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
        from frpose_cli.cards import parse_input_size
        from frpose_cli.weights.loader import default_weights_for
        weights = default_weights_for(model, parse_input_size(input_size) if input_size else None)

    def ground_truth(recorded=None):
        """The annotations with their OKS σ; a bad --pck-ref fails here, before any network runs."""
        gt = load_ground_truth(ann_file, sigmas, recorded=recorded, warn=_log)
        reference_points(gt.keypoints, pck_ref)
        return gt

    # Shards split the network's work (torchrun ranks or --shard i/n: frpose_cli.inference.shards).
    if (shard or world_size() > 1) and (results is not None or oracle):
        raise FrposeError("--results and --oracle run no network: run them in one process, without --shard or torchrun")
    job = shards.shard_for(shard, device) if results is None and not oracle else shards.Shard()
    test_split = is_image_info_file(ann_file)
    if job.sharded and not job.torchrun and out is None and not test_split:
        raise FrposeError("--shard needs --out RESULTS.json: every shard writes its part beside it "
                          "(OUT-parts/), and the last one merges into it")

    def outputs():
        """Outputs are checked before any work, and results of another run are never overwritten."""
        from frpose_cli.outputs import check_output_file
        from frpose_cli.inference.run_folder import next_run_dir
        where, folder = out, analysis_dir
        if where is None and results is None and not test_split:
            where = next_run_dir(Path("runs/eval")) / ("oracle-results.json" if oracle else "results.json")
        if where is not None and results is None and not test_split:
            check_output_file(where, "--out", overwrite=False)
        if json_out is not None:
            check_output_file(json_out, "--json", overwrite=False)
        if analyze:
            from frpose_cli.evaluation.analyze_report import check_analysis_dir
            folder = check_analysis_dir(folder or next_run_dir(Path("runs/analyze")))
        return where, folder
    out, analysis_dir = shards.agree(job, outputs)
    say = _log if job.is_main else _quiet
    start = time.perf_counter()
    if results is not None:
        if model or weights or oracle:
            raise FrposeError("--results evaluates a file; it takes no MODEL, --weights or --oracle")
        from frpose_cli.evaluation.evaluate import evaluate_results_file
        gt = ground_truth()
        report = evaluate_results_file(results, ann_file, cocoeval, gt=gt)
        title = f"{results.name} on {ann_file.name}"
    elif oracle:
        if not model:
            raise FrposeError("--oracle needs a MODEL card name (its stride, σ and codec are measured)")
        if boxes is not None:
            raise FrposeError("--oracle uses ground-truth boxes (it encodes the ground truth); drop --boxes")
        from frpose_cli.cards import load_card
        from frpose_cli.evaluation.evaluate import evaluate_oracle, resolve_codec
        card = load_card(model, input_size=input_size)
        gt = ground_truth(card.keypoints)
        report = evaluate_oracle(card, ann_file, codec=codec, flip=False, cocoeval=cocoeval, gt=gt)
        c = resolve_codec(card, codec)
        title = (f"oracle {card.name} {card.input_size[0]}x{card.input_size[1]}: codec {c.name}, stride "
                 f"{c.stride}, σ {c.sigma:g} (median error {report['median_error_px']:.2f} px)")
    else:
        if weights is None and not model:
            raise FrposeError("give --weights CKPT or a MODEL with zoo weights (or --oracle, or --results RESULTS.json)")
        if image_dir is None:
            raise FrposeError("give --data COCO_ROOT or --images DIR")
        from frpose_cli.cards import parse_input_size
        from frpose_cli.evaluation.evaluate import evaluate_model, resolve_codec
        from frpose_cli.runtime.topdown import flip_shift_for_codec
        from frpose_cli.runtime.load import load_pose_model
        dev = shards.device_for(job, device)
        from frpose_cli.evaluation.testdev import check_submission_paths, is_image_info, results_name
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
                              progress=progress and job.is_main, precision=precision, calib_data=calib_data, log=say)
        card = net.card
        gt = None if test_dev else ground_truth(card.keypoints)
        box_source = None if gt_boxes else (boxes or _default_boxes(data, split))
        c = resolve_codec(card, codec or net.codec_name)
        shift = flip_shift_for_codec(c) if flip_shift is None else flip_shift
        flip_off = f"off ({card.keypoints.flip_problem()})" if flip and not card.keypoints.can_flip else "off"
        flip = flip and card.keypoints.can_flip
        say(f"weights {net.weights} ({net.what}, {card.channel_order.upper()} input)")
        say(f"{card.name} {card.input_size[0]}x{card.input_size[1]} on {dev} ({net.backend}, {net.setup}) in "
             f"{net.precision}: boxes "
             f"{'ground truth' if box_source is None else box_source}, codec {c.name}, flip test "
             + (f"on (shift {shift:g} heatmap px)" if flip else flip_off))
        kwargs = dict(boxes=box_source, flip=flip, codec=c, batch_size=batch_size, workers=workers,
                      det_score_thr=det_thr, flip_shift=shift, nms_thr=nms_thr, cocoeval=cocoeval, progress=progress)
        title = f"{card.name} on {ann_file.name} ({'GT' if box_source is None else 'detector'} boxes)"
        if job.sharded:
            from frpose_cli.evaluation.eval_shards import parts_dir_for
            from frpose_cli.evaluation.testdev import default_alg, results_name
            where = out if out is not None else Path("runs") / "eval" / results_name(split, alg or default_alg(card.name))
            kwargs.update(shard=job, parts=parts_dir_for(where), part_meta=part_record(
                locals(), card, net, box_source, c, shift, ann_file, title, test_dev), log=_log)
        if test_dev:
            from frpose_cli.evaluation.testdev import run_test_dev
            done = run_test_dev(net, card, ann_file, image_dir, split, alg, out, **kwargs)
            if done is None:
                print_shard_done(job, kwargs["parts"])
            return
        report = evaluate_model(net, card, ann_file, image_dir, gt=gt, **kwargs)
        if report is None:   # this shard's part is written; another process merges
            print_shard_done(job, kwargs["parts"])
            return
    seconds = time.perf_counter() - start
    finish(report, gt, title, out if results is None else None, json_out, pck_alpha, pck_ref, seconds,
           analyze=analyze, analysis_name=(results.stem if results is not None else
                                           ("oracle " if oracle else "") + card.name),
           ann_file=ann_file, compare=compare, analysis_dir=analysis_dir)


def _quiet(msg: str) -> None:
    """Ranks other than 0 keep the shared messages to themselves (rank 0 says them once)."""


def part_record(params: dict, card, net, box_source, codec, shift, ann_file, title, test_dev) -> dict:
    """What a shard's part records: the options the shards must share, and what scoring needs
    (so `frpose merge` can finish the run without the command line)."""
    options = {"weights": str(net.weights), "model": card.name, "input_size": list(card.input_size),
               "precision": net.precision, "boxes": str(box_source), "flip": params["flip"], "codec": codec.name,
               "flip_shift": shift, "det_thr": params["det_thr"], "ann": str(Path(ann_file).resolve())}
    return {"options": options, "kind": "eval", "ann_file": str(Path(ann_file).resolve()),
            "sigmas": params["sigmas"], "keypoints": card.keypoints.to_dict(), "nms_thr": params["nms_thr"],
            "cocoeval": params["cocoeval"], "score": not test_dev,
            "out": str(Path(params["where"]).absolute()),
            "json_out": str(Path(params["json_out"]).absolute()) if params["json_out"] else None, "pck_alpha": params["pck_alpha"],
            "pck_ref": params["pck_ref"], "title": title, "split": params["split"], "alg": params["alg"],
            "card": card.name, "split_rule": "sorted ids of the images with person boxes: "
            "image k belongs to shard k mod n"}


def print_shard_done(job, parts) -> None:
    from frpose_cli.evaluation.eval_shards import part_path
    missing = [f"{i}/{job.count}" for i in range(job.count) if not part_path(parts, i, job.count).exists()]
    print(f"eval shard {job.label}: part written to {part_path(parts, job.index, job.count)}"
          + (f"; waiting for shard(s) {', '.join(missing)}: the last to finish merges, or run "
             f"`frpose merge {parts}`" if missing and not job.torchrun else "; rank 0 merges"))


def finish(report, gt, title, out, json_out, pck_alpha, pck_ref, seconds, analyze=False, analysis_name="",
           ann_file=None, compare=None, analysis_dir=None) -> None:
    """Write, print and analyse a report (also what `frpose merge` does with an eval run's parts)."""
    from frpose_cli.metrics.cocoeval import METRIC_NAMES, metrics_table
    from frpose_cli.console import make_console
    from frpose_cli.fileio import atomic_write_json
    from frpose_cli.data.oks_sigmas import describe as describe_sigmas
    from frpose_cli.metrics.pck import pck
    if out is not None:
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
    print_timings(report)
    figures = {**{name: report[name] for name in METRIC_NAMES}, **pck_result.to_dict()}
    if analyze:
        from frpose_cli.evaluation.analyze_report import run_analysis
        figures["analysis"] = run_analysis(report["results"], ann_file, analysis_name, compare, analysis_dir, console)
        _log(f"analysis: {analysis_dir}")
    if json_out is not None:
        atomic_write_json(json_out, figures, indent=2)
        _log(f"metrics: {json_out}")


def print_timings(report) -> None:
    """Where the time went (network runs) and, for sharded runs, each shard's throughput."""
    t = report.get("timings")
    if t:
        print("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in t.items())
              + " (load: waiting for the DataLoader's workers to read and crop)")
    parts = report.get("shards") or []
    for p in parts if len(parts) > 1 else []:
        print(f"shard {p['shard']}: {p['crops']} crops in {p['seconds']:.1f} s "
              f"({p['crops'] / p['seconds'] if p['seconds'] else 0:.1f} crops/s)")
