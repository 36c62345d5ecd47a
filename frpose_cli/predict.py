"""`frpose predict` core: source → person boxes → batched crops → heatmaps → keypoints → files.

One streaming pass: an image is read, its persons are detected and cropped, and the crops
wait in a batch; when the batch is full the network runs (with the flip test), keypoints
are decoded back into image pixels, and that batch's images get their records and
overlays.  Only the current batch's images are in memory.

Outputs in the run folder (written by :mod:`frpose_cli.run_folder`)::

    predictions.json   COCO keypoint results (+ file_name, frame, bbox, box_score)
    images.json        every processed image (also those with no person) and every skipped file
    vis/               overlays (images keep their relative path; a video → one .mp4)
    heatmaps/          heatmap overlays with --save-heatmaps

Both JSON files are rewritten atomically (temp file + rename) every ``save_every`` images
and at the end, so an interrupted run keeps everything it wrote and ``resume`` continues it.
"""
from __future__ import annotations

import itertools
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import zoo
from .codecs import codec_for_card
from .detectors import coco_id_from_name, make_detector
from .device import pick_device, synchronize
from .draw import VideoOverlayWriter, draw_poses, heatmap_to_image, overlay_heatmap, write_image
from .errors import FrposeError
from .geometry import box_to_center_scale, crop_image, warp_matrix
from .inference import crops_to_input, decode_to_image, run_heatmaps
from .optimize import input_memory_format
from .oks_nms import oks_nms, rescore
from .oks_sigmas import resolve_sigmas
from .runtime import load_pose_model
from .outputs import check_not_inside_inputs
from .run_folder import PREDICTIONS, RunWriter, make_record, resolve_out_dir, run_options, safe_relative
from .sources import Source, SourceItem
from .weights import default_weights_for

STAGES = ("read", "detect", "crop", "pose", "decode", "write")


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


@dataclass
class PredictSummary:
    out_dir: Path
    images: int = 0                # processed in this run (images + video frames)
    persons: int = 0
    resumed: int = 0               # already in predictions.json, skipped by --resume
    skipped: list = field(default_factory=list)   # (file name, reason): not processed
    warnings: list = field(default_factory=list)  # (file name, warning): processed, but damaged or short
    ignored: list = field(default_factory=list)   # (file name, reason): found by a scan, not a picture
    boxes_dropped: dict = field(default_factory=dict)   # reason → count
    images_without_boxes: int = 0  # processed images for which --boxes had no box
    seconds: float = 0.0
    timings: dict = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    detector: str = ""

    @property
    def exit_code(self) -> int:
        """0 all good, 1 when some inputs were skipped or damaged (the CLI uses 2 for usage/fatal errors)."""
        return 1 if self.skipped or self.warnings else 0


def image_id_for(item: SourceItem) -> int:
    """COCO's id when the name is one (``000000000785.jpg`` → 785), else the stream position."""
    coco_id = coco_id_from_name(item.file_name) if item.frame is None else None
    return item.index if coco_id is None else coco_id


def overlay_name(file_name: str, video: bool = False) -> str:
    """Where the overlay of ``file_name`` goes, relative to ``vis/``: never outside the run folder."""
    p = safe_relative(file_name)
    if video:
        return p.with_suffix(".mp4").as_posix()
    return p.as_posix() if p.suffix.lower() in (".jpg", ".jpeg", ".png") else p.as_posix() + ".jpg"


class StageTimer:
    def __init__(self, device):
        self.device, self.seconds = device, dict.fromkeys(STAGES, 0.0)

    @contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            if stage in ("detect", "pose"):
                synchronize(self.device)
            self.seconds[stage] += time.perf_counter() - start


