"""`frpose export` as one function: :class:`ExportOptions` → :func:`run_export`: the weights
resolved, the output named (a new ``runs/export/CARD-HxW[-PRECISION][-N].onnx`` / ``.pt`` / ``.xml`` from
:mod:`frpose_cli.run_folders` unless ``out`` is given), the file written, then checked (parity
with torch for float32, the accuracy gate for reduced precision)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from frpose_cli import run_folders
from frpose_cli.errors import FrposeError, note


@dataclass
class ExportOptions:
    """The options of one `frpose export` run (the CLI's, by the same names)."""
    model: str | None = None
    weights: str | None = None
    fmt: str = "onnx"
    out: Path | None = None
    input_size: tuple[int, int] | None = None
    dynamic_batch: bool = True
    batch: int = 1
    opset: int = 17
    precision: str = "fp32"
    calib_data: Path | None = None
    check: bool = True
    random_weights: bool = False


def _network(o: ExportOptions, log):
    """(network, card, codec name, what it is, source) of the weights to export."""
    from frpose_cli.cards import load_card
    from frpose_cli.weights.loader import default_weights_for, load_network, resolve_weights
    if o.weights is None and o.random_weights:
        if not o.model:
            raise FrposeError("--random-weights needs a MODEL card name")
        card = load_card(o.model, input_size=o.input_size)
        log("warning: exporting an untrained model (--random-weights)")
        return card.build_model().eval(), card, card.codec, "random weights", "random weights"
    if o.weights is None and not o.model:
        raise FrposeError("give --weights CKPT, or a MODEL with zoo weights (or MODEL --random-weights "
                          "to export an untrained model)")
    resolved = resolve_weights(o.weights or default_weights_for(o.model, o.input_size))
    if resolved.kind != "torch":
        raise FrposeError(f"{resolved.path} is already an exported {resolved.kind} file")
    loaded = load_network(resolved, o.model, o.input_size)
    return loaded.net, loaded.card, loaded.codec_name, loaded.what, str(resolved)


def run_export(o: ExportOptions, log=note, say=print) -> Path:
    """Export and check; ``say`` gets the report lines as they are ready (the export, then the
    check). Returns the file; a failed check raises, keeping the file for inspection."""
    from frpose_cli.deploy.export import FORMATS, SUFFIXES, export_model, parity_check
    from frpose_cli.deploy.export_precision import export_reduced, gate_exported, resolve_export_precision
    from frpose_cli.outputs import check_output_file
    from frpose_cli.load import load_pose_model

    if o.fmt not in FORMATS:
        raise FrposeError(f"unknown --format {o.fmt!r}; choose from {', '.join(FORMATS)}")
    if o.fmt == "openvino":   # before any work, as every missing piece is
        from frpose_cli.runtime import ovrt
        if not ovrt.available():
            raise FrposeError(ovrt.missing_message("--format openvino"))
    net, card, codec_name, what, source = _network(o, log)
    precision = resolve_export_precision(o.precision, net, card, codec_name, o.calib_data, log=log)
    out, claimed = o.out, o.out is None
    if claimed:   # a new file under runs/export, never beside (inside) the input weights
        tag = "" if precision == "fp32" else f"-{precision}"
        out = run_folders.new_run_path("export", f"{card.name}-{card.input_size[0]}x{card.input_size[1]}{tag}",
                                       suffix=SUFFIXES[o.fmt])
    try:
        # the claimed file is empty until written; an explicit --out that exists is refused
        check_output_file(out, "--out", need_bytes=4 * sum(p.numel() for p in net.parameters()), overwrite=claimed)
        if o.fmt == "openvino" and not claimed and Path(out).with_suffix(".bin").exists():   # never over a file
            raise FrposeError(f"--out {out}: {Path(out).with_suffix('.bin')} exists; an IR's weights go there")
        log(f"exporting {card.name} {card.input_size[0]}x{card.input_size[1]} to {o.fmt} ({precision})")
        if precision == "fp32":
            path = export_model(net, card, o.fmt, out, codec_name, o.dynamic_batch, o.opset, o.batch, source=source)
        else:
            path = export_reduced(net, card, o.fmt, out, precision, codec_name, o.dynamic_batch, o.opset, o.batch,
                                  source, o.calib_data)
    finally:
        run_folders.release(out)   # removed only when nothing was written
    files = [path, path.with_suffix(".bin")] if o.fmt == "openvino" else [path]   # an IR counts its .bin
    size = sum(f.stat().st_size for f in files)
    say(f"export: {card.name} {card.input_size[0]}x{card.input_size[1]} ({what}) → {path} ({o.fmt}, {precision}, "
        f"{'dynamic' if o.dynamic_batch else f'static batch {o.batch}'}, {size / 2 ** 20:.1f} MB)")
    if not o.check:
        return path
    log(f"checking {path.name} against the network it came from")
    exported = load_pose_model(path)
    if precision != "fp32":
        report = gate_exported(net, exported, card, codec_name, o.calib_data)
        say(report.line())
        if not report.passed:
            raise FrposeError(f"accuracy gate failed: {path} moves keypoints too far from float32 "
                              f"({report.reason}); the file is kept for inspection")
        return path
    report = parity_check(net, exported, card, codec_name, batch=2 if o.dynamic_batch else o.batch)
    say(report.line())
    if not report.passed:
        raise FrposeError(f"parity check failed: {path} differs from torch by {report.heatmap_max_abs:.2e} "
                          f"on the heatmaps (limit {report.tolerance:g})")
    return path
