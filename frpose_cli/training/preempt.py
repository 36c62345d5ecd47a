"""Preemption and divergence: the two ways a cluster run stops that are not the user's choice.

**Preemption.** SIGTERM (what schedulers send before killing a job) and SIGUSR1 (SLURM's
``--signal=USR1@120`` warning) set a flag; the training loop finishes the optimiser step it is
in, writes a resumable ``last.pt`` at that step boundary (the epoch's position in the sampler,
the RNG state of the epoch's start, optimiser, scheduler, scaler and the epoch's running loss
sums) and exits with :data:`EXIT_PREEMPTED`.  ``frpose train --resume RUN`` continues from that
step: the sampler order depends only on (seed, epoch) and augmentation only on (seed, epoch,
index), so the remaining batches are exactly those the uninterrupted run would have drawn, and
the final weights are equal bit for bit on the CPU.  Under torchrun the flag is summed over the
ranks at every step, so every rank stops at the same step (a signal reaching one rank stops all).

**Divergence.** A non-finite loss (NaN/inf) stops the run at that step with one line naming the
epoch and step; ``last.pt`` of the last finished epoch is left as it was (the weights after a
non-finite step are garbage and are not saved).  AMP's dynamic loss scaling skips steps whose
gradients overflow by design; those steps have a finite loss and are not divergence.
"""
from __future__ import annotations

import signal
import threading

from torch.utils.data import Sampler

from frpose_cli.errors import FrposeError

EXIT_PREEMPTED = 3          # documented in docs/training.md; SLURM: requeue on it
SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None)) if s is not None)


class Preempted(FrposeError):
    """The run stopped on a signal after saving a resumable checkpoint."""
    exit_code = EXIT_PREEMPTED


class Diverged(FrposeError):
    """The loss became non-finite."""


class StopSignals:
    """``with StopSignals() as stop:`` … ``stop.requested`` is True once SIGTERM/SIGUSR1 arrived.
    Handlers are installed only in the main thread (Python allows no other) and restored on exit."""

    def __init__(self):
        self.requested, self.signal_name, self._saved = False, None, {}

    def _handle(self, signum, _frame):
        self.requested, self.signal_name = True, signal.Signals(signum).name

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._saved[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._saved.items():
            signal.signal(s, handler)


class SkipSampler(Sampler):
    """``sampler``'s order without its first ``skip`` indices (resuming mid-epoch); ``set_epoch``
    reaches the wrapped sampler, and the skip applies to the first epoch only."""

    def __init__(self, sampler, skip: int):
        self.sampler, self.skip = sampler, int(skip)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self):
        skip, self.skip = self.skip, 0
        for i, index in enumerate(self.sampler):
            if i >= skip:
                yield index

    def __len__(self) -> int:
        return max(len(self.sampler) - self.skip, 0)


def check_finite(value: float, epoch: int, step: int, run_dir, last_epoch: int) -> None:
    """One line when the loss of ``step`` (1-based) of ``epoch`` (1-based) is not finite."""
    if value == value and abs(value) != float("inf"):
        return
    kept = (f"{run_dir}/last.pt (epoch {last_epoch}) is kept as it was" if last_epoch
            else "no checkpoint was written yet")
    raise Diverged(f"training diverged: the loss is {value} at epoch {epoch}, step {step}; stopped, {kept}; "
                   "lower --lr (or check the data) and resume or start again")
