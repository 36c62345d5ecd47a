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
from dataclasses import fields
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from frpose_cli.api_arguments import boxes_array, callable_or_none, image_rgb_array, in_range
from frpose_cli.errors import ArgumentTypeError, ArgumentValueError, note
from frpose_cli.jobs import shards
from frpose_cli.weights import zoo
from frpose_cli.inference.detectors import make_detector
from frpose_cli.runtime.engine import TopDownEngine
from frpose_cli.inference.results import DEFAULTS, Results, predict_image
from frpose_cli.data.oks_sigmas import resolve_sigmas
from frpose_cli.load import check_load_arguments, load_pose_model
from frpose_cli.outputs import FolderLock, check_not_inside_inputs, check_writable_dir
from frpose_cli.inference.stream import STAGES, WORKER_STAGES, PredictLoop, StageTimer  # noqa: F401 (STAGES: scripts)
from frpose_cli.inference.predict_options import PredictOptions, check_options
from frpose_cli.inference.predict_report import PredictSummary
from frpose_cli.inference.live_run import check_live, finish_live_summary, stop_on_signals, warm_up
from frpose_cli.inference.overlays import LiveWindow
from frpose_cli.inference.tracking_stage import TrackingStage, tracking_meta
from frpose_cli.inference.box_files import check_box_source
from frpose_cli.tracking.smoothing import DEFAULT as DEFAULT_SMOOTHING
from frpose_cli.inference.detect_ahead import DetectAhead, overlap_wanted
from frpose_cli.inference.run_folder import resolve_out_dir, run_options
from frpose_cli.inference.run_log import PARTS, NullLog, RunLog, done_state, end_of, finished_shards, list_logs, log_path, next_session
from frpose_cli.jobs.progress import JobProgress
from frpose_cli.inference.run_merge import merge_logs
from frpose_cli.data.sources import Source, is_video
from frpose_cli.weights.loader import default_weights_for


DECIDE_AT_IMAGES = 100


class PosePredictor:
    """Model + codec + crop geometry: ``predictor(image_rgb, boxes)`` → (P, K, 3) keypoints.

    ``weights``: anything :func:`frpose_cli.load.load_pose_model` takes (file, zoo name, URL);
    ``None`` → the zoo's default pose model (:data:`frpose_cli.weights.zoo.DEFAULT_POSE`).  ``log``:
    where one-line notes go (None: nowhere).  A wrong argument is a ValueError or TypeError naming it."""

    def __init__(self, weights, model_name=None, input_size=None, device=None, flip=True, backend="auto",
                 log=print, progress=True, precision=None, calib_data=None, decide_precision=True):
        if not isinstance(flip, (bool, np.bool_)):   # flip="no" would be truthy
            raise ArgumentTypeError(f"flip must be True or False (got {type(flip).__name__} {flip!r})")
        # before the zoo's default is looked up; load_pose_model checks them again (cheap, and its own callers')
        input_size = check_load_arguments("" if weights is None else weights, model_name, input_size, backend,
                                          device, None, None, precision, log)
        log = log or _quiet
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
        self.engine.batch_size = in_range(batch_size, "batch_size")
        return self.engine.heatmaps(crops_uint8)

    def decode(self, heatmaps, centers, scales) -> np.ndarray:
        kpts, scores = self.engine.decode(heatmaps, centers, scales)
        return np.concatenate([kpts, scores[..., None]], -1)

    def __call__(self, image_rgb: np.ndarray, boxes) -> np.ndarray:
        """(M, K, 3) x, y, score: one pose per box, in order.  ``image_rgb`` uint8 (H, W, 3); ``boxes``
        (M, 5) x, y, w, h, score or (M, 4).  Boxes are used as given: a NaN, inf or empty one is a
        ValueError here (one pose per box leaves no way to drop it); :meth:`predict` clips them and
        drops the unusable ones, reporting them in ``Results.dropped``."""
        image_rgb = image_rgb_array(image_rgb)
        boxes = _usable_as_given(boxes_array(boxes))
        if not len(boxes):   # the codec's decode has no empty case
            return np.zeros((0, self.card.keypoints.num_keypoints, 3), np.float32)
        crops, centers, scales = self.crops(image_rgb, boxes)
        return self.decode(self.heatmaps(crops), centers, scales)

    def predict(self, image_rgb: np.ndarray, boxes=None, nms_thr: float = DEFAULTS.nms_thr,
                batch_size: int = DEFAULTS.batch_size, det_thr: float = DEFAULTS.det_thr, **info) -> Results:
        """One RGB image → :class:`~frpose_cli.inference.results.Results`, treated as `frpose predict` treats
        each image, with its defaults (:class:`~frpose_cli.inference.predict_options.PredictOptions`, the one
        place they are set): boxes scored under ``det_thr`` (``--det-thr``) dropped, the rest clipped, rescored,
        OKS-NMS at ``nms_thr`` (``--nms-thr``); so ``predict(image, boxes).to_coco()`` is what
        ``frpose predict IMAGE --boxes FILE`` writes for the same boxes.  ``image_rgb`` uint8 (H, W, 3);
        ``boxes`` (M, 5) x, y, w, h, score or (M, 4) (score 1; one box: ``[box]``); None → the whole image.
        Boxes under ``det_thr``, with NaN or inf, no area, or outside the image are dropped and counted by
        reason in the result's ``dropped``, as `frpose predict` counts them in ``images.json``.  ``info``:
        file_name, image_id, frame for the records.  A wrong argument is a ValueError or TypeError naming it."""
        return predict_image(self, image_rgb, boxes, nms_thr, batch_size, det_thr, **info)


