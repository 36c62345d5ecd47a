"""Detection of the next image while the pose network works on the current batch (``--overlap``).

The predict loop hands each image to the detector, then its crops to the pose network once a batch
is full.  With overlap, one helper thread runs the detector on the image *after* the one being
handled, so the pose network's batch and the next detection run at the same time.  On a GPU the
helper queues its kernels on a CUDA stream of its own: the detector's host-side work (resizing,
proposal bookkeeping, copying boxes back) and its kernels fill the gaps between the pose network's,
and the other way round.  On a CPU the gain is in the detector's serial stretches (proposal
filtering, NMS, Python between layers), which the pose network now fills: the Faster R-CNNs gain on
2 cores, SSDlite (a tenth of an image's time) does not (docs/benchmarks.md, "End to end"), so by
default it overlaps wherever the detector is a network that says it pays (:func:`overlap_wanted`).

The outputs are the same bytes as without overlap: each image's detection is the same call on the
same input, made one at a time, in source order, by one thread; only *when* it runs changes.  A first
run's detector trial (:class:`~frpose_cli.inference.detector_setups.DetectorChoice`) is timed, so while
it lasts detection stays in the main thread, where nothing runs beside it.
"""
from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from frpose_cli.inference.decode_workers import detect_counting

_END = object()


def overlap_wanted(overlap: bool | None, detector) -> bool:
    """``--overlap`` as given; by default (None) on for frpose's own detector networks, which say they
    may be called from a helper thread (``overlap_safe``: CPU and CUDA both gain) unless they say it does
    not pay for them (``overlap_default``: SSDlite on a CPU), and off for a
    callable handed to :func:`~frpose_cli.inference.predict.run_predict`, which may hold thread-bound
    state.  Never for boxes the decode workers find (``--boxes``, whole image): they need no network."""
    if getattr(detector, "in_worker", False):
        return False
    if overlap is None:
        return bool(getattr(detector, "overlap_safe", False)) and bool(getattr(detector, "overlap_default", True))
    return bool(overlap)


class DetectAhead:
    """Runs ``detector`` one image ahead in a helper thread (when ``enabled``).

    :meth:`ahead` wraps the stream of items: each comes out with a future of its ``(boxes, dropped)``
    when the helper took it, or None when the main thread is to detect it.  ``helper_seconds`` is the
    time the helper spent detecting; the main thread's wait for a future is the caller's to time.
    """

    def __init__(self, detector, device, enabled: bool, batched: bool = False):
        self.detector = detector
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="frpose-detect") if enabled else None
        # without the helper thread, a detector that gains from it detects several images per call (batched_ahead)
        self.batched = batched and not enabled and hasattr(detector, "detect_items")
        self.timer = None   # the caller's stage timer: a batch's detection is counted when it runs
        device = torch.device(device)
        self.stream = torch.cuda.Stream(device) if enabled and device.type == "cuda" else None
        self.helper_seconds = 0.0
        self.helped = 0

    def _detect(self, item):
        start = time.perf_counter()
        if self.stream is None:
            out = detect_counting(self.detector, item)
        else:
            with torch.cuda.stream(self.stream):
                out = detect_counting(self.detector, item)
            self.stream.synchronize()
        self.helper_seconds += time.perf_counter() - start
        self.helped += 1
        return out

    def _on_trial(self) -> bool:
        return getattr(self.detector, "trial_model", None) is not None

    def ahead(self, entries, item_of, wanted):
        """Yield ``(entry, future | None)`` for each of ``entries`` in order.  While the caller handles one
        entry, the next one's detection (when ``wanted(entry)``; ``item_of(entry)`` is its SourceItem) is
        already queued in the helper -- but only behind the current entry's detection there: after an
        entry the caller detects itself (None) or handles otherwise (a video, whose frames go through
        their own ``ahead``), the next one is queued once the caller is done with it.  So the detector
        is never called from two threads at once, and always in source order."""
        def submit(entry):
            if self.executor is None or self._on_trial() or not wanted(entry):
                return None
            return self.executor.submit(self._detect, item_of(entry))

        if self.batched:
            yield from self.batched_ahead(entries, item_of, wanted)
            return
        it = iter(entries)
        current = next(it, _END)
        future = submit(current) if current is not _END else None
        while current is not _END:
            following = next(it, _END)
            # queued now only behind the current entry's own detection in the helper: anything else the
            # caller does with `current` (detecting it, or a video's frames) comes first
            queued = following is not _END and future is not None
            following_future = submit(following) if queued else None
            yield current, future
            if following is not _END and not queued:   # the caller has detected `current` meanwhile
                following_future = submit(following)
            current, future = following, following_future

    def batched_ahead(self, entries, item_of, wanted):
        """Like :meth:`ahead` without a thread: up to the detector's ``detect_batch_size`` entries are read ahead
        and the wanted ones detected in one call (``detector.detect_items``: the same boxes as one at a time up
        to float rounding); each comes out with a finished future.  Off while the detector's first-run trial
        times its set-ups, which it does one image at a time."""
        it = iter(entries)
        while True:
            size = max(1, int(getattr(self.detector, "detect_batch_size", 1)))
            chunk = [e for _, e in zip(range(size), it)]
            if not chunk:
                return
            todo = [e for e in chunk if wanted(e)]
            futures = {}
            if len(todo) > 1 and not self._on_trial():
                start = time.perf_counter()
                for e, out in zip(todo, self.detector.detect_items([item_of(e) for e in todo])):
                    futures[id(e)] = Future()
                    futures[id(e)].set_result(out)
                if self.timer is not None:
                    self.timer.seconds["detect"] += time.perf_counter() - start
            for e in chunk:
                yield e, futures.get(id(e))

    def close(self) -> None:
        """Wait for (and drop) detections nobody will read, e.g. after an error or Ctrl-C."""
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
