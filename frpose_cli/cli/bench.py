"""`frpose bench`: params, MACs, latency, throughput, memory, share of the measured ceiling and the
accuracy gate of model cards and inference set-ups, side by side."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from frpose_cli.cli.options import CALIB_DATA_HELP, apply_download_options, offline_option, strict_hash_option


def bench(
    models: Optional[list[str]] = typer.Argument(
        None, help="Model cards to compare. None: the paper's Table 2 set (sbn-r50, sbn-r101, sbn-r152, "
                   "frpose-r34) at 256x192 and 384x288."),
    input_size: Optional[list[str]] = typer.Option(
        None, "--input-size", help="HxW; repeat for several sizes. Default: each card's own size."),
    setup: Optional[list[str]] = typer.Option(
        None, "--setup", help="Inference set-up: eager (plain eval), channels_last, folded (BN folded into "
                              "convs), fused (both), compile (fused + torch.compile), onnxruntime (ONNX Runtime "
                              "CPU), bf16 / fp16 (fused + autocast), int8 (ONNX Runtime static int8), or all "
                              "(every one this machine runs natively). Repeatable. Default: fused."),
    precision: Optional[str] = typer.Option(
        None, "--precision", help="Also run the set-up of this precision: fp32 | bf16 | fp16 | int8 | auto "
                                  "(auto: the one `--precision auto` picks for each card, gated and cached)."),
    weights: Optional[str] = typer.Option(
        None, "--weights", "-w", help="Time these weights (file, zoo name or URL; the card and input size come "
                                      "from them) instead of random ones; the accuracy gate uses them too"),
    gate_weights: Optional[Path] = typer.Option(
        None, "--gate-weights", help="Trained checkpoint the accuracy gate compares reduced precisions on "
                                     "(default: the cached gate weights of each card, see docs/deployment.md)."),
    calib_data: Optional[Path] = typer.Option(None, "--calib-data", help=CALIB_DATA_HELP),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:N (default: CUDA if present)."),
    threads: Optional[int] = typer.Option(None, help="CPU threads (default: torch's choice)."),
    batch: int = typer.Option(8, min=1, help="Batch size for the throughput figure."),
    warmup: int = typer.Option(3, min=0, help="Untimed warm-up iterations."),
    iters: int = typer.Option(20, min=1, help="Timed iterations at batch 1."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write one object per model, size and set-up."),
    offline: bool = offline_option(),
    strict_hash: bool = strict_hash_option(),
) -> None:
    """Measure params, MACs, latency (median/p90), throughput, peak memory, % of the measured ceiling
    and, for reduced precision, the accuracy gate's keypoint drift and AP change."""
    import torch
    from rich.progress import Progress

    from frpose_cli.deploy.bench import TABLE2_SET, TABLE2_SIZES, bench_setups, run_bench
    from frpose_cli.cards import load_card, parse_input_size
    from frpose_cli.console import make_console
    from frpose_cli.device import pick_device
    from frpose_cli.errors import FrposeError
    from frpose_cli.fileio import atomic_write_json
    from frpose_cli.outputs import check_output_file
    from frpose_cli.weights.loader import load_network, resolve_weights
    from frpose_cli.runtime.hardware import detect

    apply_download_options(offline, strict_hash)
    console = make_console()
    if json_path:   # fail before measuring, not after
        check_output_file(json_path, "--json")
    net = None
    if weights:   # one model: the card and input size the weights record (or MODEL / --input-size for published files)
        if models and len(models) > 1 or input_size and len(input_size) > 1:
            raise FrposeError("--weights times one model at one input size")
        loaded = load_network(resolve_weights(weights), models[0] if models else None,
                              parse_input_size(input_size[0]) if input_size else None)
        net, cards = loaded.net, [loaded.card]
        gate_weights = gate_weights or loaded.weights.path
    else:
        names = list(models) if models else list(TABLE2_SET)
        sizes = [parse_input_size(s) for s in input_size] if input_size else (
            list(TABLE2_SIZES) if not models else [None])
        cards = [load_card(n, sz) for sz in sizes for n in names]  # fail fast on unknown names
    dev = pick_device(device)
    if threads:
        torch.set_num_threads(threads)
    hw = detect(dev)
    log = lambda msg: console.print(msg, markup=False, highlight=False)  # noqa: E731
    setups = bench_setups(setup or ([] if precision else ["fused"]), dev, hw, log)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("benchmarking", total=None)
        results, ceilings, notes = run_bench(
            cards, setups, dev, batch, warmup, iters, precision, gate_weights, calib_data, log=log,
            progress=lambda what: progress.update(task, description=what), net=net)
    _print_table(console, results, dev, hw, ceilings, notes)
    if json_path:
        atomic_write_json(json_path, [r.to_dict() for r in results], indent=2)
        console.print(f"wrote {json_path}")