def _usable_as_given(boxes: np.ndarray) -> np.ndarray:
    """``boxes`` unchanged if each has finite values and a positive width and height; else a ValueError
    naming the first that has not (an empty box would divide by zero in the crop's scale)."""
    bad = ~np.isfinite(boxes).all(1) | ~(boxes[:, 2] > 0) | ~(boxes[:, 3] > 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ArgumentValueError(f"boxes[{i}] = {boxes[i].tolist()}: each box needs finite values and a positive "
                                 "width and height (predict() drops such boxes and reports them in "
                                 "Results.dropped)")
    return boxes


def run_predict(opts: PredictOptions, log=print, detector=None) -> PredictSummary:
    """Run the whole pipeline (this process's shard of it); ``log`` receives one-line warnings.
    ``detector`` (Python API): any callable ``SourceItem -> (M, 5) x, y, w, h, score`` used instead
    of the options' one."""
    check_options(opts)
    holder = []
    for _ in _predict(opts, log, detector, holder, save=True):
        pass
    return holder[0]


def predict_stream(source, weights=None, *, save: bool = False, log=None, detector=None,
                   **options) -> Iterator[Results]:
    """The Python API's generator (ultralytics' ``stream=True``): one
    :class:`~frpose_cli.inference.results.Results` per image or frame of ``source`` (an image, folder,
    glob, video, list file, webcam index or stream URL), as `frpose predict` makes them: videos and
    streams tracked (``track_ids``, ``timestamp``), ``det_every``, ``smooth`` and every other
    :class:`PredictOptions` field by name.  ``save=True`` also writes the run folder `frpose predict`
    writes (``out``, default a new ``runs/predict/runN``); without it nothing is written.  ``log``: where
    its one-line notes go (default: stderr, as the CLI's).  Breaking out of the loop stops the run
    cleanly (a live source is closed).  The options are checked at this call, before the first image:
    an unknown name is a TypeError naming it, a value out of range a ValueError."""
    known = [f.name for f in fields(PredictOptions) if f.name not in ("source", "weights")]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ArgumentTypeError(f"predict_stream: unknown option{'s' * (len(unknown) > 1)} {', '.join(unknown)} "
                                f"(it takes PredictOptions' fields: {', '.join(known)})")
    callable_or_none(log, "log")
    callable_or_none(detector, "detector")
    if save:
        options.setdefault("progress", False)
    else:
        options.update(save_vis=False, save_heatmaps=False, progress=False)
    opts = PredictOptions(source=str(source), weights=weights, **options)
    check_options(opts)   # now, not at the first next(): a mistake is reported at the line that made it
    return _predict(opts, log or note, detector, [], save=save)   # a fallback or a choice is never silent


def _predict(opts, log, detector, holder, save: bool):
    """The one loop over images, videos and streams; its callers have checked ``opts`` (check_options)."""
    # Cheap checks first, so a mistake is reported before any model is loaded.
    source = Source(opts.source, vid_stride=opts.vid_stride)
    source.check_not_empty()
    options = run_options(opts)
    shard = shards.shard_for(opts.shard, opts.device)
    if detector is None and opts.boxes is not None:   # a box file is read (and refused) before any model loads
        detector = make_detector(opts.detector, opts.boxes, opts.detector_weights, "cpu", opts.det_thr, opts.det_size)
        check_box_source(detector, source)
    try:
        if source.kind == "stream":
            check_live(opts, source, shard)
        window = LiveWindow() if opts.show else None
        if source.kind == "stream":
            source.open_stream()   # a camera or URL that does not answer: one line, before the model loads
        if not save:
            yield from _stream(opts, source, options, shard, log, detector, None, 0, holder, window)
            return
        yield from _run(opts, source, options, shard, log, detector, holder, window)
    finally:
        if source.capture is not None:
            source.capture.close()
        shards.cleanup(shard)


def _run(opts, source, options, shard, log, detector, holder, window):
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
        yield from _stream(opts, source, options, shard, log, detector, out_dir, session, holder, window)
    finally:
        lock.release()


def _stream(opts, source, options, shard, log, detector, out_dir, session, holder, window):
    tracking_images = opts.track is True
    done, video_records = done_state(out_dir, tracking_images) if opts.resume and out_dir else (set(), {})
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
    check_box_source(detector, source)
    meta = {"source": str(source.live.display_name if source.live else opts.source), "weights": str(predictor.weights),
            "model": predictor.card.name, "input_size": list(predictor.card.input_size), "codec": predictor.codec.name,
            "backend": predictor.backend, "precision": predictor.precision, "detector": getattr(detector, "name", type(detector).__name__),
            "flip": predictor.flip}
    tracking = None
    if opts.track is not False:
        tracking = TrackingStage(opts.track, opts.det_every, (opts.smooth_params or DEFAULT_SMOOTHING) if opts.smooth
                                 else None, opts.track_lifetime, predictor.oks_sigmas,
                                 {**tracking_meta(opts), "keypoints": list(predictor.card.keypoints.names)},
                                 offline=opts.smooth_offline)
    header = {"session": session, "shard": shard.label, "options": options, "meta": meta,
              "split_rule": f"files of the source in order (ignored ones included): {shards.SHARD_RULE}",
              "torchrun": shard.torchrun, "workers": opts.workers}
    runlog = RunLog(log_path(out_dir, session, shard.index, shard.count), header, opts.save_every) if out_dir \
        else NullLog()
    progress = JobProgress(opts.progress and shard.is_main, shard, (out_dir or Path(".")) / PARTS, "predict", "img")
    summary = PredictSummary(out_dir=out_dir, detector=meta["detector"], shard=shard.label, workers=opts.workers,
                             torchrun=shard.torchrun)
    holder.append(summary)
    timer = StageTimer(predictor.device)
    # frames of a tracked sequence detect in the main thread on a CPU unless --overlap asks (stream.py: run_video)
    tracked_on_cpu = opts.track is True and opts.overlap is None and predictor.device.type == "cpu"
    overlap = overlap_wanted(opts.overlap, detector) and source.kind != "stream" and not tracked_on_cpu
    ahead = DetectAhead(detector, predictor.device, overlap, batched=source.kind != "stream")
    ahead.timer = timer
    loop = PredictLoop(opts, out_dir, predictor, detector, runlog, summary, timer, done, video_records, progress,
                       ahead, tracking, window)
    if source.kind == "stream":
        warm_up(predictor, detector)
    start = time.perf_counter()
    try:
        with stop_on_signals(source):
            yield from loop.run(source, shard)
    finally:
        ahead.close()
        summary.overlapped = ahead.helper_seconds
        loop.close()
        summary.timings, summary.seconds = timer.seconds, time.perf_counter() - start
        summary.detector_setup = getattr(detector, "setup", "")
        finish_live_summary(summary, loop, tracking, source)
        stats = {"images": summary.images, "persons": summary.persons, "resumed": summary.resumed,
                 "seconds": round(summary.seconds, 3), "timings": {k: round(v, 3) for k, v in timer.seconds.items()},
                 "workers": opts.workers, "worker_seconds": {k: round(v, 3) for k, v in summary.worker_seconds.items()},
                 "overlapped_detect_seconds": round(summary.overlapped, 3)}
        progress.finish()   # before the log's closing line, so rank 0 never misses the last count
        if loop.finished or runlog.lines or runlog.file is not None:   # no empty run folders
            runlog.close(stats, loop.finished)
        if out_dir and not shard.sharded and list_logs(out_dir):    # one process: merged even when it stops
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


def _worth_deciding(opts, source) -> bool:
    """Whether an undecided ``--precision auto`` is decided before this run (15-60 s, once per weights and
    machine): when asked for by name, or for a run long enough to earn it back (a video, a live source, or
    :data:`DECIDE_AT_IMAGES` images or more); a shorter run starts at once in float32."""
    if opts.precision == "auto" or source.kind == "stream":   # a live source runs until stopped: long
        return True
    import itertools
    files = list(itertools.islice(source.files(), DECIDE_AT_IMAGES))
    return len(files) >= DECIDE_AT_IMAGES or any(is_video(f.path) for f in files if not f.ignored)


def _quiet(*_args, **_kwargs) -> None:
    """Ranks other than 0 keep the shared messages to themselves (rank 0 says them once)."""
