"""Model cost and speed: parameters, multiply-accumulates, latency, throughput, memory.

MACs are counted by ``torch.utils.flop_counter`` (which counts FLOPs = 2 × MACs for
convolutions and matrix products); the paper's Table 2 "GFLOPs" are multiply-accumulates,
so we report GMACs and compare those.  Achieved GFLOP/s (2 × MACs per second at the
throughput batch; giga-operations for int8) is set against the measured ceiling of the
row's precision on the same device and thread count (:mod:`frpose_cli.deploy.ceiling`), which
tells how close the network runs to what the hardware can do.  Reduced-precision rows
carry the accuracy gate's figures (:mod:`frpose_cli.precision.gate`) when trained weights exist.
"""
from __future__ import annotations

import copy
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from frpose_cli.cards import ModelCard
from frpose_cli.device import synchronize
from frpose_cli.errors import FrposeError
from frpose_cli.jobs.progress import heartbeat
from frpose_cli.runtime.optimize import SETUP_PRECISION, SETUPS, input_memory_format, prepare_for_inference, setup_named

TABLE2_SET = ("sbn-r50", "sbn-r101", "sbn-r152", "frpose-r34")
TABLE2_SIZES = ((256, 192), (384, 288))


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
    achieved_gflops: float      # 2·MACs·images/s at `batch` (the name before gflops_per_s; same value)
    matmul_peak_gflops: float | None   # float32 torch GEMM 2048³ rate (one of the ceiling's kernels)
    peak_share: float | None           # achieved / matmul peak
    peak_memory_mb: float | None
    paper: dict = field(default_factory=dict)
    precision: str = "fp32"
    batch_latency_ms: float | None = None    # median time of one call at `batch`
    gflops_per_s: float | None = None        # 2·MACs·images/s at `batch` (int8: giga-operations)
    ceiling_gflops: float | None = None      # the measured ceiling of this precision
    pct_ceiling: float | None = None         # 100 · gflops_per_s / ceiling_gflops
    gate_median_px: float | None = None      # accuracy gate vs fp32 (reduced precision, trained weights)
    gate_p95_px: float | None = None
    gate_ap_delta: float | None = None       # AP points, candidate − fp32
    gate_passed: bool | None = None
    gate_note: str = ""                      # the gate's reason to reject, or why it did not run
    machine: str = ""                        # CPU model and ISA (or GPU and capability), threads

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
               warmup: int = 3, iters: int = 20, matmul_peak: float | None = None, ceiling=None,
               calibration: torch.Tensor | None = None, machine: str = "", net=None, loaded=None) -> BenchResult:
    """Time ``card``'s network as ``setup``: ``net`` (loaded weights) or random weights (speed does
    not depend on them); or ``loaded``, an exported file's PoseModel (an OpenVINO IR), timed as it
    runs, its parameters and MACs counted on the card's network (the same architecture).
    ``ceiling`` (:class:`~frpose_cli.deploy.ceiling.Ceiling` of the set-up's precision) fills the
    ceiling fields; int8 calibrates on ``calibration`` or on the vendored real crops."""
    model = copy.deepcopy(net).eval() if net is not None else card.build_model().eval()
    params = count_params(model)
    macs = count_macs(model, card.input_size)
    if setup_named(setup).device == "cpu" and device.type != "cpu":
        raise FrposeError(f"the {setup} set-up runs on the CPU here; use --device cpu")
    if setup == "int8" and calibration is None:
        from frpose_cli.precision.crops import calibration_crops
        calibration = calibration_crops(card).inputs
    model, fmt = ((loaded, loaded.input_memory_format) if loaded is not None else
                  (prepare_for_inference(model, device, setup, calibration), input_memory_format(setup)))
    x1 = torch.randn(1, 3, *card.input_size, device=device).contiguous(memory_format=fmt)
    xb = torch.randn(batch, 3, *card.input_size, device=device).contiguous(memory_format=fmt)
    peak = matmul_peak if matmul_peak is not None else (ceiling.kernels.get("torch GEMM 2048³")
                                                        if ceiling is not None else None)
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
        matmul_peak_gflops=None if peak is None else round(peak, 2),
        peak_share=None if peak is None else round(achieved / peak, 4),
        peak_memory_mb=None if mem is None else round(mem, 1),
        paper={k: ref[k] for k in ("params_m", "gmacs", "latency_ms", "ap") if k in ref},
        precision=SETUP_PRECISION[setup], batch_latency_ms=round(statistics.median(tput_times) * 1e3, 3),
        gflops_per_s=round(achieved, 2), machine=machine,
        ceiling_gflops=None if ceiling is None else round(ceiling.gflops, 2),
        pct_ceiling=None if ceiling is None else round(100 * ceiling.share(achieved), 1),
    )


