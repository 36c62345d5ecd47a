"""What a predict run over a live source (a webcam, a network stream) needs around the loop.

A live source has no end of its own: Ctrl-C (SIGINT), SIGTERM (a service manager, ``kill``,
a container stopping) and ``q`` in the ``--show`` window are how it ends, so they end it *cleanly*:
the frame in hand is finished, the capture is closed, every processed frame's poses are in the
log and ``predictions.json``, the overlay video is finished (playable), and the exit code is 0.  A
second Ctrl-C stops at once, as Ctrl-C does elsewhere (what was logged is kept).  A stream that
stalls or drops past its retries (:mod:`frpose_cli.data.live`) ends the run with what it has, its
one line reported as a warning (exit code 1).  A live stream cannot be resumed or split into shards.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

import numpy as np

from frpose_cli.errors import FrposeError


def check_live(opts, source, shard) -> None:
    """Options that cannot apply to a live source: one line each, before any work."""
    name = source.live.display_name
    if opts.resume:
        raise FrposeError(f"--resume: {name} is a live source, its earlier frames are gone; start a new run")
    if shard.sharded:
        raise FrposeError(f"{name} is one live sequence: it cannot be split into shards (--shard, torchrun)")
    if opts.smooth_offline and source.live.live:
        raise FrposeError(f"--smooth-offline waits for later frames, which a live source {name} has not sent yet: "
                          "use --smooth (online)")


@contextmanager
def stop_on_signals(source):
    """While a live source runs (in the main thread), SIGINT and SIGTERM set ``source.stop``: the
    loop finishes the frame in hand and ends.  A second signal raises KeyboardInterrupt."""
    if source.kind != "stream" or threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []

    def handler(signum, _frame):
        if received:
            raise KeyboardInterrupt
        received.append(signal.Signals(signum).name)
        source.stop.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if received:
            source.stop_reason = {"SIGINT": "Ctrl-C (SIGINT)"}.get(received[0], received[0])


def warm_up(predictor, detector) -> None:
    """A live source starts once the networks have run: their first call builds kernels and buffers (a
    second or more on a CPU), and the frames arriving meanwhile would all be dropped."""
    h, w = predictor.card.input_size
    predictor.heatmaps(np.zeros((1, h, w, 3), np.uint8))
    if hasattr(detector, "warm_up"):
        detector.warm_up()


def finish_live_summary(summary, loop, tracking, source) -> None:
    """Tracking counts, live latency and how a live source ended, into the run's summary."""
    if tracking is not None:
        summary.tracks, summary.tracked_frames = tracking.count_tracks(), tracking.frames
        summary.detected_frames = tracking.detected
    if loop.latencies:
        lat = np.asarray(loop.latencies)
        summary.latency = {"median": float(np.median(lat)), "p95": float(np.percentile(lat, 95)),
                           "max": float(lat.max())}
    if source.capture is not None:
        summary.frames_preroll = source.capture.preroll
    if source.kind == "stream":
        why = getattr(source, "stop_reason", None) or ("q in the --show window" if loop.overlays.stop_asked else None)
        if why:
            summary.stream_end = f"{source.live.display_name}: ended by {why}"
