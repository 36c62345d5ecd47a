"""The streaming loop of `frpose predict` (one process, one shard): items → boxes → batched crops →
heatmaps → keypoints → log entries and overlays.

Items arrive in source order (:mod:`frpose_cli.inference.decode_workers`); a person crop waits in the batch
until ``--batch-size`` crops are ready, then the network runs (with the flip test) and the
batch's images get their log entries and overlays.  Every event of the stream — an image, a
skipped, damaged or ignored file — goes through the same queue, so the log is written in
stream order (:mod:`frpose_cli.inference.run_merge` relies on it).  Only the current batch's images are
in memory.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import numpy as np

from frpose_cli.device import synchronize
from frpose_cli.inference.draw import VideoOverlayWriter, draw_poses, heatmap_to_image, overlay_heatmap, write_image
from frpose_cli.data.geometry import warp_matrix
from frpose_cli.inference.results import Results
from frpose_cli.inference.decode_workers import Loaded, ShardStream, detect_counting, loader
from frpose_cli.inference.detect_ahead import DetectAhead
from frpose_cli.inference.run_folder import safe_relative
from frpose_cli.inference.run_merge import Skipped
from frpose_cli.data.sources import SourceItem

STAGES = ("read", "detect", "crop", "pose", "decode", "write")
WORKER_STAGES = ("read", "detect", "crop")


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
    def __call__(self, stage: str, sync: bool = True):
        start = time.perf_counter()
        try:
            yield
        finally:
            if sync and stage in ("detect", "pose"):   # this thread's stream: not the detect-ahead helper's
                synchronize(self.device, current_stream_only=True)
            self.seconds[stage] += time.perf_counter() - start


@dataclass
class PendingImage:
    """An image whose crops wait in the batch."""
    item: SourceItem
    boxes: np.ndarray
    crops: np.ndarray
    centers: np.ndarray
    scales: np.ndarray
    dropped: dict


@dataclass
class PendingEntry:
    """A log entry (skipped, damaged, ignored file) queued behind the batch, to keep stream order."""
    entry: dict


@dataclass
class PendingRedraw:
    """A frame a resumed run did earlier: its overlay is drawn in order with the frames in the batch."""
    item: SourceItem


class PredictLoop:
    """The loop's state: pending batch (and the events queued behind it), open overlay videos, counters."""

    def __init__(self, opts, out_dir, predictor, detector, log, summary, timer, done: set, video_records: dict,
                 progress, ahead: DetectAhead):
        self.opts, self.out_dir, self.pred, self.detector, self.log = opts, out_dir, predictor, detector, log
        self.ahead = ahead
        self.summary, self.timer, self.done, self.video_records = summary, timer, done, video_records
        self.progress = progress
        self.pending, self.pending_crops = [], 0
        self.videos: dict[str, VideoOverlayWriter] = {}
        self.failed_overlays: set = set()
        self.finished = False

    def run(self, source, shard) -> None:
        stream = ShardStream(source, shard, self.done, self.detector, self.pred.geometry)
        entries = self._pull(loader(stream, self.opts.workers))
        for loaded, detected in self.ahead.ahead(entries, lambda loaded: loaded.item, self.needs_detection):
            if loaded.video is not None:
                self.run_video(source, loaded.video)
            else:
                self.handle(loaded.item, loaded, detected)
        self.flush()
        self.finished = True

    def _pull(self, items):
        """The workers' results in order, their stage times counted (decoding: here, or in the workers meanwhile)."""
        workers = self.opts.workers
        while True:
            start = time.perf_counter()
            loaded: Loaded | None = next(items, None)
            wait = time.perf_counter() - start
            if loaded is None:
                return
            for stage, seconds in loaded.seconds.items():
                (self.summary.worker_seconds if workers else self.timer.seconds)[stage] += seconds
            if workers:
                self.timer.seconds["read"] += wait
            yield loaded

    def run_video(self, source, video) -> None:
        def frames():
            read = source.read(video)
            while True:
                with self.timer("read"):
                    item = next(read, None)
                if item is None:
                    return
                yield item
        for item, detected in self.ahead.ahead(frames(), lambda item: item, self.needs_detection):
            self.handle(item, detected=detected)

    def needs_detection(self, entry) -> bool:
        """Whether :meth:`handle` will run the detector on ``entry`` (a Loaded or a video frame's SourceItem)."""
        loaded = entry if isinstance(entry, Loaded) else None
        item = loaded.item if loaded is not None else entry
        if item is None or item.ignored or item.error or item.image is None:
            return False
        return not (loaded is not None and (loaded.done or loaded.prepared is not None)) and item.key not in self.done

    def event(self, item: SourceItem, kind: str, **fields) -> None:
        entry = {"o": [item.position, item.sub], kind: {"file_name": item.file_name, **fields}}
        if self.pending:
            self.pending.append(PendingEntry(entry))
        else:
            self.log.add(entry)

    def handle(self, item: SourceItem, loaded: Loaded | None = None, detected=None) -> None:
        """One item of the stream; ``detected``: the future of its detection when the helper thread
        (:mod:`frpose_cli.inference.detect_ahead`) took it, else the detector runs here."""
        if item.ignored:
            self.event(item, "ignored", reason=item.ignored)
            self.summary.ignored.append(Skipped(item.file_name, item.ignored))
            return
        if item.warning:   # damaged but usable, or (no image) a note on a whole file such as a short video
            self.event(item, "warning", warning=item.warning)
            self.summary.warnings.append(Skipped(item.file_name, item.warning))
        if item.error:
            self.event(item, "skipped", reason=item.error)
            self.summary.skipped.append(Skipped(item.file_name, item.error))
            self.progress.update()
            return
        if (loaded is not None and loaded.done) or (item.image is not None and item.key in self.done):
            self.summary.resumed += 1
            self.progress.update()
            if item.frame is not None and self.opts.save_vis:
                if self.pending:   # drawn in order with the frames waiting in the batch
                    self.pending.append(PendingRedraw(item))
                else:
                    self.redraw_done_frame(item)
            return
        if item.image is None:
            return
        if loaded is not None and loaded.prepared is not None:
            boxes, crops, centers, scales, dropped = loaded.prepared
        else:
            with self.timer("detect", sync=detected is None):   # a future: the wait is what this thread loses
                boxes, dropped = detected.result() if detected is not None else detect_counting(self.detector, item)
            with self.timer("crop"):
                crops, centers, scales = self.pred.crops(item.image, boxes)
        self.pending.append(PendingImage(item, boxes, crops, centers, scales, dropped))
        self.pending_crops += len(crops)
        if self.pending_crops >= self.opts.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        images = [p for p in self.pending if isinstance(p, PendingImage)]
        crops = np.concatenate([p.crops for p in images]) if images else np.zeros((0,), np.uint8)
        with self.timer("pose"):
            heatmaps = self.pred.heatmaps(crops, self.opts.batch_size) if len(crops) else None
        with self.timer("decode"):
            kpts = self.pred.decode(heatmaps, np.concatenate([p.centers for p in images]),
                                    np.concatenate([p.scales for p in images])) if len(crops) else None
        start = 0
        pending, self.pending, self.pending_crops = self.pending, [], 0
        for p in pending:
            if isinstance(p, PendingEntry):
                self.log.add(p.entry)
            elif isinstance(p, PendingRedraw):
                self.redraw_done_frame(p.item)
            else:
                n = len(p.crops)
                with self.timer("write"):
                    self.finish_image(p.item, p.boxes, kpts[start:start + n] if n else np.zeros((0, 0, 3)),
                                      heatmaps[start:start + n] if n else None, p.centers, p.scales, p.dropped)
                start += n

    def finish_image(self, item, boxes, kpts, heatmaps, centers, scales, dropped) -> None:
        # Records come from the Results object the Python API returns, so both give the same JSON.
        found = Results.from_poses(kpts, boxes, self.pred.card.keypoints, file_name=item.file_name,
                                   frame=item.frame)
        keep = found.nms_keep(scales[:, 0] * scales[:, 1], self.pred.oks_sigmas, self.opts.nms_thr)
        records = found[keep].to_coco()
        image = {"file_name": item.file_name, "width": int(item.image.shape[1]),
                 "height": int(item.image.shape[0]), "persons": len(records)}
        if item.frame is not None:
            image["frame"] = item.frame
        entry = {"o": [item.position, item.sub], "image": image, "records": records}
        if dropped:
            entry["dropped"] = dropped
            for reason, n in dropped.items():
                self.summary.boxes_dropped[reason] = self.summary.boxes_dropped.get(reason, 0) + n
        if len(boxes) == 0 and getattr(self.detector, "name", "") == "boxes":
            entry["unmatched"] = True
            self.summary.images_without_boxes += 1
        self.log.add(entry)
        self.summary.images += 1
        self.summary.persons += len(records)
        self.progress.update()
        try:
            if self.opts.save_vis:
                self.save_overlay(item, kpts[keep], boxes[keep])
            if self.opts.save_heatmaps and len(keep):
                self.save_heatmap_overlay(item, heatmaps[keep].numpy(), centers[keep], scales[keep])
        except (OSError, cv2.error) as e:   # the poses are logged already: only the overlay is lost
            self.overlay_failed(item, e)

    def overlay_failed(self, item, error) -> None:
        """Report an overlay that could not be written, once per file (a video's writer fails for every frame)."""
        if item.file_name in self.failed_overlays:
            return
        self.failed_overlays.add(item.file_name)
        reason = f"overlay not written ({error})"
        self.log.add({"o": [item.position, item.sub], "skipped": {"file_name": item.file_name, "reason": reason}})
        self.summary.skipped.append(Skipped(item.file_name, reason))

    def save_overlay(self, item, kpts, boxes) -> None:
        canvas = draw_poses(item.image, kpts, self.pred.card.keypoints, boxes, kpt_thr=self.opts.kpt_thr)
        vis_dir = self.out_dir / "vis"
        if item.frame is None:
            write_image(vis_dir / overlay_name(item.file_name), canvas)
            return
        if item.file_name in self.failed_overlays:
            return
        video = self.videos.get(item.file_name)
        if video is None:
            video = self.videos[item.file_name] = VideoOverlayWriter(
                vis_dir / overlay_name(item.file_name, video=True), item.fps)
        video.write(canvas)

    def redraw_done_frame(self, item) -> None:
        """A resumed video's overlay is rewritten whole, so frames done earlier are drawn from their records."""
        recs = self.video_records.get(item.file_name, {}).get(item.frame, [])
        k = self.pred.card.keypoints.num_keypoints
        kpts = np.array([r["keypoints"] for r in recs], np.float32).reshape(-1, k, 3)
        boxes = np.array([r["bbox"] + [r.get("box_score", 1.0)] for r in recs], np.float32).reshape(-1, 5)
        try:
            self.save_overlay(item, kpts, boxes)
        except (OSError, cv2.error) as e:
            self.overlay_failed(item, e)

    def save_heatmap_overlay(self, item, heatmaps, centers, scales) -> None:
        hh, hw = heatmaps.shape[-2:]
        inv = [warp_matrix(c, s, 0, (hw, hh), inv=True, udp=self.pred.codec.use_udp)
               for c, s in zip(centers, scales)]
        heat = heatmap_to_image(heatmaps, inv, item.image.shape[:2])
        name = overlay_name(item.file_name) if item.frame is None else \
            f"{safe_relative(item.file_name).with_suffix('').as_posix()}/{item.frame:06d}.jpg"
        out = self.out_dir / "heatmaps" / name
        write_image(out, overlay_heatmap(item.image, stretch_heat(heat)))

    def close(self) -> None:
        """Finish the overlay videos; one that cannot be finished is reported, the others and every
        prediction are kept (the run's results are merged after this)."""
        for name, video in self.videos.items():
            try:
                video.close()
            except (OSError, cv2.error) as e:
                if name not in self.failed_overlays:
                    self.failed_overlays.add(name)
                    self.summary.skipped.append(Skipped(name, f"overlay video not finished ({e})"))


def stretch_heat(heat: np.ndarray) -> np.ndarray:
    """Stretch to the full colour range so weak (e.g. untrained) heatmaps are still visible."""
    top = float(heat.max()) if heat.size else 0.0
    return heat / top if top > 0 else heat
