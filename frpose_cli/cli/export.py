"""`frpose export`: a checkpoint → ONNX, TorchScript or OpenVINO IR file with metadata, then a parity check
(the work: :func:`frpose_cli.deploy.run_export.run_export`)."""
from __future__ import annotations

from pathlib import Path

import typer

from frpose_cli.option_ranges import limits
from frpose_cli.cli.options import CALIB_DATA_HELP, apply_download_options, offline_option, strict_hash_option


def export(
    model: str = typer.Argument(None, help="Model card name, e.g. frpose-r34 (optional when --weights "
                                "records it; picks the card for published Simple Baselines files)"),
    weights: str = typer.Option(None, "--weights", "-w", help="frpose checkpoint, a published Simple "
                                "Baselines / mmpose SimpleBaseline file, a zoo name or an http(s) URL"),
    fmt: str = typer.Option("onnx", "--format", "-f", help="onnx | torchscript | openvino (IR: .xml + .bin beside "
                            "it; needs the openvino package)"),
    out: Path = typer.Option(None, "--out", "-o", help="Output file, never overwritten (default: "
                             "a new runs/export/MODEL-HxW.onnx / .pt / .xml, MODEL-HxW-2... when taken)"),
    input_size: str = typer.Option(None, "--input-size", help="HxW; must agree with an frpose checkpoint, "
                                   "chooses the size for published files (default: the card's)"),
    dynamic_batch: bool = typer.Option(True, "--dynamic-batch/--static-batch", help="Any batch size at run "
                                       "time, or the fixed --batch"),
    batch: int = typer.Option(1, "--batch", **limits("--batch"),
        help="Batch size traced (the fixed one with --static-batch)"),
    opset: int = typer.Option(17, "--opset", **limits("--opset"), help="ONNX opset version"),
    precision: str = typer.Option("fp32", "--precision", help="fp32 | int8 (ONNX, static QDQ calibrated on real "
                                  "crops) | bf16 (TorchScript, needs native bf16 here) | auto (what --precision auto "
                                  "picks for these weights on this machine)"),
    calib_data: Path = typer.Option(None, "--calib-data", help=CALIB_DATA_HELP),
    check: bool = typer.Option(True, "--check/--no-check", help="Parity check against torch after exporting "
                               "(reduced precision: the accuracy gate on real crops)"),
    random_weights: bool = typer.Option(False, "--random-weights", help="Export an untrained model (no "
                                        "--weights): for testing a deployment pipeline only"),
    offline: bool = offline_option(),
    strict_hash: bool = strict_hash_option(),
) -> None:
    """Export a pose model to ONNX, TorchScript or OpenVINO IR; the file carries the card, input size, stride,
    σ, keypoints, flip pairs and normalisation, so `predict`/`eval` --weights FILE need nothing else.

    After writing, the exported file is loaded back and run against torch on the same inputs; the
    largest heatmap and decoded-keypoint differences are printed, and more than 1e-3 on the
    heatmaps fails (exit 2, the file is kept for inspection).
    """
    from frpose_cli.cards import parse_input_size
    from frpose_cli.deploy.run_export import ExportOptions, run_export

    apply_download_options(offline, strict_hash)
    run_export(ExportOptions(model=model, weights=weights, fmt=fmt, out=out,
                             input_size=parse_input_size(input_size) if input_size else None,
                             dynamic_batch=dynamic_batch, batch=batch, opset=opset, precision=precision,
                             calib_data=calib_data, check=check, random_weights=random_weights))
