"""One progress bar per run, for every verb that works through items in shards (predict's
images, eval's person crops).

Each process counts its own items.  Under torchrun the ranks other than 0 rewrite a one-number
file (``progress-I-of-N`` in the run's parts folder) about once a second and when they finish;
rank 0's bar shows the total over all ranks with each rank's count.  Files, not a collective:
ranks finish at different times and a collective would run into gloo's and NCCL's timeouts
(the same reason parts are merged through files, :mod:`frpose_cli.jobs.shards`).  Array jobs
(``--shard i/n``) each show their own bar.
"""
from __future__ import annotations

import time
from pathlib import Path

from tqdm import tqdm

POLL_SECONDS = 1.0


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
        self.bar = tqdm(total=total_all if self.rank0 else total, desc=f"{desc} {shard.label}" if shard.sharded else desc,
                        unit=unit, disable=not shows, leave=False, dynamic_ncols=True)
        self.others = {i: count_file(self.folder, i, shard.count) for i in range(1, shard.count)} if self.rank0 else {}

    def update(self, n: int = 1) -> None:
        self.own += n
        if not self.shard.torchrun or self.rank0:
            self.bar.update(n)
        if self.shard.torchrun and time.monotonic() - self.last >= POLL_SECONDS:
            self.poll()

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
        self.bar.n = sum(counts.values())
        self.bar.set_postfix_str(" ".join(f"rank{i} {c}" for i, c in counts.items()), refresh=True)

    def finish(self) -> None:
        """This rank's work is done: its last count is published (before its part, so rank 0 never misses it)."""
        if self.shard.torchrun and not self.rank0:
            self.poll()

    def close(self) -> None:
        self.bar.close()
        for path in self.others.values():      # rank 0 is the last to need them
            path.unlink(missing_ok=True)
