"""Sharded `eval` and `predict`: one job split over processes, GPUs and machines by image.

Two ways to run shards, one code path:

* ``torchrun --nproc-per-node N [--nnodes M ...] -m frpose_cli eval|predict ...``: each process
  reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (:mod:`frpose_cli.distributed`), takes CUDA device
  ``LOCAL_RANK`` when CUDA is present, and joins a process group (NCCL on CUDA, gloo on the CPU)
  used only at the start: rank 0 picks the run folder and every rank checks it sees the same
  file system.  Rank 0 merges at the end.
* ``--shard i/n`` (0 ≤ i < n) without torchrun, for SLURM array jobs and the like: no process
  group; every job writes into the same ``--out``, and the last one to finish merges (or
  ``frpose merge`` does, e.g. after a job was lost).

Decisions (docs/predict.md, docs/evaluation.md):

* **The split** is round robin over positions: ``predict`` numbers the source's files in order
  (ignored files included, :meth:`frpose_cli.data.sources.Source.files`), ``eval`` the sorted ids of the
  images with person boxes; position ``p`` belongs to shard ``p mod n``.  Every process computes
  it from names alone, neighbouring images (often alike in size and crowding) land on different
  shards, and the rule is recorded in the outputs.  A video is one unit: its overlay video is
  written by one process and its frames are decoded in order anyway.
* **Merging goes through files** on a file system all shards see (checked at the start): a
  shard's part is written atomically and is useful alone (it is what ``--resume`` continues).
  Rank 0 waits for the other parts by polling that folder, not with a collective: shards of
  uneven length would run into gloo's and NCCL's collective timeouts.
"""
from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from frpose_cli.errors import FrposeError

SHARD_RULE = "position p belongs to shard p mod n"


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1
    torchrun: bool = False
    env: object = None              # distributed.DistEnv under torchrun

    @property
    def sharded(self) -> bool:
        return self.count > 1

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def is_main(self) -> bool:
        """The process that merges under torchrun (and the only process of an unsharded run)."""
        return self.index == 0 or not self.torchrun

    def owns(self, position: int) -> bool:
        return position % self.count == self.index


def parse_shard(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise FrposeError(f"--shard takes i/n with 0 ≤ i < n, e.g. --shard 0/4 (got {text!r})")
    return int(m.group(1)), int(m.group(2))


def shard_for(shard: str | None, device: str | None) -> Shard:
    """This process's shard: torchrun's rank, ``--shard i/n``, or the whole job."""
    from frpose_cli.distributed import world_size
    world = world_size()
    if world > 1 and shard:
        raise FrposeError("--shard is for runs without torchrun; under torchrun each rank is a shard already")
    if world > 1:
        import atexit

        from frpose_cli import distributed
        env = distributed.setup(device)
        atexit.register(distributed.cleanup, env)   # also after an error; a second cleanup does nothing
        return Shard(env.rank, env.world_size, True, env)
    if shard:
        i, n = parse_shard(shard)
        return Shard(i, n)
    return Shard()


def device_for(shard: Shard, device: str | None):
    """torchrun: the rank's device (GPU LOCAL_RANK when CUDA is present); otherwise ``--device``."""
    if shard.torchrun:
        return shard.env.device
    from frpose_cli.device import pick_device
    return pick_device(device)


def cleanup(shard: Shard) -> None:
    if shard.torchrun:
        from frpose_cli import distributed
        distributed.cleanup(shard.env)


def agree(shard: Shard, decide):
    """``decide()`` on rank 0, its value (or its one-line error) on every rank: the run folder and
    the checks that pick it are made once, so all ranks write to the same place or all stop."""
    if not shard.torchrun:
        return decide()
    from frpose_cli.distributed import broadcast_object
    value = error = None
    if shard.index == 0:
        try:
            value = decide()
        except FrposeError as e:
            error = str(e)
    value, error = broadcast_object((value, error), shard.env)
    if error is not None:
        raise FrposeError(error)
    return value


def check_shared_folder(folder: Path, shard: Shard, what: str) -> None:
    """Under torchrun, every rank must see the files of rank 0 (parts are merged through them).
    Probed with a file in the nearest existing folder, so nothing is created for a failed run."""
    if not shard.torchrun:
        return
    from frpose_cli.distributed import all_reduce_sum, broadcast_object
    from frpose_cli.outputs import _existing_ancestor
    base = _existing_ancestor(Path(folder))
    probe = None
    if shard.index == 0:
        probe = base / f".frpose-shared-{secrets.token_hex(6)}"
        probe.write_text("rank 0")
    probe = Path(broadcast_object(str(probe), shard.env))
    missing = all_reduce_sum([0.0 if probe.exists() else 1.0], shard.env)[0]
    if shard.index == 0:
        probe.unlink(missing_ok=True)
    if missing:
        raise FrposeError(f"{what} {folder}: {int(missing)} of {shard.count} ranks cannot see rank 0's files "
                          "there; sharded runs merge through files, so --out must be on a file system every "
                          "node mounts")


def wait_until(ready, tick=None, poll: float = 1.0) -> None:
    """Poll ``ready()`` (calling ``tick()`` meanwhile) until it holds."""
    while not ready():
        if tick is not None:
            tick()
        time.sleep(poll)


def take_merge_lock(folder: Path) -> bool:
    """True for exactly one of the shards that finish together (the one that creates the lock file)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(folder / "merging.lock", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def release_merge_lock(folder: Path) -> None:
    (folder / "merging.lock").unlink(missing_ok=True)


def merge_when_complete(shard: Shard, lock_folder: Path, complete, merge, tick=None):
    """After this shard's part is written: ``merge()`` in the one process that merges, else None.

    Under torchrun rank 0 waits (polling, calling ``tick``) until ``complete()`` and merges; an array
    job merges only when it finds every part ``complete()`` and wins the merge lock in
    ``lock_folder`` (two that finish together: one merges).  An unsharded run merges at once.
    predict (logs with a closing line) and eval (one ``.npz`` per shard) differ only in
    ``complete`` and ``merge``."""
    if not shard.sharded:
        return merge()
    if shard.torchrun:
        if shard.index != 0:
            return None
        wait_until(complete, tick)
        return merge()
    if not complete() or not take_merge_lock(lock_folder):
        return None
    try:
        return merge()
    finally:
        release_merge_lock(lock_folder)
