"""The one loop of `frpose predict` (one process, one shard), for images, videos and live streams:
read → detect or propagate → crop → pose → track → smooth → write / show.

Items arrive in source order (:mod:`frpose_cli.inference.decode_workers`); a video's or a stream's
frames are read here, one after the other.  A person crop waits in the batch until
``--batch-size`` crops are ready, then the network runs (with the flip test) and the batch's
images get their log entries and overlays.  Frames of a tracked sequence
(:mod:`frpose_cli.inference.tracking_stage`) are run one at a time instead: the next frame's boxes
come from this frame's poses.  Every event of the stream — an image, a skipped, damaged or ignored
file — goes through the same queue, so the log is written in stream order
(:mod:`frpose_cli.inference.run_merge` relies on it).  Only the current batch's images are in
memory.  :meth:`PredictLoop.run` yields each finished image's or frame's
:class:`~frpose_cli.inference.results.Results` (the Python API's ``stream=True`` generator).
"""
from __future__ import annotations

import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from frpose_cli.device import synchronize
from frpose_cli.inference.results import Results
from frpose_cli.inference.decode_workers import Loaded, ShardStream, detect_counting, loader
from frpose_cli.inference.detect_ahead import DetectAhead
from frpose_cli.inference.overlays import Overlays, overlay_name  # noqa: F401  (overlay_name: where overlays go)
from frpose_cli.inference.run_merge import Skipped
from frpose_cli.inference.tracking_stage import TrackingStage
from frpose_cli.data.sources import SourceItem

STAGES = ("read", "detect", "crop", "pose", "decode", "write")
WORKER_STAGES = ("read", "detect", "crop")


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
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


@dataclass
class PendingImage:
    """An image whose crops wait in the batch."""
    item: SourceItem
    boxes: np.ndarray
    crops: np.ndarray
    centers: np.ndarray
    scales: np.ndarray
    dropped: dict
    propagated: np.ndarray | None = None   # tracked frames: which boxes came from the frame before


@dataclass
class PendingEntry:
    """A log entry (skipped, damaged, ignored file) queued behind the batch, to keep stream order."""
    entry: dict


@dataclass
class PendingRedraw:
    """A frame a resumed run did earlier: its overlay is drawn in order with the frames in the batch."""
    item: SourceItem


