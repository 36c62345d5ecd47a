"""`frpose bench` as one function: :class:`BenchOptions` → :func:`bench_job`: the cards (or the
one ``--weights`` model), the device and set-ups resolved, every pair measured
(:func:`frpose_cli.deploy.bench.run_bench`), the table printed and ``--json`` written.

bench makes no run folder: it prints, and writes only the ``--json`` file it is given.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from frpose_cli.errors import FrposeError


@dataclass
class BenchOptions:
    """The options of one `frpose bench` run (the CLI's, by the same names)."""
    models: list[str] | None = None
    input_sizes: list[tuple[int, int]] | None = None
    setups: list[str] | None = None
    precision: str | None = None
    weights: str | None = None
    gate_weights: Path | None = None
    calib_data: Path | None = None
    device: str | None = None
    threads: int | None = None
    batch: int = 8
    warmup: int = 3
    iters: int = 20
    json_path: Path | None = None
    detectors: list[str] | None = None     # zoo detectors to time instead of pose models (frpose_cli.deploy.bench_detectors)


def _cards(o: BenchOptions):
    """(cards, loaded network or None, gate weights, an OpenVINO IR's PoseModel or None): ``--weights``
    times one model at the card and input size they record (or MODEL / --input-size for published
    files); an IR is timed as predict runs it (bf16 with ``--precision bf16``)."""
    from frpose_cli.cards import load_card
    from frpose_cli.deploy.bench import TABLE2_SET, TABLE2_SIZES
    from frpose_cli.weights.loader import load_network, resolve_weights
    if o.weights:
        if o.models and len(o.models) > 1 or o.input_sizes and len(o.input_sizes) > 1:
            raise FrposeError("--weights times one model at one input size")
        resolved = resolve_weights(o.weights)
        model, size = o.models[0] if o.models else None, o.input_sizes[0] if o.input_sizes else None
        if resolved.kind == "openvino":
            from frpose_cli.load import load_pose_model
            if o.setups or o.precision not in (None, "fp32", "bf16"):
                raise FrposeError("an OpenVINO IR runs as it is: no --setup; --precision fp32 or bf16 (its hint)")
            ir = load_pose_model(resolved, model, size, "openvino", "cpu", precision=o.precision or "fp32")
            return [ir.card], None, o.gate_weights, ir
        loaded = load_network(resolved, model, size)
        return [loaded.card], loaded.net, o.gate_weights or loaded.weights.path, None
    names = list(o.models) if o.models else list(TABLE2_SET)
    sizes = list(o.input_sizes) if o.input_sizes else (list(TABLE2_SIZES) if not o.models else [None])
    return [load_card(n, sz) for sz in sizes for n in names], None, o.gate_weights, None  # unknown names fail now


def bench_job(o: BenchOptions, console) -> list:
    """Measure, print the table on ``console`` and write ``--json``; returns the results."""
    import torch
    from rich.progress import Progress

    from frpose_cli.deploy.bench import bench_setups, run_bench
    from frpose_cli.device import pick_device
    from frpose_cli.fileio import atomic_write_json
    from frpose_cli.outputs import check_output_file
    from frpose_cli import hardware

    if o.json_path:   # fail before measuring, not after
        check_output_file(o.json_path, "--json", overwrite=False)   # as every verb: never over an existing file
    if o.threads:   # before an IR is compiled for torch's thread count
        torch.set_num_threads(o.threads)
    if o.detectors:
        return _detector_job(o, console)
    cards, net, gate_weights, ir = _cards(o)
    dev = pick_device(o.device, cpu_only=ir is not None)
    hw = hardware.detect(dev)
    log = lambda msg: console.print(msg, markup=False, highlight=False)  # noqa: E731
    setups = [ir.setup] if ir else bench_setups(o.setups or ([] if o.precision else ["fused"]), dev, hw, log)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("benchmarking", total=None)
        results, ceilings, notes = run_bench(
            cards, setups, dev, o.batch, o.warmup, o.iters, None if ir else o.precision, gate_weights, o.calib_data,
            log=log, progress=lambda what: progress.update(task, description=what), net=net, loaded=ir,
            beat=None if console.is_terminal else log)   # a terminal has the live bar
    print_table(console, results, dev, hw, ceilings, notes)
    if o.json_path:
        atomic_write_json(o.json_path, [r.to_dict() for r in results], indent=2)
        console.print(f"wrote {o.json_path}")
    return results


def _detector_job(o: BenchOptions, console) -> list:
    """``--detector``: every named zoo detector in each set-up (:mod:`frpose_cli.deploy.bench_detectors`)."""
    from frpose_cli import hardware
    from frpose_cli.deploy.bench_detectors import SETUP_ORDER, bench_detectors, print_detector_table
    from frpose_cli.device import pick_device
    from frpose_cli.fileio import atomic_write_json
    from frpose_cli.jobs.progress import heartbeat
    from frpose_cli.weights import zoo
    mixed = [name for name, given in (("MODEL", o.models), ("--input-size", o.input_sizes), ("--weights", o.weights),
                                      ("--precision", o.precision), ("--gate-weights", o.gate_weights),
                                      ("--calib-data", o.calib_data)) if given]
    if mixed:
        raise FrposeError(f"--detector times the zoo's person detectors; {', '.join(mixed)} belong to pose models")
    names = [e.name for e in zoo.DETECTORS] if "all" in o.detectors else list(dict.fromkeys(o.detectors))
    for name in names:
        entry = zoo.find(name)
        if entry is None or entry.kind != "detector":
            raise FrposeError(f"unknown --detector {name!r}; choose from {', '.join(e.name for e in zoo.DETECTORS)} "
                              "or all")
    setups = None if not o.setups or "all" in o.setups else list(dict.fromkeys(o.setups))   # None: all that run here
    for s in setups or ():
        if s not in SETUP_ORDER:
            raise FrposeError(f"--setup {s}: not a detector set-up; choose from {', '.join(SETUP_ORDER)} or all")
    dev = pick_device(o.device)
    hw = hardware.detect(dev)
    log = lambda msg: console.print(msg, markup=False, highlight=False)  # noqa: E731
    with heartbeat(log, "detectors"):
        rows, ceilings = bench_detectors(names, setups, dev, rounds=o.iters, warmup=o.warmup, hw=hw, log=log)
    print_detector_table(console, rows, dev, hw, ceilings)
    if o.json_path:
        atomic_write_json(o.json_path, [r.to_dict() for r in rows], indent=2)
        console.print(f"wrote {o.json_path}")
    return rows


def _ref(measured, paper, fmt):
    return fmt.format(measured) + (f" ({fmt.format(paper)})" if paper is not None else "")


def _gate(r) -> str:
    if r.precision == "fp32":
        return "ref"
    if r.gate_median_px is None:
        return "-"
    ap = "" if r.gate_ap_delta is None else f" {r.gate_ap_delta:+.1f}"
    return f"{r.gate_median_px:.2f}/{r.gate_p95_px:.2f}{ap} {'✓' if r.gate_passed else '✗'}"


def print_table(console, results, dev, hw, ceilings, notes) -> None:
    """The side-by-side table, then the machine, the ceilings' method, the gate's rule and notes."""
    import torch
    from rich.table import Table

    from frpose_cli.deploy.bench import latency_ratios
    from frpose_cli.precision.gate import THRESHOLDS

    table = Table(title=f"frpose bench — {dev}, {torch.get_num_threads()} threads; (paper Table 2) in brackets",
                  caption="GMACs = multiply-accumulates: what the paper's Table 2 calls GFLOPs. "
                          "Paper latencies are GPU figures: compare ratios, not ms.")
    for col in ("model", "input", "heatmap", "set-up", "prec.", "params M", "GMACs", "latency ms med/p90",
                "img/s @B", "× eager b1/bB", "GFLOP/s", "% ceiling", "gate px med/p95 ΔAP", "peak mem MB"):
        table.add_column(col, justify="left" if col in ("model", "set-up", "prec.") else "right",
                         min_width=len("openvino_bf16") if col == "set-up" else None)   # set-up names whole
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