def set_ceiling(result: BenchResult, ceiling) -> BenchResult:
    """Fill (or refresh, after a re-measurement) the ceiling fields of ``result``."""
    result.ceiling_gflops = round(ceiling.gflops, 2)
    result.pct_ceiling = round(100 * ceiling.share(result.gflops_per_s), 1)
    return result


def set_gate(result: BenchResult, report=None, note: str = "") -> BenchResult:
    """Copy a :class:`~frpose_cli.precision.gate.GateReport` (or the reason there is none) into ``result``."""
    if report is not None:
        result.gate_median_px, result.gate_p95_px = round(report.median_px, 4), round(report.p95_px, 4)
        result.gate_ap_delta = None if report.ap_delta is None else round(report.ap_delta, 3)
        result.gate_passed, note = report.passed, report.reason
    result.gate_note = note
    return result


def latency_ratios(results: list[BenchResult], num: str = "frpose-r34", den: str = "sbn-r152") -> list[dict]:
    """num ÷ den latency per input size and set-up, with the paper's ratio beside it."""
    out = []
    for a in results:
        if a.model != num:
            continue
        for b in results:
            if b.model == den and b.input_size == a.input_size and b.setup == a.setup and b.batch == a.batch:
                paper = (a.paper.get("latency_ms") / b.paper["latency_ms"]
                         if a.paper.get("latency_ms") and b.paper.get("latency_ms") else None)
                out.append({"input_size": a.input_size, "setup": a.setup, "precision": a.precision,
                            "ratio": a.latency_ms / b.latency_ms, "paper_ratio": paper,
                            "batch": a.batch, "batch_ratio": a.throughput_ips and b.throughput_ips / a.throughput_ips})
    return out


# --- a whole `frpose bench` run --------------------------------------------------------------

def bench_setups(requested: list[str], device, hw, log=print) -> list[str]:
    """The set-ups to run: ``all`` is every set-up that runs natively here (each one left out is
    named with the reason); set-ups asked for by name run even when emulated (bf16 on an
    AVX2 CPU: that is how its 60x slowdown was measured), with a warning."""
    from frpose_cli.precision.formats import unavailable_reason
    wanted = list(SETUPS) if "all" in requested else list(dict.fromkeys(requested))
    for s in wanted:
        if s not in SETUPS:
            raise FrposeError(f"unknown --setup {s!r}; choose from {', '.join(SETUPS)} or all")
    out = []
    for s in wanted:
        reason = unavailable_reason(SETUP_PRECISION[s], device, hw, setup_named(s).backend)
        if reason is None:
            out.append(s)
        elif "all" in requested:
            log(f"{s} skipped: {reason}")
        elif s == "bf16" and torch.device(device).type == "cpu":   # torch's: OpenVINO's bf16 is never emulated
            log(f"warning: {reason}; measuring it because --setup bf16 asked for it")
            out.append(s)
        else:
            raise FrposeError(f"--setup {s}: {reason}")
    return out


