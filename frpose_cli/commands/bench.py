"""`frpose bench`: params, MACs, latency, throughput and memory of model cards, side by side."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def bench(
    models: Optional[list[str]] = typer.Argument(
        None, help="Model cards to compare. None: the paper's Table 2 set (sbn-r50, sbn-r101, sbn-r152, "
                   "frpose-r34) at 256x192 and 384x288."),
    input_size: Optional[list[str]] = typer.Option(
        None, "--input-size", help="HxW; repeat for several sizes. Default: each card's own size."),
    setup: list[str] = typer.Option(
        ["fused"], "--setup", help="Inference set-up: eager (plain eval), channels_last, folded (BN folded "
                                   "into convs), fused (both), bf16 (fused + bfloat16 autocast), compile (fused + "
                                   "torch.compile), onnxruntime (ONNX Runtime CPU), or all. Repeatable."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:N (default: CUDA if present)."),
    threads: Optional[int] = typer.Option(None, help="CPU threads (default: torch's choice)."),
    batch: int = typer.Option(8, min=1, help="Batch size for the throughput figure."),
    warmup: int = typer.Option(3, min=0, help="Untimed warm-up iterations."),
    iters: int = typer.Option(20, min=1, help="Timed iterations at batch 1."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write one object per model, size and set-up."),
) -> None:
    """Measure params, MACs, latency (median/p90), throughput, peak memory and share of matmul peak."""
    import torch
    from rich.progress import Progress

    from ..bench import TABLE2_SET, TABLE2_SIZES, bench_card, matmul_peak_gflops
    from ..cards import load_card, parse_input_size
    from ..console import make_console
    from ..device import pick_device
    from ..errors import FrposeError
    from ..fileio import atomic_write_json
    from ..bench import BENCH_SETUPS
    from ..optimize import cpu_has_native_bf16

    console = make_console()
    names = list(models) if models else list(TABLE2_SET)
    sizes = [parse_input_size(s) for s in input_size] if input_size else (
        list(TABLE2_SIZES) if not models else [None])
    setups = list(BENCH_SETUPS) if "all" in setup else list(dict.fromkeys(setup))
    for s in setups:
        if s not in BENCH_SETUPS:
            raise FrposeError(f"unknown --setup {s!r}; choose from {', '.join(BENCH_SETUPS)} or all")
    cards = [load_card(n, sz) for sz in sizes for n in names]  # fail fast on unknown names
    dev = pick_device(device)
    if "all" in setup and dev.type == "cpu" and not cpu_has_native_bf16():
        # Emulated bf16 ran 60x slower than float32 here (docs/design.md); ask for it by name to measure it.
        setups.remove("bf16")
        console.print("bf16 skipped: this CPU has no native bfloat16 (AVX512-BF16/AMX); --setup bf16 measures it")
    if "onnxruntime" in setups and dev.type != "cpu":
        setups.remove("onnxruntime")
        console.print("onnxruntime skipped: it runs on the CPU here")
    if threads:
        torch.set_num_threads(threads)

    with console.status("measuring the float32 matmul peak"):
        peak = matmul_peak_gflops(dev)
    results = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("benchmarking", total=len(cards) * len(setups))
        for card in cards:
            for s in setups:
                progress.update(task, description=f"{card.name} {card.input_size[0]}x{card.input_size[1]} {s}")
                results.append(bench_card(card, dev, s, batch, warmup, iters, peak))
                progress.advance(task)

    _print_table(console, results, dev, peak)
    if json_path:
        atomic_write_json(json_path, [r.to_dict() for r in results], indent=2)
        console.print(f"wrote {json_path}")


def _ref(measured, paper, fmt):
    return fmt.format(measured) + (f" ({fmt.format(paper)})" if paper is not None else "")


def _print_table(console, results, dev, peak) -> None:
    import torch
    from rich.table import Table

    from ..bench import latency_ratios

    table = Table(title=f"frpose bench — {dev}, {torch.get_num_threads()} threads; (paper Table 2) in brackets",
                  caption="GMACs = multiply-accumulates: what the paper's Table 2 calls GFLOPs. "
                          "Paper latencies are GPU figures: compare ratios, not ms.")
    for col in ("model", "input", "heatmap", "set-up", "params M", "GMACs", "latency ms med/p90",
                "img/s @B", "× eager b1/bB", "GFLOP/s", "% matmul peak", "peak mem MB"):
        table.add_column(col, justify="left" if col in ("model", "set-up") else "right")
    eager = {(r.model, tuple(r.input_size)): r for r in results if r.setup == "eager"}
    for r in results:
        e = eager.get((r.model, tuple(r.input_size)))
        speedup = (f"{e.latency_ms / r.latency_ms:.2f}/{r.throughput_ips / e.throughput_ips:.2f}"
                   if e is not None else "-")
        table.add_row(
            r.model, "x".join(map(str, r.input_size)), "x".join(map(str, r.heatmap_size)), r.setup,
            _ref(r.params_m, r.paper.get("params_m"), "{:.1f}"), _ref(r.gmacs, r.paper.get("gmacs"), "{:.1f}"),
            f"{r.latency_ms:.1f}/{r.latency_p90_ms:.1f}" + (f" ({r.paper['latency_ms']})" if "latency_ms" in r.paper else ""),
            f"{r.throughput_ips:.1f} @{r.batch}", speedup, f"{r.achieved_gflops:.0f}", f"{100 * r.peak_share:.0f}%",
            "-" if r.peak_memory_mb is None else f"{r.peak_memory_mb:.0f}")
    console.print(table)
    console.print(f"float32 matmul peak: {peak:.0f} GFLOP/s (2048³ GEMM, same device and threads)")
    for q in latency_ratios(results):
        paper = f" (paper {q['paper_ratio']:.2f})" if q["paper_ratio"] else ""
        console.print(f"frpose-r34 ÷ sbn-r152 latency at {q['input_size'][0]}x{q['input_size'][1]} "
                      f"({q['setup']}): {q['ratio']:.2f}{paper}", markup=False)