class PredictLoop:
    """The loop's state: pending batch (and the events queued behind it), overlays, tracking, counters."""

    def __init__(self, opts, out_dir, predictor, detector, log, summary, timer, done: set, video_records: dict,
                 progress, ahead: DetectAhead, tracking: TrackingStage | None = None, window=None):
        self.opts, self.out_dir, self.pred, self.detector, self.log = opts, out_dir, predictor, detector, log
        self.ahead, self.tracking = ahead, tracking
        self.summary, self.timer, self.done, self.video_records = summary, timer, done, video_records
        self.progress = progress
        self.pending, self.pending_crops = [], 0
        self.overlays = Overlays(out_dir, predictor.card.keypoints, predictor.codec, opts.kpt_thr, opts.save_vis,
                                 window, summary)
        self.finished_results: deque = deque()
        self.held_events: list = []        # log entries waiting for the frames held back before them
        self.latencies: list = []          # live frames: seconds from arrival to the overlay drawn (and shown)
        self.finished = False

    def run(self, source, shard):
        """Every item of this shard, in order; yields each finished image's or frame's Results."""
        stream = ShardStream(source, shard, self.done, None if self._tracks_images() else self.detector,
                             self.pred.geometry)
        entries = self._pull(loader(stream, 0 if source.kind == "stream" else self.opts.workers))
        for loaded, detected in self.ahead.ahead(entries, lambda loaded: loaded.item, self.needs_detection):
            if loaded.video is not None:
                yield from self.run_video(source, loaded.video)
            else:
                self.handle(loaded.item, loaded, detected)
            yield from self._drain()
            if self.overlays.stop_asked and source.kind != "stream":
                raise KeyboardInterrupt   # the window's q on files: as Ctrl-C (results kept, --resume continues)
        self.flush()
        if self.tracking is not None:
            self.release_held()
        yield from self._drain()
        self.finished = True

    def _tracks_images(self) -> bool:
        return self.tracking is not None and self.tracking.tracks_images

    def _drain(self):
        while self.finished_results:
            yield self.finished_results.popleft()

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
            if loaded.item is not None and self.tracking is not None:
                self.tracking.stamp(loaded.item)
            yield loaded

    def run_video(self, source, video):
        def frames():
            read = source.read(video)
            while not (self.overlays.stop_asked and source.kind == "stream"):
                with self.timer("read"):
                    item = next(read, None)
                if item is None:
                    return
                yield item
        # a live stream's next frame is taken when this one is done, never read ahead: it is the newest then.
        # Tracked frames on a CPU detect in this thread unless --overlap asks: they run one at a time, so the
        # helper only competes with the pose network for the cores (a few percent slower: docs/tracking.md)
        live = source.kind == "stream" and source.live.live
        alone = live or (self.tracking is not None and self.tracking.track is not False and self.opts.overlap is None
                         and self.pred.device.type == "cpu")
        paired = ((item, None) for item in frames()) if alone else \
            self.ahead.ahead(frames(), lambda item: item, self.needs_detection)
        try:
            for item, detected in paired:
                self.handle(item, detected=detected)
                yield from self._drain()
                if self.overlays.stop_asked:
                    source.stop.set()   # a stream ends here; a file stops as after Ctrl-C
                    if source.kind != "stream":
                        raise KeyboardInterrupt
            if self.tracking is not None:   # the video's last frames, held back by --smooth-offline
                self.release_held(video.name)
                yield from self._drain()
        finally:
            if self.tracking is not None:
                self.tracking.end(video.name)

    def needs_detection(self, entry) -> bool:
        """Whether :meth:`handle` will run the detector on ``entry`` (a Loaded or a video frame's SourceItem)."""
        loaded = entry if isinstance(entry, Loaded) else None
        item = loaded.item if loaded is not None else entry
        if item is None or item.ignored or item.error or item.image is None:
            return False
        if self.tracking is not None and self.tracking.tracked(item) and not self.tracking.detects(item):
            return False
        return not (loaded is not None and (loaded.done or loaded.prepared is not None)) and item.key not in self.done

    def event(self, item: SourceItem, kind: str, **fields) -> None:
        entry = {"o": [item.position, item.sub], kind: {"file_name": item.file_name, **fields}}
        if self.pending:
            self.pending.append(PendingEntry(entry))
        elif self.tracking is not None and self.tracking.waiting_order() is not None:
            self.held_events.append(entry)   # behind the frames --smooth-offline holds back, in stream order
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
            tracked = self.tracking is not None and self.tracking.tracked(item)
            if tracked:   # its sequence continues from what the earlier session logged
                self.tracking.restore(item, self.video_records.get(item.file_name, {}).get(item.frame, []))
            if item.frame is not None and self.opts.save_vis:
                if self.pending:   # drawn in order with the frames waiting in the batch
                    self.pending.append(PendingRedraw(item))
                else:
                    self.redraw_done_frame(item)
            return
        if item.image is None:
            return
        self.summary.frames_dropped += item.dropped
        propagated = None
        if self.tracking is not None and self.tracking.tracked(item):
            self.next_sequence(self.tracking.key(item))
            boxes, dropped, propagated = self._tracked_boxes(item, detected)
            with self.timer("crop"):
                crops, centers, scales = self.pred.crops(item.image, boxes)
        elif loaded is not None and loaded.prepared is not None:
            boxes, crops, centers, scales, dropped = loaded.prepared
        else:
            with self.timer("detect", sync=detected is None):   # a future: the wait is what this thread loses
                boxes, dropped = detected.result() if detected is not None else detect_counting(self.detector, item)
            with self.timer("crop"):
                crops, centers, scales = self.pred.crops(item.image, boxes)
        self.pending.append(PendingImage(item, boxes, crops, centers, scales, dropped, propagated))
        self.pending_crops += len(crops)
        if propagated is not None or self.pending_crops >= self.opts.batch_size:
            self.flush()

    def next_sequence(self, key) -> None:
        """A tracked item of sequence ``key``: a different sequence before it is finished (frame folders)."""
        previous, self.tracking.current = self.tracking.current, key
        if previous is not None and previous != key:
            self.release_held(previous)
            self.tracking.end(previous)

    def release_held(self, key=None) -> None:
        """Write the frames --smooth-offline holds back (of sequence ``key``, or all), then the events behind them."""
        for (item, found, p, keep, heatmaps), smoothed in self.tracking.release(key):
            self._emit(item, found, p, keep, heatmaps, smoothed)
        self._log_held_events()

    def _log_held_events(self) -> None:
        first = self.tracking.waiting_order() if self.tracking is not None else None
        ready = [e for e in self.held_events if first is None or tuple(e["o"]) < first]
        self.held_events = [e for e in self.held_events if e not in ready]
        for e in ready:
            self.log.add(e)

    def _tracked_boxes(self, item, detected):
        """A tracked frame's boxes: the detector's on its schedule, merged with those the frame before propagates."""
        boxes, dropped = None, {}
        if self.tracking.detects(item):
            with self.timer("detect", sync=detected is None):
                boxes, dropped = detected.result() if detected is not None else detect_counting(self.detector, item)
            self.tracking.detected += 1
        with self.timer("track"):
            merged, propagated = self.tracking.boxes(item, boxes)
        return merged.astype(np.float32), dropped, propagated

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
                self.finish_image(p, kpts[start:start + n] if n else np.zeros((0, 0, 3)),
                                  heatmaps[start:start + n] if n else None)
                start += n

    def finish_image(self, p: PendingImage, kpts, heatmaps) -> None:
        item, boxes = p.item, p.boxes
        # Records come from the Results object the Python API returns, so both give the same JSON.
        found = Results.from_poses(kpts, boxes, self.pred.card.keypoints, file_name=item.file_name,
                                   frame=item.frame, image=item.image, dropped=p.dropped)
        keep = np.asarray(found.nms_keep(p.scales[:, 0] * p.scales[:, 1], self.pred.oks_sigmas, self.opts.nms_thr),
                          np.int64)
        found = found[keep]
        if p.propagated is not None:
            with self.timer("track"):
                found, kept = self.tracking.finish(item, found, p.propagated[keep])
            keep = keep[kept]
            if self.tracking.offline:   # written once the frames after it are in (tracking/offline.py)
                with self.timer("track"):
                    released = self.tracking.hold(item, found, (item, found, p, keep, heatmaps))
                for args, smoothed in released:
                    self._emit(*args, smoothed)
                self._log_held_events()
                return
        self._emit(item, found, p, keep, heatmaps)

    def _emit(self, item, found: Results, p: PendingImage, keep, heatmaps, smoothed=None) -> None:
        if smoothed is not None:
            found.keypoints_raw, found.keypoints = found.keypoints, smoothed[..., :2]
        with self.timer("write"):
            self._write(item, found, p, keep, heatmaps)
        self.finished_results.append(found)

    def _write(self, item, found: Results, p: PendingImage, keep, heatmaps) -> None:
        records = found.to_coco()
        image = {"file_name": item.file_name, "width": int(item.image.shape[1]),
                 "height": int(item.image.shape[0]), "persons": len(records)}
        if item.frame is not None:
            image["frame"] = item.frame
        entry = {"o": [item.position, item.sub], "image": image, "records": records}
        if p.propagated is not None:   # a tracked sequence's frame (its PoseTrack file is written at the merge)
            image["sequence"] = self.tracking.key(item)
            if not self.tracking.meta_logged:
                entry["tracking"], self.tracking.meta_logged = self.tracking.meta, True
        if p.dropped:
            entry["dropped"] = p.dropped
            for reason, n in p.dropped.items():
                self.summary.boxes_dropped[reason] = self.summary.boxes_dropped.get(reason, 0) + n
        if len(p.boxes) == 0 and getattr(self.detector, "name", "") == "boxes":
            entry["unmatched"] = True
            self.summary.images_without_boxes += 1
        self.log.add(entry)
        self.summary.images += 1
        self.summary.persons += len(records)
        self.progress.update()
        shown = None if item.arrival is None else lambda: self.latencies.append(time.monotonic() - item.arrival)
        self.overlays.draw(item, found.numpy(), found.boxes, found.track_ids, self.log, shown)
        if self.opts.save_heatmaps and len(keep):
            self.overlays.heatmaps(item, heatmaps[keep].numpy(), p.centers[keep], p.scales[keep], self.log)

    def redraw_done_frame(self, item) -> None:
        """A resumed video's overlay is rewritten whole, so frames done earlier are drawn from their records."""
        recs = self.video_records.get(item.file_name, {}).get(item.frame, [])
        k = self.pred.card.keypoints.num_keypoints
        kpts = np.array([r["keypoints"] for r in recs], np.float32).reshape(-1, k, 3)
        boxes = np.array([r["bbox"] + [r.get("box_score", 1.0)] for r in recs], np.float32).reshape(-1, 5)
        ids = [r["track_id"] for r in recs] if recs and all("track_id" in r for r in recs) else None
        self.overlays.draw(item, kpts, boxes, ids, self.log)

    def close(self) -> None:
        self.overlays.close()