def run_bench(cards: list, setups: list[str], device, batch: int = 8, warmup: int = 3, iters: int = 20,
              precision: str | None = None, gate_weights=None, calib_data=None, log=print, progress=None,
              net=None, loaded=None, beat=print):
    """Every (card, set-up) measured with its precision's ceiling and, for reduced precision, the
    accuracy gate on trained weights.  ``precision`` adds its set-up (``auto``: the one
    :func:`frpose_cli.precision.autoselect.choose` picks per card).  ``net``: loaded weights of the one card
    (``--weights``), timed instead of random ones; ``loaded``: an exported file's PoseModel, timed as its
    own set-up.  ``beat``: where a step longer than 5 s says it is still working (None: a live bar shows
    it).  Returns (results, ceilings, notes)."""
    from frpose_cli.deploy.ceiling import measure_ceiling, raise_ceiling
    from frpose_cli.precision.gate import gate_setup, load_gate_network
    from frpose_cli.hardware import detect
    from frpose_cli.precision.formats import check_precision, setup_for, unavailable_reason
    device = torch.device(device)
    hw = detect(device)
    machine = hw.describe(device)
    plan = [(card, s) for card in cards for s in setups]
    notes, gate_nets = [], {}

    def gate_net_for(card):
        key = (card.name, tuple(card.input_size))
        if key not in gate_nets:
            gate_nets[key] = load_gate_network(card, gate_weights)
        return gate_nets[key]

    def net_of(card):
        return net.eval() if net is not None else card.build_model().eval()

    if precision:
        check_precision(precision)
        for card in cards:
            if precision == "auto":
                from frpose_cli.precision.autoselect import choose
                gate_net, why = gate_net_for(card)
                if gate_net is None:
                    notes.append(f"{card.name}: reduced precisions not gated: {why}")
                sel, _ = choose(net_of(card), card, device, "auto", hw, calib_data, log=log, gate_net=gate_net)
                notes.append(f"{card.name} {card.input_size[0]}x{card.input_size[1]}: {sel.line()}")
                chosen = sel.setup
            else:
                reason = unavailable_reason(precision, device, hw)
                if reason:
                    raise FrposeError(f"--precision {precision}: {reason}")
                chosen = setup_for(precision, device)
            if (card, chosen) not in plan:
                plan.append((card, chosen))
    ceilings = {}
    for p in dict.fromkeys(["fp32"] + [SETUP_PRECISION[s] for _, s in plan]):   # fp32 always: the matmul peak field
        what, started = f"measuring the {p} ceiling (the best convolution and GEMM rates of the libraries)", time.monotonic()
        log(what)
        with heartbeat(beat, f"{p} ceiling"):
            ceilings[p] = measure_ceiling(device, p, hw)
        log(f"{p} ceiling: {ceilings[p].gflops:.0f} GFLOP/s (measured in {time.monotonic() - started:.0f} s)")
    matmul_peak = ceilings["fp32"].kernels.get("torch GEMM 2048³")
    results = []
    for i, (card, s) in enumerate(plan, 1):
        what = f"{card.name} {card.input_size[0]}x{card.input_size[1]} {s}"
        log(f"[{i}/{len(plan)}] {what}")   # a line per row: a log file or a pipe sees the run move
        if progress:
            progress(what)
        with heartbeat(beat, what):
            r = bench_card(card, device, s, batch, warmup, iters, matmul_peak, ceilings[SETUP_PRECISION[s]],
                           machine=machine, net=net, loaded=loaded)
            if r.precision != "fp32":
                gate_net, why = gate_net_for(card)
                set_gate(r, gate_setup(card, s, gate_net, device, calib_data) if gate_net is not None else None,
                         "" if gate_net is not None else f"not gated: {why}")
        results.append(r)
    for p, c in ceilings.items():   # a network faster than its ceiling: measure the ceiling again, longer
        fastest = max((r.gflops_per_s for r in results if r.precision == p), default=0.0)
        if fastest > c.gflops:
            log(f"a model outran the {p} ceiling ({fastest:.0f} > {c.gflops:.0f}): measuring it again")
            ceilings[p] = raise_ceiling(c, fastest, hw)
            for r in results:
                if r.precision == p:
                    set_ceiling(r, ceilings[p])
    return results, ceilings, notes