def _ref(measured, paper, fmt):
    return fmt.format(measured) + (f" ({fmt.format(paper)})" if paper is not None else "")


def _gate(r) -> str:
    if r.precision == "fp32":
        return "ref"
    if r.gate_median_px is None:
        return "-"
    ap = "" if r.gate_ap_delta is None else f" {r.gate_ap_delta:+.1f}"
    return f"{r.gate_median_px:.2f}/{r.gate_p95_px:.2f}{ap} {'✓' if r.gate_passed else '✗'}"


def _print_table(console, results, dev, hw, ceilings, notes) -> None:
    import torch
    from rich.table import Table

    from frpose_cli.deploy.bench import latency_ratios
    from frpose_cli.runtime.gate import THRESHOLDS

    table = Table(title=f"frpose bench — {dev}, {torch.get_num_threads()} threads; (paper Table 2) in brackets",
                  caption="GMACs = multiply-accumulates: what the paper's Table 2 calls GFLOPs. "
                          "Paper latencies are GPU figures: compare ratios, not ms.")
    for col in ("model", "input", "heatmap", "set-up", "prec.", "params M", "GMACs", "latency ms med/p90",
                "img/s @B", "× eager b1/bB", "GFLOP/s", "% ceiling", "gate px med/p95 ΔAP", "peak mem MB"):
        table.add_column(col, justify="left" if col in ("model", "set-up", "prec.") else "right")
    eager = {(r.model, tuple(r.input_size)): r for r in results if r.setup == "eager"}
    for r in results:
        e = eager.get((r.model, tuple(r.input_size)))
        speedup = (f"{e.latency_ms / r.latency_ms:.2f}/{r.throughput_ips / e.throughput_ips:.2f}"
                   if e is not None else "-")
        table.add_row(
            r.model, "x".join(map(str, r.input_size)), "x".join(map(str, r.heatmap_size)), r.setup, r.precision,
            _ref(r.params_m, r.paper.get("params_m"), "{:.1f}"), _ref(r.gmacs, r.paper.get("gmacs"), "{:.1f}"),
            f"{r.latency_ms:.1f}/{r.latency_p90_ms:.1f}" + (f" ({r.paper['latency_ms']})" if "latency_ms" in r.paper else ""),
            f"{r.throughput_ips:.1f} @{r.batch}", speedup, f"{r.gflops_per_s:.0f}",
            "-" if r.pct_ceiling is None else f"{r.pct_ceiling:.0f}%", _gate(r),
            "-" if r.peak_memory_mb is None else f"{r.peak_memory_mb:.0f}")
    console.print(table)
    say = lambda msg: console.print(msg, markup=False, highlight=False)  # noqa: E731
    say(f"machine: {hw.describe(dev)}")
    for c in ceilings.values():
        say(c.method())
    if any(r.precision != "fp32" for r in results):
        say(f"gate: keypoint drift vs fp32 in input pixels (median/p95) and OKS-AP change on real crops, trained "
            f"weights; rejects median > {THRESHOLDS['median_px']} px, p95 > {THRESHOLDS['p95_px']} px or an AP drop "
            f"> {THRESHOLDS['ap_drop']}")
        for r in results:
            if r.gate_note:
                say(f"  {r.model} {r.input_size[0]}x{r.input_size[1]} {r.setup}: {r.gate_note}")
    for note in notes:
        say(note)
    for q in latency_ratios(results):
        paper = f" (paper {q['paper_ratio']:.2f})" if q["paper_ratio"] else ""
        say(f"frpose-r34 ÷ sbn-r152 latency at {q['input_size'][0]}x{q['input_size'][1]} ({q['setup']}, "
            f"{q['precision']}): {q['ratio']:.2f} at batch 1, {q['batch_ratio']:.2f} at batch {q['batch']}{paper}")
