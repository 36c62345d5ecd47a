"""Multi-process work: torchrun environment, process group, SyncBatchNorm, loader workers.

``torchrun`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; single-node multi-GPU and
multi-node runs differ only in those numbers, so one code path serves both.  NCCL is used
on CUDA, gloo on CPU.  ``--sync-bn`` uses PyTorch's own ``nn.SyncBatchNorm`` wherever it
runs; it refuses CPU tensors (torch 2.14: "SyncBatchNorm expected input tensor to be on GPU
or XPU or privateuseone"), so on CPU, and only there, :class:`GlooSyncBatchNorm` does the same
job with autograd-aware all-reduces: it is what lets the 2-process CPU test reproduce a
single-process run with the doubled batch, and CPU-only clusters train with it.
"""
from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from frpose_cli.device import pick_device
from frpose_cli.errors import FrposeError


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def world_size() -> int:
    """Processes in this torchrun job (1 without torchrun, or when WORLD_SIZE is not a number)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def setup(device_name: str | None) -> DistEnv:
    """Read the torchrun environment, pick this process's device, join the process group."""
    world = world_size()
    if world <= 1:
        return DistEnv(device=pick_device(device_name))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise FrposeError(f"local rank {local_rank} but only {torch.cuda.device_count()} GPU(s) on this node")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistEnv(rank, local_rank, world, device)


def cleanup(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], env: DistEnv) -> list[float]:
    """Sum a few numbers over all ranks (for logging: loss sums, sample counts)."""
    if not env.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=env.device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_object(obj, env: DistEnv):
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class GlooSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the whole global batch (any backend).

    Two all-reduces per layer (mean, then squared deviations: the same two-pass
    arithmetic as single-process BN); ``torch.distributed.nn.all_reduce`` sums the
    gradients of the statistics across ranks in the backward pass.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce as _all_reduce

        def all_reduce(t):
            # the autograd-aware collective this block relies on; its deprecation notice would
            # otherwise print for every layer at every step
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                return _all_reduce(t)

        c = x.shape[1]
        count = torch.tensor([x.numel() / c], dtype=x.dtype, device=x.device)
        total = all_reduce(count.detach().clone())
        mean = all_reduce(x.sum(dim=(0, 2, 3))) / total
        centred = x - mean.view(1, c, 1, 1)
        var = all_reduce((centred * centred).sum(dim=(0, 2, 3))) / total
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                n = float(total)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / max(n - 1, 1)), alpha=m)
        y = centred * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        return y


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, GlooSyncBatchNorm):
            new = GlooSyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                    child.track_running_stats)
            new.load_state_dict(child.state_dict())
            new.train(child.training)
            setattr(module, name, new)
        else:
            convert_sync_batchnorm(child, device)
    return module


_libc = None   # opened in the parent: a dlopen in a freshly forked worker could wait on a lock forever


def _open_libc():
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        try:
            _libc = ctypes.CDLL("libc.so.6", use_errno=True)
        except OSError:
            pass
    return _libc


def _end_with(parent_pid: int, _worker_id: int | None = None) -> None:
    libc = _open_libc()   # already open when forked; a spawned worker opens it itself
    if libc is None:
        return
    try:
        libc.prctl(1, signal.SIGKILL)   # 1 = PR_SET_PDEATHSIG
    except AttributeError:
        return
    if os.getppid() != parent_pid:   # the parent died before prctl took effect
        os._exit(1)


def worker_init():
    """``worker_init_fn`` for DataLoaders: each worker ends with the process that made it.

    A rank killed mid-run (SIGKILL, the OOM killer) cannot stop its workers; a stuck worker would
    live on holding the run's stdout/stderr open, so torchrun and any caller waiting on them never
    finish.  On Linux the kernel kills the worker with its parent.
    """
    _open_libc()
    return functools.partial(_end_with, os.getpid())
