"""`frpose bench`: params, MACs, latency, throughput, memory, share of the measured ceiling and the
accuracy gate of model cards and inference set-ups, side by side (the work:
:func:`frpose_cli.deploy.bench_job.bench_job`)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from frpose_cli.option_ranges import limits
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
                              "CPU), bf16 / fp16 (fused + autocast), int8 (ONNX Runtime static int8), openvino / "
                              "openvino_bf16 (OpenVINO CPU, f32 / bf16 hint; optional package), or all (every one "
                              "this machine runs natively). Repeatable. Default: fused."),
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
    threads: Optional[int] = typer.Option(None, "--threads", **limits("--threads"),
        help="CPU threads (default: torch's choice)."),
    batch: int = typer.Option(8, "--batch", **limits("--batch"), help="Batch size for the throughput figure."),
    warmup: int = typer.Option(3, "--warmup", **limits("--warmup"), help="Untimed warm-up iterations."),
    iters: int = typer.Option(20, "--iters", **limits("--iters"), help="Timed iterations at batch 1."),
    detector: Optional[list[str]] = typer.Option(
        None, "--detector", help="Time these zoo person detectors instead of pose models (repeatable; all: every "
                                 "one), in each set-up they run here (or the --setup ones), with random weights "
                                 "of the published shapes, against the ceilings; --iters passes over one image."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write one object per model, size and set-up."),
    offline: bool = offline_option(),
    strict_hash: bool = strict_hash_option(),
) -> None:
    """Measure params, MACs, latency (median/p90), throughput, peak memory, % of the measured ceiling
    and, for reduced precision, the accuracy gate's keypoint drift and AP change; with --detector, the
    person detectors' time per image and share of the ceilings instead."""
    from frpose_cli.cards import parse_input_size
    from frpose_cli.console import make_console
    from frpose_cli.deploy.bench_job import BenchOptions, bench_job

    apply_download_options(offline, strict_hash)
    bench_job(BenchOptions(models=models, input_sizes=[parse_input_size(s) for s in input_size] if input_size else None,
                           setups=setup, precision=precision, weights=weights, gate_weights=gate_weights,
                           calib_data=calib_data, device=device, threads=threads, batch=batch, warmup=warmup,
                           iters=iters, json_path=json_path, detectors=detector), make_console())
