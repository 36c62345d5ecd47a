"""`frpose export`: a checkpoint → ONNX or TorchScript file with metadata, then a parity check."""
from __future__ import annotations

import sys
from pathlib import Path

import typer

from frpose_cli.cli.options import CALIB_DATA_HELP, apply_download_options, offline_option, strict_hash_option


def export(
    model: str = typer.Argument(None, help="Model card name, e.g. frpose-r34 (optional when --weights "
                                "records it; picks the card for published Simple Baselines files)"),
    weights: str = typer.Option(None, "--weights", "-w", help="frpose checkpoint, a published Simple "
                                "Baselines / mmpose SimpleBaseline file, a zoo name or an http(s) URL"),
    fmt: str = typer.Option("onnx", "--format", "-f", help="onnx | torchscript"),
    out: Path = typer.Option(None, "--out", "-o", help="Output file, never overwritten (default: "
                             "runs/export/MODEL-HxW.onnx / .pt, numbered when taken)"),
    input_size: str = typer.Option(None, "--input-size", help="HxW; must agree with an frpose checkpoint, "
                                   "chooses the size for published files (default: the card's)"),
    dynamic_batch: bool = typer.Option(True, "--dynamic-batch/--static-batch", help="Any batch size at run "
                                       "time, or the fixed --batch"),
    batch: int = typer.Option(1, "--batch", help="Batch size traced (the fixed one with --static-batch)"),
    opset: int = typer.Option(17, "--opset", help="ONNX opset version"),
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
    """Export a pose model to ONNX or TorchScript; the file carries the card, input size, stride,
    σ, keypoints, flip pairs and normalisation, so `predict`/`eval` --weights FILE need nothing else.

    After writing, the exported file is loaded back and run against torch on the same inputs; the
    largest heatmap and decoded-keypoint differences are printed, and more than 1e-3 on the
    heatmaps fails (exit 2, the file is kept for inspection).
    """
    from frpose_cli.cards import load_card, parse_input_size
    from frpose_cli.errors import FrposeError
    from frpose_cli.deploy.export import FORMATS, SUFFIXES, export_model, parity_check
    from frpose_cli.outputs import check_output_file
    from frpose_cli.deploy.export_precision import export_reduced, gate_exported, resolve_export_precision
    from frpose_cli.runtime.load import load_pose_model
    from frpose_cli.weights.loader import default_weights_for, load_network, resolve_weights

    apply_download_options(offline, strict_hash)
    if fmt not in FORMATS:
        raise FrposeError(f"unknown --format {fmt!r}; choose from {', '.join(FORMATS)}")
    size = parse_input_size(input_size) if input_size else None
    if weights is None and random_weights:
        if not model:
            raise FrposeError("--random-weights needs a MODEL card name")
        card = load_card(model, input_size=size)
        net, codec_name, what, source = card.build_model().eval(), card.codec, "random weights", "random weights"
        print("frpose: warning: exporting an untrained model (--random-weights)", file=sys.stderr)
    else:
        if weights is None and not model:
            raise FrposeError("give --weights CKPT, or a MODEL with zoo weights (or MODEL --random-weights "
                              "to export an untrained model)")
        resolved = resolve_weights(weights or default_weights_for(model, size))
        if resolved.kind != "torch":
            raise FrposeError(f"{resolved.path} is already an exported {resolved.kind} file")
        loaded = load_network(resolved, model, size)
        net, card, codec_name, what, source = loaded.net, loaded.card, loaded.codec_name, loaded.what, str(resolved)
    precision = resolve_export_precision(precision, net, card, codec_name, calib_data,
                                         log=lambda msg: print(f"frpose: {msg}", file=sys.stderr))
    if out is None:   # a new file under runs/export, never beside (inside) the input weights
        tag = "" if precision == "fp32" else f"-{precision}"
        stem = f"{card.name}-{card.input_size[0]}x{card.input_size[1]}{tag}"
        out, n = Path("runs") / "export" / f"{stem}{SUFFIXES[fmt]}", 1
        while out.exists():
            n += 1
            out = out.with_name(f"{stem}-{n}{SUFFIXES[fmt]}")
    params = sum(p.numel() for p in net.parameters())
    check_output_file(out, "--out", need_bytes=4 * params, overwrite=False)
    if precision == "fp32":
        path = export_model(net, card, fmt, out, codec_name, dynamic_batch, opset, batch, source=source)
    else:
        path = export_reduced(net, card, fmt, out, precision, codec_name, dynamic_batch, opset, batch, source,
                              calib_data)
    print(f"export: {card.name} {card.input_size[0]}x{card.input_size[1]} ({what}) → {path} ({fmt}, {precision}, "
          f"{'dynamic' if dynamic_batch else f'static batch {batch}'}, "
          f"{path.stat().st_size / 2 ** 20:.1f} MB)")
    if not check:
        return
    exported = load_pose_model(path)
    if precision != "fp32":
        report = gate_exported(net, exported, card, codec_name, calib_data)
        print(report.line())
        if not report.passed:
            raise FrposeError(f"accuracy gate failed: {path} moves keypoints too far from float32 "
                              f"({report.reason}); the file is kept for inspection")
        return
    report = parity_check(net, exported, card, codec_name, batch=2 if dynamic_batch else batch)
    print(report.line())
    if not report.passed:
        raise FrposeError(f"parity check failed: {path} differs from torch by {report.heatmap_max_abs:.2e} "
                          f"on the heatmaps (limit {report.tolerance:g})")
