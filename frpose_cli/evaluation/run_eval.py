"""`frpose eval` as one function: :class:`EvalOptions` → :func:`run_eval` → the written and
printed report (mirrors :func:`frpose_cli.inference.predict.run_predict`; protocol in
docs/evaluation.md).

Three kinds of run share the checks and outputs: a results file scored as it is (``results``),
the codec alone on the ground truth (``oracle``), and a network over boxes (the protocol). Every
check that needs no model comes before the model loads; outputs are chosen and checked before any
work, in a new run folder (:mod:`frpose_cli.run_folders`) unless ``out`` names a file.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from frpose_cli import run_folders
from frpose_cli.cards import load_card
from frpose_cli.distributed import world_size
from frpose_cli.errors import FrposeError, note
from frpose_cli.evaluation.eval_report import finish, print_shard_done
from frpose_cli.evaluation.testdev import check_submission_paths, default_alg, is_image_info, results_name
from frpose_cli.jobs import shards
from frpose_cli.metrics.cocoeval import load_ground_truth
from frpose_cli.metrics.pck import reference_points
from frpose_cli.tracking.posetrack import is_posetrack

DET_FOLDER = "person_detection_results"
_PATHS = ("data", "ann", "images", "boxes", "results", "out", "json_out", "calib_data", "compare", "analysis_dir")


@dataclass
class EvalOptions:
    """The options of one `frpose eval` run (the CLI's, by the same names; paths may be str)."""
    model: str | None = None
    weights: str | None = None
    data: Path | None = None
    split: str = "val2017"
    ann: Path | None = None
    images: Path | None = None
    boxes: Path | None = None
    gt_boxes: bool = False
    detector: str | None = None          # a zoo detector instead of a detection file (eval_detector.py)
    detector_weights: str | None = None
    det_size: int | None = None
    det_thr: float = 0.0
    flip: bool = True
    codec: str | None = None
    flip_shift: float | None = None
    oracle: bool = False
    input_size: tuple[int, int] | None = None
    results: Path | None = None
    out: Path | None = None
    json_out: Path | None = None
    backend: str = "auto"
    precision: str = "fp32"   # the reference precision published figures were measured at
    calib_data: Path | None = None
    cocoeval: str = "pycocotools"
    batch_size: int = 32
    workers: int = 2
    device: str | None = None
    nms_thr: float = 0.9
    progress: bool = True
    sigmas: str | None = None
    pck_alpha: float = 0.2
    pck_ref: str = "box"
    analyze: bool = False
    compare: Path | None = None
    analysis_dir: Path | None = None
    alg: str | None = None
    shard: str | None = None

    def __post_init__(self):
        for name in _PATHS:
            if getattr(self, name) is not None:
                setattr(self, name, Path(getattr(self, name)))


def coco_paths(data: Path | None, split: str, ann: Path | None, images: Path | None):
    """COCO's layout; test splits (test-dev2017) have an image-info file and test2017/ images."""
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


def default_boxes(data: Path | None, split: str = ""):
    """The detection file under COCO_ROOT/person_detection_results: the only one, or the only
    one whose name holds the split (e.g. ..._val2017_... beside ..._test-dev2017_...)."""
    found = sorted((data / DET_FOLDER).glob("*.json")) if data is not None and (data / DET_FOLDER).is_dir() else []
    if len(found) > 1:
        found = [f for f in found if split and split in f.name] or found
    if len(found) == 1:
        return found[0]
    where = f"{data / DET_FOLDER} holds {len(found)} JSON files" if data is not None else "no --data given"
    raise FrposeError(f"choose the person boxes: --boxes DET_JSON (detector results) or --gt-boxes ({where})")


class AnnotationFile:
    """The annotation file, read once: whether it is a test split's image-info file, and its JSON
    handed on to the one loader that needs it (then dropped: the loader checks and fills it in).
    An unreadable file's one-line error is kept for the network run to raise before its model
    loads (the other runs report it where they load the file)."""

    def __init__(self, path):
        from frpose_cli.data.annotations import read_json
        self.path, self.data, self.error = path, None, None
        try:
            self.data = read_json(path, "annotation file")
        except FrposeError as e:
            self.error = e
        self.test_split = self.error is None and bool(is_image_info(data=self.data))

    def take(self):
        """The JSON for the first loader (None after that, or when unreadable: it reads the file itself)."""
        data, self.data = self.data, None
        return data


def _check(o: EvalOptions) -> None:
    from frpose_cli.api_arguments import fields_in_range   # the CLI's options' table (typer refuses these first)
    fields_in_range(o, ("batch_size", "workers", "det_thr", "nms_thr", "det_size", "flip_shift", "pck_alpha"),
                    optional=("det_size", "flip_shift"), option_of={"pck_alpha": "--pck"})
    if o.boxes is not None and o.gt_boxes:
        raise FrposeError("--boxes and --gt-boxes exclude each other")
    if o.detector is not None and (o.boxes is not None or o.gt_boxes or o.oracle or o.results is not None):
        raise FrposeError("--detector finds the person boxes: drop --boxes / --gt-boxes / --oracle / --results")
    if o.detector is None and o.detector_weights is not None:
        raise FrposeError("--detector-weights needs --detector NAME (or auto)")
    if o.compare is not None and not o.analyze:
        raise FrposeError("--compare is for --analyze: add --analyze")


def _outputs(o: EvalOptions, test_split: bool):
    """Outputs are checked before any work, and results of another run are never overwritten;
    a test split names its own files once the model is known (run folder only)."""
    from frpose_cli.outputs import check_output_file
    if o.out is not None and o.results is None and not test_split:
        check_output_file(o.out, "--out", overwrite=False)
    if o.json_out is not None:
        check_output_file(o.json_out, "--json", overwrite=False)
    where, folder = o.out, o.analysis_dir
    if where is None and o.results is None and not test_split:
        where = run_folders.new_run_path("eval") / ("oracle-results.json" if o.oracle else "results.json")
    if o.analyze:
        from frpose_cli.evaluation.diagnosis_report import check_analysis_dir
        folder = check_analysis_dir(folder or run_folders.new_run_path("analyze", what="--analysis-dir"))
    return where, folder


def run_eval(o: EvalOptions, log=note) -> dict | None:
    """Run, write and print one evaluation; returns its report (None when this process wrote a
    shard's part that another merges, or a test split's submission files)."""
    _check(o)
    ann_file, image_dir = coco_paths(o.data, o.split, o.ann, o.images)
    weights = o.weights
    if o.results is None and not o.oracle and weights is None and o.model:   # cheap checks before reading files
        from frpose_cli.weights.loader import default_weights_for
        weights = default_weights_for(o.model, o.input_size)

    def ground_truth(recorded=None):
        """The annotations with their OKS σ; a bad --pck-ref fails here, before any network runs."""
        gt = load_ground_truth(ann_file, o.sigmas, recorded=recorded, warn=log, data=annotations.take())
        reference_points(gt.keypoints, o.pck_ref)
        return gt

    # Shards split the network's work (torchrun ranks or --shard i/n: frpose_cli.jobs.shards).
    if (o.shard or world_size() > 1) and (o.results is not None or o.oracle):
        raise FrposeError("--results and --oracle run no network: run them in one process, without --shard or torchrun")
    job = shards.shard_for(o.shard, o.device) if o.results is None and not o.oracle else shards.Shard()
    annotations = AnnotationFile(ann_file)
    if ann_file.is_dir() or is_posetrack(annotations.data):   # PoseTrack: poseval's AP and MOTA, not COCOeval
        from frpose_cli.evaluation.posetrack_eval import run_posetrack_eval
        return run_posetrack_eval(o, ann_file, log)
    test_split = annotations.test_split
    if job.sharded and not job.torchrun and o.out is None and not test_split:
        raise FrposeError("--shard needs --out RESULTS.json: every shard writes its part beside it "
                          "(OUT-parts/), and the last one merges into it")
    out, analysis_dir = shards.agree(job, lambda: _outputs(o, test_split))
    start = time.perf_counter()
    if o.results is not None:
        if o.model or weights or o.oracle:
            raise FrposeError("--results evaluates a file; it takes no MODEL, --weights or --oracle")
        from frpose_cli.evaluation.evaluate import evaluate_results_file
        gt = ground_truth()
        report = evaluate_results_file(o.results, ann_file, o.cocoeval, gt=gt)
        title, name, out = f"{o.results.name} on {ann_file.name}", o.results.stem, None
    elif o.oracle:
        report, gt, title, name = _oracle(o, ann_file, ground_truth)
    else:
        ran = _network(o, weights, job, ann_file, image_dir, out, annotations, ground_truth, log)
        if ran is None:
            return None
        report, gt, title, name = ran
    finish(report, gt, title, out, o.json_out, o.pck_alpha, o.pck_ref, time.perf_counter() - start,
           analyze=o.analyze, analysis_name=name, ann_file=ann_file, compare=o.compare,
           analysis_dir=analysis_dir, log=log)
    return report


def _oracle(o: EvalOptions, ann_file, ground_truth):
    if not o.model:
        raise FrposeError("--oracle needs a MODEL card name (its stride, σ and codec are measured)")
    if o.boxes is not None:
        raise FrposeError("--oracle uses ground-truth boxes (it encodes the ground truth); drop --boxes")
    from frpose_cli.evaluation.evaluate import evaluate_oracle, resolve_codec
    card = load_card(o.model, input_size=o.input_size)
    gt = ground_truth(card.keypoints)
    report = evaluate_oracle(card, ann_file, codec=o.codec, flip=False, cocoeval=o.cocoeval, gt=gt)
    c = resolve_codec(card, o.codec)
    title = (f"oracle {card.name} {card.input_size[0]}x{card.input_size[1]}: codec {c.name}, stride "
             f"{c.stride}, σ {c.sigma:g} (median error {report['median_error_px']:.2f} px)")
    return report, gt, title, f"oracle {card.name}"


def _network(o: EvalOptions, weights, job, ann_file, image_dir, out, annotations, ground_truth, log):
    """The protocol with a network; None when this process's part is written for another to
    merge (shards) or a test split's submission files are written."""
    if weights is None and not o.model:
        raise FrposeError("give --weights CKPT or a MODEL with zoo weights (or --oracle, or --results RESULTS.json)")
    if image_dir is None:
        raise FrposeError("give --data COCO_ROOT or --images DIR")
    from frpose_cli.evaluation.evaluate import evaluate_model, resolve_codec
    from frpose_cli.load import load_pose_model
    from frpose_cli.runtime.topdown import flip_shift_for_codec
    dev = shards.device_for(job, o.device)
    test_dev = annotations.test_split
    if annotations.error is not None:
        raise annotations.error
    if test_dev and (o.gt_boxes or o.analyze):
        raise FrposeError(f"{ann_file.name} has no annotations (a test split): scores come from the COCO "
                          "server, so --gt-boxes and --analyze need a split with annotations (val2017)")
    if test_dev and o.alg:
        results_name(o.split, o.alg)          # a bad name fails before the model loads
    if test_dev and out is not None:
        check_submission_paths(Path(out))
    say = log if job.is_main else _quiet
    net = load_pose_model(weights, model_name=o.model, backend=o.backend, device=dev, input_size=o.input_size,
                          progress=o.progress and job.is_main, precision=o.precision, calib_data=o.calib_data, log=say)
    card = net.card
    gt = None if test_dev else ground_truth(card.keypoints)
    if o.detector is not None:
        box_source = _detector_boxes(o, dev, job, ann_file, image_dir, out, say, gt)
    else:
        box_source = None if o.gt_boxes else (o.boxes or default_boxes(o.data, o.split))
    c = resolve_codec(card, o.codec or net.codec_name)
    shift = flip_shift_for_codec(c) if o.flip_shift is None else o.flip_shift
    flip_off = f"off ({card.keypoints.flip_problem()})" if o.flip and not card.keypoints.can_flip else "off"
    flip = o.flip and card.keypoints.can_flip
    say(f"weights {net.weights} ({net.what}, {card.channel_order.upper()} input)")
    runs_on = net.backend if net.setup == net.backend else f"{net.backend}, set-up {net.setup}"   # onnxruntime: once
    say(f"{card.name} {card.input_size[0]}x{card.input_size[1]} on {dev} ({runs_on}) in "
        f"{net.precision}: boxes {'ground truth' if box_source is None else box_source}, codec {c.name}, flip test "
        + (f"on (shift {shift:g} heatmap px)" if flip else flip_off))
    kwargs = dict(boxes=box_source, flip=flip, codec=c, batch_size=o.batch_size, workers=o.workers,
                  det_score_thr=o.det_thr, flip_shift=shift, nms_thr=o.nms_thr, cocoeval=o.cocoeval, progress=o.progress)
    title = f"{card.name} on {ann_file.name} ({'GT' if box_source is None else 'detector'} boxes)"
    if job.sharded:
        from frpose_cli.evaluation.eval_shards import parts_dir_for
        where = out if out is not None else run_folders.verb_dir("eval") / results_name(
            o.split, o.alg or default_alg(card.name))
        kwargs.update(shard=job, parts=parts_dir_for(where), log=log, part_meta=part_record(
            o, card, net, box_source, c, shift, flip, ann_file, title, test_dev, where))
    if test_dev:
        from frpose_cli.evaluation.testdev import run_test_dev
        if run_test_dev(net, card, ann_file, image_dir, o.split, o.alg, out, info_data=annotations.take(),
                        **kwargs) is None:
            print_shard_done(job, kwargs["parts"])
        return None
    report = evaluate_model(net, card, ann_file, image_dir, gt=gt, **kwargs)
    if report is None:   # this shard's part is written; another process merges
        print_shard_done(job, kwargs["parts"])
        return None
    return report, gt, title, card.name


def _quiet(msg: str) -> None:
    """Ranks other than 0 keep the shared messages to themselves (rank 0 says them once)."""


def _detector_boxes(o: EvalOptions, dev, job, ann_file, image_dir, out, say, gt) -> Path:
    """The named detector's boxes on every annotated image, written beside the results (eval_detector.py)."""
    from frpose_cli.evaluation.eval_detector import detect_annotated_images, detections_path
    from frpose_cli.inference.detectors import make_detector
    if job.sharded or out is None:
        raise FrposeError("--detector runs in one process with a results file: drop --shard / torchrun, "
                          "or detect once and pass the file with --boxes")
    target = detections_path(out)
    detector = make_detector(o.detector, None, o.detector_weights, dev, det_thr=o.det_thr, det_size=o.det_size,
                             warn=say, progress=o.progress, log=say)
    return detect_annotated_images(detector, ann_file, image_dir, target, log=say, progress=o.progress,
                                   images=gt.dataset.get("images") if gt is not None else None)   # read once


def part_record(o: EvalOptions, card, net, box_source, codec, shift, flip, ann_file, title, test_dev, where) -> dict:
    """What a shard's part records: the options the shards must share, and what scoring needs
    (so `frpose merge` can finish the run without the command line)."""
    options = {"weights": str(net.weights), "model": card.name, "input_size": list(card.input_size),
               "precision": net.precision, "boxes": str(box_source), "flip": flip, "codec": codec.name,
               "flip_shift": shift, "det_thr": o.det_thr, "ann": str(Path(ann_file).resolve())}
    return {"options": options, "kind": "eval", "ann_file": str(Path(ann_file).resolve()),
            "sigmas": o.sigmas, "keypoints": card.keypoints.to_dict(), "nms_thr": o.nms_thr,
            "cocoeval": o.cocoeval, "score": not test_dev, "out": str(Path(where).absolute()),
            "json_out": str(o.json_out.absolute()) if o.json_out else None, "pck_alpha": o.pck_alpha,
            "pck_ref": o.pck_ref, "title": title, "split": o.split, "alg": o.alg,
            "card": card.name, "split_rule": "sorted ids of the images with person boxes: "
            "image k belongs to shard k mod n"}
