"""One progress bar per run, for every verb that works through items in shards (predict's
images, eval's person crops).

Each process counts its own items.  Under torchrun the ranks other than 0 rewrite a one-number
file (``progress-I-of-N`` in the run's parts folder) about once a second and when they finish;
rank 0's bar shows the total over all ranks with each rank's count.  Files, not a collective:
ranks finish at different times and a collective would run into gloo's and NCCL's timeouts
(the same reason parts are merged through files, :mod:`frpose_cli.jobs.shards`).  Array jobs
(``--shard i/n``) each show their own bar.

Inside :func:`progress_lines` (training's validation pass, whose log is often a file), a progress
whose bar would not be seen (``--no-progress``, or stderr not a terminal) says a line instead,
about every :data:`LINE_SECONDS` seconds (at the first item done after that), and one at its end.
"""
from __future__ import annotations

import contextvars
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

POLL_SECONDS = 1.0
LINE_SECONDS = 5.0
_LINES = contextvars.ContextVar("frpose_progress_lines", default=None)   # (say, label) inside progress_lines


@contextmanager
def progress_lines(say, label: str = ""):
    """In this block a :class:`JobProgress` with no bar on a terminal says ``"LABEL: DESC n/total units
    (p %), r unit/s"`` through ``say`` every :data:`LINE_SECONDS` and when it closes."""
    token = _LINES.set((say, label))
    try:
        yield
    finally:
        _LINES.reset(token)


def count_file(folder: Path, index: int, count: int) -> Path:
    return Path(folder) / f"progress-{index}-of-{count}"


class JobProgress:
    """``update(n)`` as items finish, ``poll()`` while waiting for other ranks, ``close()`` at the end."""

    def __init__(self, enabled: bool, shard, folder: Path, desc: str, unit: str, total: int | None = None,
                 total_all: int | None = None):
        self.shard, self.folder, self.own, self.last = shard, Path(folder), 0, 0.0
        self.enabled = bool(enabled)   # the same on every rank: no bar on rank 0, no count files either
        self.rank0 = shard.torchrun and shard.index == 0
        shows = bool(enabled) and (self.rank0 or not shard.torchrun)
        self.desc = f"{desc} {shard.label}" if shard.sharded else desc
        self.unit, self.total, self.counted = unit, total_all if self.rank0 else total, 0
        lines = _LINES.get()
        self.lines = lines if lines and (self.rank0 or not shard.torchrun) and not (shows and sys.stderr.isatty()) \
            else None   # (say, label): lines instead of a bar nobody sees
        self.started = self.said = time.monotonic()
        self.bar = tqdm(total=self.total, desc=self.desc, unit=unit, disable=not shows or self.lines is not None,
                        leave=False, dynamic_ncols=True)
        self.others = {i: count_file(self.folder, i, shard.count) for i in range(1, shard.count)} if self.rank0 else {}

    def update(self, n: int = 1) -> None:
        self.own += n
        if not self.shard.torchrun or self.rank0:
            self.counted += n
            self.bar.update(n)
        if self.shard.torchrun and time.monotonic() - self.last >= POLL_SECONDS:
            self.poll()
        if self.lines is not None and time.monotonic() - self.said >= LINE_SECONDS:
            self._say()

    def _say(self, end: bool = False) -> None:
        say, label = self.lines
        self.said = now = time.monotonic()
        n, total = self.counted, self.total
        done = f"{n}/{total} {self.unit}s ({100 * n / max(total, 1):.0f} %)" if total else f"{n} {self.unit}s"
        how = f"in {now - self.started:.0f} s" if end else f"{n / max(now - self.started, 1e-9):.3g} {self.unit}/s"
        say(f"{label + ': ' if label else ''}{self.desc} {done}, {how}")

    def poll(self) -> None:
        """Rank 0: read the others' counts into the bar; the others: write their own."""
        self.last = time.monotonic()
        if not self.shard.torchrun or not self.enabled:
            return
        if not self.rank0:
            self.folder.mkdir(parents=True, exist_ok=True)
            count_file(self.folder, self.shard.index, self.shard.count).write_text(str(self.own))
            return
        counts = {0: self.own}
        for i, path in self.others.items():
            try:
                counts[i] = int(path.read_text() or 0)
            except (OSError, ValueError):   # not written yet, or read while being rewritten
                counts[i] = 0
        self.bar.n = self.counted = sum(counts.values())
        self.bar.set_postfix_str(" ".join(f"rank{i} {c}" for i, c in counts.items()), refresh=True)

    def finish(self) -> None:
        """This rank's work is done: its last count is published (before its part, so rank 0 never misses it)."""
        if self.shard.torchrun and not self.rank0:
            self.poll()

    def close(self) -> None:
        if self.lines is not None and self.counted:
            self._say(end=True)
            self.lines = None
        self.bar.close()
        for path in self.others.values():      # rank 0 is the last to need them
            path.unlink(missing_ok=True)


@contextmanager
def heartbeat(say, what: str, every: float = LINE_SECONDS):
    """One long step without items to count (bench's ceiling, a model being timed): ``say`` gets
    ``"WHAT: still working (N s)"`` every ``every`` seconds until the block ends, from a daemon thread,
    so a log never sits silent for minutes (``say`` None: nothing, e.g. where a live bar shows it)."""
    import threading
    if say is None:
        yield
        return
    done, started = threading.Event(), time.monotonic()

    def beat():
        while not done.wait(every):
            say(f"{what}: still working ({time.monotonic() - started:.0f} s)")
    thread = threading.Thread(target=beat, name="frpose-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
