"""`frpose predict` core: source → person boxes → batched crops → heatmaps → keypoints → files.

One streaming pass per process (:mod:`frpose_cli.inference.stream`): files are decoded in DataLoader
workers (:mod:`frpose_cli.inference.decode_workers`), persons are detected and cropped, crops wait in a
batch, the network runs (with the flip test), keypoints are decoded back into image pixels, and
each image's records are appended to the run's log.  Only the current batch's images (and the
few the workers have ready) are in memory, however large the source.

Outputs in the run folder::

    parts/             the append-only logs of each process and session (frpose_cli.inference.run_log)
    predictions.json   COCO keypoint results (+ file_name, frame, bbox, box_score), merged from the logs
    images.json        every processed image (also those with no person), every skipped file, the split
    vis/               overlays (images keep their relative path; a video → one .mp4)
    heatmaps/          heatmap overlays with --save-heatmaps

Sharded runs (torchrun, ``--shard i/n``; :mod:`frpose_cli.jobs.shards`) write one log per process into
one folder; the two JSON files are merged from all logs (:mod:`frpose_cli.inference.run_merge`), so they
are the same whatever the split.  A one-process run merges at its end, also after Ctrl-C or an
error; ``resume`` continues any of them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from frpose_cli.jobs import shards
from frpose_cli.weights import zoo
from frpose_cli.inference.detectors import make_detector
from frpose_cli.errors import FrposeError
from frpose_cli.runtime.engine import TopDownEngine
from frpose_cli.inference.results import Results, predict_image
from frpose_cli.data.oks_sigmas import resolve_sigmas
from frpose_cli.load import load_pose_model
from frpose_cli.outputs import FolderLock, check_not_inside_inputs, check_writable_dir
from frpose_cli.inference.stream import STAGES, WORKER_STAGES, PredictLoop, StageTimer
from frpose_cli.inference.detect_ahead import DetectAhead, overlap_wanted
from frpose_cli.inference.run_folder import resolve_out_dir, run_options
from frpose_cli.inference.run_log import PARTS, RunLog, done_state, end_of, finished_shards, list_logs, log_path, next_session
from frpose_cli.jobs.progress import JobProgress
from frpose_cli.inference.run_merge import MergeReport, merge_logs
from frpose_cli.data.sources import Source, is_video
from frpose_cli.weights.loader import default_weights_for


@dataclass
class PredictOptions:
    source: str
    weights: str | None = None
    model: str | None = None
    input_size: tuple | None = None
    detector: str = "auto"
    detector_weights: str | None = None
    boxes: str | None = None
    det_thr: float = 0.3
    det_size: int = 800
    nms_thr: float = 0.9
    device: str | None = None
    backend: str = "auto"          # auto | torch | onnxruntime (runtime.load_pose_model)
    precision: str | None = None   # fp32 | bf16 | fp16 | int8 | auto; None: the device's default (precision.py)
    calib_data: str | None = None  # COCO root adding real crops for int8 calibration and the accuracy gate
    batch_size: int = 16
    flip: bool = True
    kpt_thr: float = 0.3
    out: str | None = None
    resume: bool = False
    vid_stride: int = 1
    save_vis: bool = True
    save_heatmaps: bool = False
    save_every: int = 50
    progress: bool = True
    workers: int = 2               # DataLoader processes decoding (and cropping) images
    overlap: bool | None = None    # detect the next image while the pose network runs; None: the detector's
                                   # default (detect_ahead.overlap_wanted)
    shard: str | None = None       # "i/n" without torchrun (shards.py)


DECIDE_AT_IMAGES = 100


@dataclass
class PredictSummary:
    out_dir: Path
    images: int = 0                # processed in this run (images + video frames)
    persons: int = 0
    resumed: int = 0               # already in predictions.json, skipped by --resume
    skipped: list = field(default_factory=list)   # run_merge.Skipped: not processed
    warnings: list = field(default_factory=list)  # (file name, warning): processed, but damaged or short
    ignored: list = field(default_factory=list)   # (file name, reason): found by a scan, not a picture
    boxes_dropped: dict = field(default_factory=dict)   # reason → count
    images_without_boxes: int = 0  # processed images for which --boxes had no box
    seconds: float = 0.0
    timings: dict = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    worker_seconds: dict = field(default_factory=lambda: dict.fromkeys(WORKER_STAGES, 0.0))
    workers: int = 0
    overlapped: float = 0.0        # seconds the detect-ahead thread spent detecting (while this one went on)
    detector: str = ""
    detector_setup: str = ""       # fp32, fused, bf16, fp16 (torchvision detectors: detector_setups.py)
    shard: str = "0/1"             # this process's shard
    merged: MergeReport | None = None   # the whole run, when this process merged it
    waiting_for: list = field(default_factory=list)   # shards not finished yet (no merge)
    torchrun: bool = False

    @property
    def exit_code(self) -> int:
        """0 all good, 1 when some inputs were skipped or damaged, or shards are missing from a merge
        (the CLI uses 2 for usage/fatal errors)."""
        m = self.merged
        if m is None and self.torchrun:   # rank 0 reports this rank's files; a non-zero exit would stop the job
            return 0
        if m is not None:
            return 1 if m.skipped or m.warnings or m.missing else 0
        return 1 if self.skipped or self.warnings else 0


class PosePredictor:
    """Model + codec + crop geometry: ``predictor(image_rgb, boxes)`` → (P, K, 3) keypoints.

    ``weights``: anything :func:`frpose_cli.load.load_pose_model` takes (file, zoo name, URL);
    ``None`` → the zoo's default pose model (:data:`frpose_cli.weights.zoo.DEFAULT_POSE`)."""

    def __init__(self, weights, model_name=None, input_size=None, device=None, flip=True, backend="auto",
                 log=print, progress=True, precision=None, calib_data=None, decide_precision=True):
        if not weights:
            weights = default_weights_for(model_name, input_size) if model_name else zoo.DEFAULT_POSE
            entry = zoo.get(weights)
            log(f"pose model: {entry.name}, published Simple Baselines weights ({entry.source}, COCO val AP "
                f"{entry.ap}); not the paper's network, whose weights are not published: pass --weights for yours")
        # precision and set-up: frpose_cli.precision.formats (auto: gated and timed once per model and machine)
        # the device policy is load_pose_model's (frpose_cli.device.pick_device): CUDA if present, an ONNX
        # file on the CPU; the detector then runs where the pose model does
        self.model = load_pose_model(weights, model_name, input_size, backend, device, progress=progress,
                                     precision=precision, calib_data=calib_data, log=log,
                                     decide_precision=decide_precision)
        self.device = next(self.model.parameters()).device
        self.card, self.setup, self.backend = self.model.card, self.model.setup, self.model.backend
        self.precision = self.model.precision
        self.weights = self.model.weights
        # the one top-down path (runtime.engine), shared with eval and the accuracy gate
        self.engine = TopDownEngine(self.model, self.card, self.model.codec_name, flip)
        self.codec, self.flip, self.flip_index = self.engine.codec, self.engine.flip, self.engine.flip_index
        self.geometry = self.engine.geometry
        # OKS-NMS with the σ the model was trained and scored with (recorded in checkpoints and exports).
        self.oks_sigmas = np.asarray(resolve_sigmas(self.card.keypoints).sigmas)

    def crops(self, image_rgb: np.ndarray, boxes: np.ndarray):
        """Affine crops of the boxes (uint8, N×H×W×3) and their centres and scales."""
        return self.engine.crops(image_rgb, boxes)

    def heatmaps(self, crops_uint8: np.ndarray, batch_size: int = 16) -> torch.Tensor:
        """Heatmaps of uint8 crops, ``batch_size`` crops per network call, flip test included."""
        self.engine.batch_size = max(1, int(batch_size))
        return self.engine.heatmaps(crops_uint8)

    def decode(self, heatmaps, centers, scales) -> np.ndarray:
        kpts, scores = self.engine.decode(heatmaps, centers, scales)
        return np.concatenate([kpts, scores[..., None]], -1)

    def __call__(self, image_rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        crops, centers, scales = self.crops(image_rgb, boxes)
        return self.decode(self.heatmaps(crops), centers, scales)

    def predict(self, image_rgb: np.ndarray, boxes=None, nms_thr: float = 0.9, batch_size: int = 16,
                **info) -> Results:
        """One RGB image → :class:`~frpose_cli.inference.results.Results`, treated as `frpose predict` treats
        each image (boxes clipped, rescored, OKS-NMS at ``nms_thr``); ``boxes`` (M, 5) x, y, w, h, score or
        (M, 4); None → the whole image.  ``info``: file_name, image_id, frame for the records."""
        return predict_image(self, image_rgb, boxes, nms_thr, batch_size, **info)


def run_predict(opts: PredictOptions, log=print, detector=None) -> PredictSummary:
    """Run the whole pipeline (this process's shard of it); ``log`` receives one-line warnings.
    ``detector`` (Python API): any callable ``SourceItem -> (M, 5) x, y, w, h, score`` used instead
    of the options' one."""
    if opts.batch_size < 1:
        raise FrposeError(f"--batch-size must be at least 1 (got {opts.batch_size})")
    if opts.workers < 0:
        raise FrposeError(f"--workers must be 0 or more (got {opts.workers})")
    # Cheap checks first, so a mistake is reported before any model is loaded.
    source = Source(opts.source, vid_stride=opts.vid_stride)
    source.check_not_empty()
    options = run_options(opts)
    shard = shards.shard_for(opts.shard, opts.device)
    try:
        return _run(opts, source, options, shard, log, detector)
    finally:
        shards.cleanup(shard)


def _run(opts, source, options, shard, log, detector) -> PredictSummary:
    def decide():
        out = resolve_out_dir(opts.out, opts.resume, options, shard, log=log)
        return str(out), next_session(out)
    out, session = shards.agree(shard, decide)
    out_dir = Path(out)
    check_writable_dir(out_dir, "--out")   # from every node
    check_not_inside_inputs(out_dir, [source.root if source.kind in ("folder", "glob") else None], "--out")
    shards.check_shared_folder(out_dir, shard, "--out")
    # a second run into the same folder is refused now, not after all its work (outputs.FolderLock)
    lock = FolderLock(out_dir, f"{shard.index}of{shard.count}" if shard.sharded else "all", "--out")
    try:
        return _run_locked(opts, source, options, shard, log, detector, out_dir, session)
    finally:
        lock.release()


def _run_locked(opts, source, options, shard, log, detector, out_dir, session) -> PredictSummary:
    done, video_records = done_state(out_dir) if opts.resume else (set(), {})
    predictor = PosePredictor(opts.weights, opts.model, opts.input_size, shards.device_for(shard, opts.device),
                              opts.flip, opts.backend, log=log if shard.is_main else _quiet,
                              progress=opts.progress and shard.is_main, precision=opts.precision,
                              calib_data=opts.calib_data, decide_precision=_worth_deciding(opts, source))
    if opts.flip and not predictor.flip and shard.is_main:
        log(f"flip test off: {predictor.card.keypoints.flip_problem()}")
    if detector is None:
        from frpose_cli.inference.detector_setups import setup_for_precision
        from frpose_cli.precision.formats import default_precision
        detector = make_detector(opts.detector, opts.boxes, opts.detector_weights, predictor.device,
                                 opts.det_thr, opts.det_size, warn=log if shard.is_main else _quiet,
                                 progress=opts.progress and shard.is_main,
                                 setup=setup_for_precision(opts.precision or default_precision(predictor.device)),
                                 log=log if shard.is_main else _quiet)
    meta = {"source": str(opts.source), "weights": str(predictor.weights), "model": predictor.card.name,
            "input_size": list(predictor.card.input_size), "codec": predictor.codec.name,
            "backend": predictor.backend, "precision": predictor.precision, "detector": getattr(detector, "name", type(detector).__name__),
            "flip": predictor.flip}
    header = {"session": session, "shard": shard.label, "options": options, "meta": meta,
              "split_rule": f"files of the source in order (ignored ones included): {shards.SHARD_RULE}",
              "torchrun": shard.torchrun, "workers": opts.workers}
    runlog = RunLog(log_path(out_dir, session, shard.index, shard.count), header, opts.save_every)
    progress = JobProgress(opts.progress and shard.is_main, shard, out_dir / PARTS, "predict", "img")
    summary = PredictSummary(out_dir=out_dir, detector=meta["detector"], shard=shard.label, workers=opts.workers,
                             torchrun=shard.torchrun)
    timer = StageTimer(predictor.device)
    ahead = DetectAhead(detector, predictor.device, overlap_wanted(opts.overlap, detector))
    loop = PredictLoop(opts, out_dir, predictor, detector, runlog, summary, timer, done, video_records, progress,
                       ahead)
    start = time.perf_counter()
    try:
        loop.run(source, shard)
    finally:
        ahead.close()
        summary.overlapped = ahead.helper_seconds
        loop.close()
        summary.timings, summary.seconds = timer.seconds, time.perf_counter() - start
        summary.detector_setup = getattr(detector, "setup", "")
        stats = {"images": summary.images, "persons": summary.persons, "resumed": summary.resumed,
                 "seconds": round(summary.seconds, 3), "timings": {k: round(v, 3) for k, v in timer.seconds.items()},
                 "workers": opts.workers, "worker_seconds": {k: round(v, 3) for k, v in summary.worker_seconds.items()},
                 "overlapped_detect_seconds": round(summary.overlapped, 3)}
        progress.finish()   # before the log's closing line, so rank 0 never misses the last count
        if loop.finished or runlog.lines or runlog.file is not None:   # no empty run folders
            runlog.close(stats, loop.finished)
        if not shard.sharded and list_logs(out_dir):    # one process: its results are merged even when it stops
            summary.merged = merge_logs(list_logs(out_dir), out_dir)
        if not loop.finished:
            progress.close()
    if shard.sharded:   # torchrun: rank 0 once every rank has finished; array jobs: the last one to finish
        def complete():
            if shard.torchrun:   # this session's other ranks have closed their logs (done or stopped)
                return all(end_of(log_path(out_dir, session, r, shard.count)) for r in range(1, shard.count))
            _, summary.waiting_for = finished_shards(out_dir)
            return not summary.waiting_for
        summary.merged = shards.merge_when_complete(shard, out_dir / PARTS, complete,
                                                    lambda: merge_logs(list_logs(out_dir), out_dir), tick=progress.poll)
        if shard.torchrun:
            summary.waiting_for = []    # the merge is rank 0's; the other ranks wait for nothing
    progress.close()
    return summary


def _worth_deciding(opts, source) -> bool:
    """Whether an undecided ``--precision auto`` is decided before this run (15-60 s, once per weights and
    machine): when asked for by name, or for a run long enough to earn it back (a video, or
    :data:`DECIDE_AT_IMAGES` images or more); a shorter run starts at once in float32."""
    if opts.precision == "auto":
        return True
    import itertools
    files = list(itertools.islice(source.files(), DECIDE_AT_IMAGES))
    return len(files) >= DECIDE_AT_IMAGES or any(is_video(f.path) for f in files if not f.ignored)


def _quiet(*_args, **_kwargs) -> None:
    """Ranks other than 0 keep the shared messages to themselves (rank 0 says them once)."""
