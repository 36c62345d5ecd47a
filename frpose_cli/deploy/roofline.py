"""A network's own ceiling on this machine: the roofline of its layers.

The precision's ceiling (:mod:`frpose_cli.deploy.ceiling`) is the rate of a large dense convolution; a
network of small or depthwise layers cannot reach it, because such a layer moves more bytes per FLOP than
the cores can be fed: a 5×5 depthwise convolution does 50 FLOPs per output value and must read and write
8 bytes for it in float32.  The roofline asks what the network would take if every layer ran at the slower of
its two limits and nothing else cost anything:

    t_layer = max(FLOPs / compute ceiling, bytes / memory bandwidth)

with ``bytes`` the least a layer must move (its input and output once, its weights once) in the set-up's
element size, and the bandwidth *measured* at that working-set size (:func:`measure_bandwidth`: a tensor copy,
read plus write, at sizes from L2 to DRAM), so a layer whose tensors fit in a cache gets the cache's rate.
The sum over the convolutions (transposed too) and linear layers bounds the network's time from below for
any implementation that does the counted arithmetic (no Winograd or FFT shortcut) at no more than the measured
rates; ``100 · bound / measured time`` is the share of that
ceiling a set-up reaches (``pct_roofline``, beside the dense ``pct_ceiling``).  What the bound leaves out
(activations, concatenations, resizing, the pre- and post-processing) is time a fused implementation can hide,
so it counts against the set-up.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn

from frpose_cli.device import synchronize

# Working sets (source + destination bytes) of the bandwidth curve: a private L2, the L3, DRAM.
BANDWIDTH_SIZES = tuple(2 ** k for k in (19, 21, 23, 25, 27))      # 512 KiB … 128 MiB
SMALL_BANDWIDTH_SIZES = (2 ** 16, 2 ** 18)                          # tests: the same code in milliseconds
ELEMENT_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 1}


@dataclass(frozen=True)
class LayerCost:
    name: str
    kind: str          # "conv 3x3", "depthwise 5x5", "linear", ...
    flops: float       # 2 × multiply-accumulates
    elements: int      # input + output + weight elements: what the layer must move at least once

    def bytes(self, precision: str) -> float:
        return self.elements * ELEMENT_BYTES[precision]


def layer_costs(model: nn.Module, *inputs) -> list[LayerCost]:
    """Each convolution, transposed convolution and linear layer of one forward pass of ``model`` on ``inputs``, in call order
    (a layer shared by several levels counts once per call)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    costs, hooks = [], []

    def hook(name):
        def record(module, args, out):
            x = args[0]
            if isinstance(module, nn.ConvTranspose2d):   # each input value scatters into k×k×(out/groups) outputs
                kh, kw = module.kernel_size
                flops, kind = 2.0 * x.numel() * module.out_channels // module.groups * kh * kw, f"deconv {kh}x{kw}"
            elif isinstance(module, nn.Conv2d):
                kh, kw = module.kernel_size
                flops = 2.0 * out.numel() * (module.in_channels // module.groups) * kh * kw
                kind = (f"depthwise {kh}x{kw}" if module.groups == module.in_channels and module.groups > 1
                        else f"conv {kh}x{kw}")
            else:
                flops, kind = 2.0 * out.numel() * module.in_features, "linear"
            costs.append(LayerCost(name, kind, flops, int(x.numel() + out.numel() + module.weight.numel())))
        return record

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            hooks.append(module.register_forward_hook(hook(name)))
    try:
        with torch.inference_mode():
            model(*inputs)
    finally:
        for h in hooks:
            h.remove()
    return costs


def measure_bandwidth(sizes=BANDWIDTH_SIZES, repeats: int = 5, device="cpu") -> dict:
    """Working-set bytes → GB/s of a float32 tensor copy on ``device`` (bytes read + bytes written over the time),
    the best of ``repeats`` timings of enough copies to last a few milliseconds, with torch's threads."""
    if not sizes or any(int(s) < 1024 for s in sizes):
        raise ValueError("sizes must be working-set sizes of at least 1024 bytes")
    if int(repeats) < 1:
        raise ValueError("repeats must be at least 1")
    device = torch.device(device)
    curve = {}
    with torch.inference_mode():
        for size in sorted(int(s) for s in sizes):
            src = torch.rand(size // 8, device=device)   # half the working set each, 4 bytes an element
            dst = torch.empty_like(src)
            calls = max(1, 2 ** 22 // size)          # ~4 MiB moved per timing at least: timer resolution
            dst.copy_(src)
            best = float("inf")
            for _ in range(repeats):
                synchronize(device)
                start = time.perf_counter()
                for _ in range(calls):
                    dst.copy_(src)
                synchronize(device)
                best = min(best, (time.perf_counter() - start) / calls)
            curve[size] = 2 * src.numel() * 4 / best / 1e9
    return curve


def bandwidth_at(curve: dict, nbytes: float) -> float:
    """The bandwidth measured at the smallest working set that holds ``nbytes`` (the largest one's beyond it)."""
    if not curve:
        raise ValueError("curve must hold at least one measured size")
    fits = [s for s in curve if s >= nbytes]
    return curve[min(fits)] if fits else curve[max(curve)]


@dataclass
class Roofline:
    precision: str
    compute_gflops: float          # the precision's measured ceiling
    seconds: float                 # the lower bound on one pass
    flops: float
    layers: int
    memory_bound_layers: int
    memory_bound_flops_share: float
    bandwidth: dict = field(default_factory=dict)   # working-set bytes → GB/s

    @property
    def gflops(self) -> float:
        """The network's own ceiling rate: its FLOPs over the bound."""
        return self.flops / self.seconds / 1e9 if self.seconds > 0 else float("nan")

    def share(self, measured_seconds: float) -> float:
        """The fraction of the roofline reached by a pass that took ``measured_seconds``."""
        return self.seconds / measured_seconds if measured_seconds > 0 else float("nan")

    def method(self) -> str:
        return (f"{self.precision} roofline {self.gflops:.0f} GFLOP/s for this network: {self.layers} layers at the "
                f"slower of {self.compute_gflops:.0f} GFLOP/s and the copy bandwidth at their working set "
                f"(GB/s: {bandwidth_words(self.bandwidth)}); {self.memory_bound_layers} layers, "
                f"{100 * self.memory_bound_flops_share:.0f} % of the FLOPs, are memory-bound")


def roofline(costs: list[LayerCost], precision: str, compute_gflops: float, curve: dict) -> Roofline:
    """The lower bound on the time of ``costs`` (see the module docstring)."""
    if precision not in ELEMENT_BYTES:
        raise ValueError(f"precision must be one of {', '.join(ELEMENT_BYTES)}, not {precision!r}")
    if not compute_gflops > 0:
        raise ValueError(f"compute_gflops must be positive, not {compute_gflops!r}")
    if not costs:
        raise ValueError("costs must name at least one layer")
    total = bound = memory_flops = 0.0
    memory_layers = 0
    for c in costs:
        compute_s = c.flops / (compute_gflops * 1e9)
        memory_s = c.bytes(precision) / (bandwidth_at(curve, c.bytes(precision)) * 1e9)
        bound += max(compute_s, memory_s)
        total += c.flops
        if memory_s > compute_s:
            memory_layers += 1
            memory_flops += c.flops
    return Roofline(precision, compute_gflops, bound, total, len(costs), memory_layers,
                    memory_flops / total if total else 0.0, dict(curve))


def bandwidth_words(curve: dict) -> str:
    """``512 KiB 121, 2 MiB 176, …``: each measured working set and its GB/s."""
    def size(nbytes: int) -> str:
        return f"{nbytes / 2 ** 20:g} MiB" if nbytes >= 2 ** 20 else f"{nbytes / 2 ** 10:g} KiB"
    return ", ".join(f"{size(s)} {g:.0f}" for s, g in sorted(curve.items()))
