"""Model cost and speed: parameters, multiply-accumulates, latency, throughput, memory.

MACs are counted by ``torch.utils.flop_counter`` (which counts FLOPs = 2 × MACs for
convolutions and matrix products); the paper's Table 2 "GFLOPs" are multiply-accumulates,
so we report GMACs and compare those.  Achieved GFLOP/s (2 × MACs per second at the
throughput batch) is set against a measured float32 matmul peak on the same device and
thread count, which tells how close the network runs to what the hardware can do.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from .cards import ModelCard
from .device import synchronize
from .errors import FrposeError
from .optimize import SETUPS, input_memory_format, prepare_for_inference

TABLE2_SET = ("sbn-r50", "sbn-r101", "sbn-r152", "frpose-r34")
TABLE2_SIZES = ((256, 192), (384, 288))
BENCH_SETUPS = SETUPS   # torch set-ups and ONNX Runtime (exported in memory, CPU provider)


@dataclass
class BenchResult:
    model: str
    input_size: list
    heatmap_size: list
    setup: str
    device: str
    threads: int
    batch: int
    params_m: float
    gmacs: float
    latency_ms: float           # median, batch 1
    latency_p90_ms: float
    throughput_ips: float       # images/s at `batch`
    achieved_gflops: float      # 2·MACs·images/s at `batch`
    matmul_peak_gflops: float
    peak_share: float           # achieved / matmul peak
    peak_memory_mb: float | None
    paper: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: torch.nn.Module, input_size, device=torch.device("cpu")) -> int:
    """Multiply-accumulates of one forward pass at batch 1 (FLOPs ÷ 2)."""
    x = torch.zeros(1, 3, *input_size, device=device)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(x)
    return counter.get_total_flops() // 2


def time_calls(fn, device: torch.device, warmup: int, iters: int) -> list[float]:
    """Wall-clock seconds of ``iters`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def matmul_peak_gflops(device: torch.device, n: int = 2048, iters: int = 8) -> float:
    """Best float32 GEMM rate over ``iters`` n×n×n products: the practical peak of this device."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    times = time_calls(lambda: torch.mm(a, b), device, warmup=2, iters=iters)
    return 2 * n ** 3 / min(times) / 1e9


def _read_status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def measure_peak_memory_mb(fn, device: torch.device) -> float | None:
    """Peak memory while running ``fn``: CUDA allocator peak, or the process's peak RSS on Linux.

    On CPU the kernel's high-water mark (VmHWM) is reset through /proc/self/clear_refs
    first, so the figure is this call's peak resident size (weights included), not the
    run's.  Returns None where neither is available.
    """
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    fn()
    hwm = _read_status_kb("VmHWM")
    return None if hwm is None else hwm / 1024


def bench_card(card: ModelCard, device: torch.device, setup: str = "fused", batch: int = 8,
               warmup: int = 3, iters: int = 20, matmul_peak: float | None = None) -> BenchResult:
    model = card.build_model().eval()
    params = count_params(model)
    macs = count_macs(model, card.input_size)
    if setup == "onnxruntime" and device.type != "cpu":
        raise FrposeError("the onnxruntime set-up runs on the CPU here; use --device cpu")
    model, fmt = prepare_for_inference(model, device, setup), input_memory_format(setup)
    x1 = torch.randn(1, 3, *card.input_size, device=device).contiguous(memory_format=fmt)
    xb = torch.randn(batch, 3, *card.input_size, device=device).contiguous(memory_format=fmt)
    peak = matmul_peak if matmul_peak is not None else matmul_peak_gflops(device)
    with torch.inference_mode():
        lat = time_calls(lambda: model(x1), device, warmup, iters)
        tput_times = time_calls(lambda: model(xb), device, 1, max(3, iters // 4))
        mem = measure_peak_memory_mb(lambda: model(xb), device)
    ips = batch / statistics.median(tput_times)
    achieved = 2 * macs * ips / 1e9
    lat_sorted = sorted(lat)
    p90 = lat_sorted[min(len(lat_sorted) - 1, int(round(0.9 * (len(lat_sorted) - 1))))]
    ref = card.paper_reference() or {}
    return BenchResult(
        model=card.name, input_size=list(card.input_size), heatmap_size=list(card.heatmap_size),
        setup=setup, device=str(device), threads=torch.get_num_threads(), batch=batch,
        params_m=round(params / 1e6, 3), gmacs=round(macs / 1e9, 3),
        latency_ms=round(statistics.median(lat) * 1e3, 3), latency_p90_ms=round(p90 * 1e3, 3),
        throughput_ips=round(ips, 3), achieved_gflops=round(achieved, 2),
        matmul_peak_gflops=round(peak, 2), peak_share=round(achieved / peak, 4),
        peak_memory_mb=None if mem is None else round(mem, 1),
        paper={k: ref[k] for k in ("params_m", "gmacs", "latency_ms", "ap") if k in ref},
    )


def latency_ratios(results: list[BenchResult], num: str = "frpose-r34", den: str = "sbn-r152") -> list[dict]:
    """num ÷ den latency per input size and set-up, with the paper's ratio beside it."""
    out = []
    for a in results:
        if a.model != num:
            continue
        for b in results:
            if b.model == den and b.input_size == a.input_size and b.setup == a.setup:
                paper = (a.paper.get("latency_ms") / b.paper["latency_ms"]
                         if a.paper.get("latency_ms") and b.paper.get("latency_ms") else None)
                out.append({"input_size": a.input_size, "setup": a.setup,
                            "ratio": a.latency_ms / b.latency_ms, "paper_ratio": paper})
    return out