class PosePredictor:
    """Model + codec + crop geometry: ``predictor(image_rgb, boxes)`` → (P, K, 3) keypoints.

    ``weights``: anything :func:`frpose_cli.runtime.load_pose_model` takes (file, zoo name, URL);
    ``None`` → the zoo's default pose model (:data:`frpose_cli.zoo.DEFAULT_POSE`)."""

    def __init__(self, weights, model_name=None, input_size=None, device=None, flip=True, backend="auto",
                 log=print, progress=True, precision=None, calib_data=None):
        self.device = pick_device(device)
        if not weights:
            weights = default_weights_for(model_name, input_size) if model_name else zoo.DEFAULT_POSE
            entry = zoo.get(weights)
            log(f"pose model: {entry.name}, published Simple Baselines weights ({entry.source}, COCO val AP "
                f"{entry.ap}); not the paper's network, whose weights are not published: pass --weights for yours")
        # precision and set-up: frpose_cli.precision (auto: gated and timed once per model and machine)
        self.model = load_pose_model(weights, model_name, input_size, backend, self.device, progress=progress,
                                     precision=precision, calib_data=calib_data, log=log)
        self.card, self.setup, self.backend = self.model.card, self.model.setup, self.model.backend
        self.precision = self.model.precision
        self.weights = self.model.weights
        self.codec = codec_for_card(self.card, self.model.codec_name)
        # No left/right pairs known: no flip test (it would average in mislabelled joints).
        self.flip, self.flip_index = flip and self.card.keypoints.can_flip, self.card.keypoints.flip_index()
        h, w = self.card.input_size
        self.input_wh, self.aspect = (w, h), w / h
        # OKS-NMS with the σ the model was trained and scored with (recorded in checkpoints and exports).
        self.oks_sigmas = np.asarray(resolve_sigmas(self.card.keypoints).sigmas)

    def crops(self, image_rgb: np.ndarray, boxes: np.ndarray):
        """Affine crops of the boxes (uint8, N×H×W×3) and their centres and scales."""
        centers, scales, crops = [], [], []
        for box in boxes:
            c, s = box_to_center_scale(box[:4], self.aspect)
            centers.append(c)
            scales.append(s)
            crops.append(crop_image(image_rgb, c, s, 0, self.input_wh, udp=self.codec.use_udp))
        h, w = self.input_wh[1], self.input_wh[0]
        return (np.stack(crops) if crops else np.zeros((0, h, w, 3), np.uint8),
                np.array(centers, np.float32).reshape(-1, 2), np.array(scales, np.float32).reshape(-1, 2))

    def heatmaps(self, crops_uint8: np.ndarray, batch_size: int = 16) -> torch.Tensor:
        """Normalised on the device (uint8 crosses the bus), run in chunks, flip test included."""
        outs = []
        for i in range(0, len(crops_uint8), batch_size):
            x = crops_to_input(torch.from_numpy(crops_uint8[i:i + batch_size]).to(self.device), self.card.normalize)
            x = x.contiguous(memory_format=input_memory_format(self.setup))
            outs.append(run_heatmaps(self.model, x, flip=self.flip, flip_index=self.flip_index,
                                     stride=self.card.stride, codec=self.codec))
        return torch.cat(outs) if outs else torch.zeros((0, self.card.keypoints.num_keypoints,
                                                         *self.card.heatmap_size))

    def decode(self, heatmaps, centers, scales) -> np.ndarray:
        kpts, scores = decode_to_image(self.codec, heatmaps, centers, scales)
        return np.concatenate([kpts, scores[..., None]], -1)

    def __call__(self, image_rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        crops, centers, scales = self.crops(image_rgb, boxes)
        return self.decode(self.heatmaps(crops), centers, scales)


def run_predict(opts: PredictOptions, log=print, detector=None) -> PredictSummary:
    """Run the whole pipeline; ``log`` receives one-line warnings.  ``detector`` (Python API):
    any callable ``SourceItem -> (M, 5) x, y, w, h, score`` used instead of the options' one."""
    if opts.batch_size < 1:
        raise FrposeError(f"--batch-size must be at least 1 (got {opts.batch_size})")
    # Cheap checks first, so a mistake is reported before any model is loaded.
    source = Source(opts.source, vid_stride=opts.vid_stride)
    items = iter(source)
    read_start = time.perf_counter()
    first = next(items)   # raises for an empty source
    first_read = time.perf_counter() - read_start
    options = run_options(opts)
    out_dir = resolve_out_dir(opts.out, opts.resume, options, log=log)
    check_not_inside_inputs(out_dir, [source.root if source.kind in ("folder", "glob") else None], "--out")
    writer = RunWriter(out_dir, opts.resume, {}, opts.save_every)
    predictor = PosePredictor(opts.weights, opts.model, opts.input_size, opts.device, opts.flip, opts.backend,
                              log=log, progress=opts.progress, precision=opts.precision,
                              calib_data=opts.calib_data)
    if opts.flip and not predictor.flip:
        log(f"flip test off: {predictor.card.keypoints.flip_problem()}")
    if detector is None:
        detector = make_detector(opts.detector, opts.boxes, opts.detector_weights, predictor.device,
                                 opts.det_thr, opts.det_size, warn=log, progress=opts.progress)
    writer.meta = {"source": str(opts.source), "weights": str(predictor.weights), "model": predictor.card.name,
                   "input_size": list(predictor.card.input_size), "codec": predictor.codec.name,
                   "backend": predictor.backend, "precision": predictor.precision,
                   "detector": getattr(detector, "name", type(detector).__name__), "flip": predictor.flip,
                   "options": options}
    summary = PredictSummary(out_dir=out_dir, detector=writer.meta["detector"])
    timer = StageTimer(predictor.device)
    timer.seconds["read"] += first_read
    run = _Run(opts, predictor, detector, writer, summary, timer)
    start = time.perf_counter()
    try:
        run.loop(itertools.chain([first], items))
    finally:
        run.close()
        summary.timings = timer.seconds
        summary.seconds = time.perf_counter() - start
    return summary


class _Run:
    """The streaming loop's state: pending batch, open overlay videos, counters."""

    def __init__(self, opts, predictor: PosePredictor, detector, writer: RunWriter, summary, timer):
        self.opts, self.pred, self.detector = opts, predictor, detector
        self.writer, self.summary, self.timer = writer, summary, timer
        self.pending, self.pending_crops, self.bar = [], 0, None
        self.videos: dict[str, VideoOverlayWriter] = {}
        self.done_records = None   # (file_name, frame) → records, for redrawing resumed video frames

    def loop(self, items) -> None:
        from tqdm import tqdm

        self.bar = tqdm(desc="predict", unit="img", disable=not self.opts.progress, dynamic_ncols=True)
        try:
            while True:
                with self.timer("read"):
                    item = next(items, None)
                if item is None:
                    break
                self.handle(item)
            self.flush()
        finally:
            self.bar.close()

    def handle(self, item: SourceItem) -> None:
        if item.ignored:
            self.writer.ignore(item.file_name, item.ignored)
            self.summary.ignored.append((item.file_name, item.ignored))
            return
        if item.warning:   # damaged but usable, or (no image) a note on a whole file such as a short video
            self.writer.warn(item.file_name, item.warning)
            self.summary.warnings.append((item.file_name, item.warning))
        if item.error:
            self.writer.skip(item.file_name, item.error)
            self.summary.skipped.append((item.file_name, item.error))
            self.bar.update(1)
            return
        if item.image is None:
            return
        if item.key in self.writer.done:
            self.summary.resumed += 1
            self.bar.update(1)
            if item.frame is not None and self.opts.save_vis:
                self.redraw_done_frame(item)
            return
        with self.timer("detect"):
            boxes = self.detector(item)
        if len(boxes) == 0 and getattr(self.detector, "name", "") == "boxes":
            self.summary.images_without_boxes += 1
        with self.timer("crop"):
            crops, centers, scales = self.pred.crops(item.image, boxes)
        self.pending.append((item, boxes, crops, centers, scales))
        self.pending_crops += len(crops)
        if self.pending_crops >= self.opts.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        crops = np.concatenate([p[2] for p in self.pending])
        centers = np.concatenate([p[3] for p in self.pending])
        scales = np.concatenate([p[4] for p in self.pending])
        with self.timer("pose"):
            heatmaps = self.pred.heatmaps(crops, self.opts.batch_size)
        with self.timer("decode"):
            kpts = self.pred.decode(heatmaps, centers, scales) if len(crops) else np.zeros((0, 0, 3))
        start = 0
        for item, boxes, item_crops, item_centers, item_scales in self.pending:
            n = len(item_crops)
            with self.timer("write"):
                self.finish_image(item, boxes, kpts[start:start + n], heatmaps[start:start + n],
                                  item_centers, item_scales)
            start += n
        self.pending, self.pending_crops = [], 0

    def finish_image(self, item, boxes, kpts, heatmaps, centers, scales) -> None:
        scores = rescore(boxes[:, 4], kpts[:, :, 2]) if len(boxes) else np.zeros(0)
        keep = list(range(len(boxes)))
        if len(boxes) > 1 and self.opts.nms_thr < 1.0:   # two boxes on one person → one pose
            keep = oks_nms(kpts, scores, scales[:, 0] * scales[:, 1], self.pred.oks_sigmas, self.opts.nms_thr)
        image_id = image_id_for(item)
        records = [make_record(item, image_id, kpts[i], boxes[i], scores[i]) for i in keep]
        self.writer.add(item, image_id, records)
        self.summary.images += 1
        self.summary.persons += len(records)
        self.bar.update(1)
        try:
            if self.opts.save_vis:
                self.save_overlay(item, kpts[keep], boxes[keep])
            if self.opts.save_heatmaps and len(keep):
                self.save_heatmap_overlay(item, heatmaps[keep].numpy(), centers[keep], scales[keep])
        except OSError as e:
            reason = f"overlay not written ({e})"
            self.writer.skip(item.file_name, reason)
            self.summary.skipped.append((item.file_name, reason))

    def save_overlay(self, item, kpts, boxes) -> None:
        canvas = draw_poses(item.image, kpts, self.pred.card.keypoints, boxes, kpt_thr=self.opts.kpt_thr)
        vis_dir = self.writer.out_dir / "vis"
        if item.frame is None:
            write_image(vis_dir / overlay_name(item.file_name), canvas)
            return
        video = self.videos.get(item.file_name)
        if video is None:
            video = self.videos[item.file_name] = VideoOverlayWriter(
                vis_dir / overlay_name(item.file_name, video=True), item.fps)
        video.write(canvas)

    def redraw_done_frame(self, item) -> None:
        """A resumed video's overlay is rewritten whole, so frames done earlier are drawn from their records."""
        if self.done_records is None:
            self.done_records = {}
            for r in self.writer.records:
                self.done_records.setdefault((r["file_name"], r.get("frame")), []).append(r)
        recs = self.done_records.get(item.key, [])
        k = self.pred.card.keypoints.num_keypoints
        kpts = np.array([r["keypoints"] for r in recs], np.float32).reshape(-1, k, 3)
        boxes = np.array([r["bbox"] + [r.get("box_score", 1.0)] for r in recs], np.float32).reshape(-1, 5)
        self.save_overlay(item, kpts, boxes)

    def save_heatmap_overlay(self, item, heatmaps, centers, scales) -> None:
        hh, hw = heatmaps.shape[-2:]
        inv = [warp_matrix(c, s, 0, (hw, hh), inv=True, udp=self.pred.codec.use_udp)
               for c, s in zip(centers, scales)]
        heat = heatmap_to_image(heatmaps, inv, item.image.shape[:2])
        name = overlay_name(item.file_name) if item.frame is None else \
            f"{safe_relative(item.file_name).with_suffix('').as_posix()}/{item.frame:06d}.jpg"
        write_image(self.writer.out_dir / "heatmaps" / name, overlay_heatmap(item.image, stretch_heat(heat)))

    def close(self) -> None:
        for video in self.videos.values():
            video.close()
        self.summary.boxes_dropped = dict(getattr(self.detector, "dropped", {}))
        self.writer.meta.update(boxes_dropped=self.summary.boxes_dropped,
                                images_without_boxes=self.summary.images_without_boxes)
        w = self.writer
        if w.images or w.skipped or w.warnings or w.ignored or (w.out_dir / PREDICTIONS).exists():   # no empty run folders
            w.save()


def stretch_heat(heat: np.ndarray) -> np.ndarray:
    """Stretch to the full colour range so weak (e.g. untrained) heatmaps are still visible."""
    top = float(heat.max()) if heat.size else 0.0
    return heat / top if top > 0 else heat
