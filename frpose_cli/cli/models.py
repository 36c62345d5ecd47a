"""`frpose models`: the model cards, the zoo's weights and detectors, or one weights file described."""
from __future__ import annotations

import typer

from frpose_cli.cli.options import apply_download_options, offline_option, strict_hash_option


def models(inspect: str = typer.Option(None, "--inspect", metavar="FILE|URL|NAME",
                                       help="Describe one weights file instead: card it fits, input size, codec, "
                                            "keypoints, channel order, precision, source (checkpoints and exported "
                                            "files alike); layout, tensors used/ignored, Python globals it needs"),
           offline: bool = offline_option(), strict_hash: bool = strict_hash_option()) -> None:
    """List the model cards (models/*.yaml) and the zoo's published weights, with what is cached."""
    from rich.table import Table

    apply_download_options(offline, strict_hash)
    if inspect is not None:
        from frpose_cli.weights.inspection import inspect_weights
        print(inspect_weights(inspect).text())
        return

    from frpose_cli.weights import zoo
    from frpose_cli.cards import list_cards, load_card
    from frpose_cli.console import make_console
    from frpose_cli.weights.download import cache_dir

    console = make_console()
    table = Table("model", "encoder", "decoders", "GCB", "fusion", "input", "stride", "σ", "zoo weights",
                  "description", title="model cards")
    for name in list_cards():
        c = load_card(name)
        weights = ", ".join(e.name for e in zoo.pose_entries_for(name)) or "-"
        table.add_row(name, f"ResNet-{c.arch.depth}", str(len(c.arch.decoder_widths)),
                      "yes" if c.arch.gcb else "no", c.arch.fusion, f"{c.input_size[0]}x{c.input_size[1]}",
                      str(c.stride), f"{c.sigma:g}", weights, c.description)
    console.print(table)
    zoo_table = Table("weights", "kind", "card", "input", "COCO val AP", "cached", "source",
                      title=f"zoo (cache: {cache_dir()})")
    for e in zoo.ENTRIES.values():
        zoo_table.add_row(e.name, e.kind, e.card or "-",
                          f"{e.input_size[0]}x{e.input_size[1]}" if e.input_size else "-",
                          f"{e.ap:.1f}" if e.ap is not None else "-", "yes" if e.cached() else "no", e.source)
    console.print(zoo_table)
    from frpose_cli.inference.detector_choice import default_detector
    chosen = {kind: default_detector(kind)[0].name for kind in ("cpu", "cuda")}
    det_table = Table("detector", "input", "person AP", "box AP (80 classes)", "GFLOPs (as published)", "CPU ms (fp32)",
                      "auto picks it", "licence", title=f"detectors for `frpose predict --detector NAME` (CPU ms: "
                      f"one image on {zoo.DETECTOR_CPU_MACHINE}; `frpose bench --detector all` "
                      "measures this machine)")
    for e in zoo.DETECTORS:
        size = f"{e.input_size[0]}x{e.input_size[1]}" if e.input_size else "800 short side"
        where = " and ".join(k.upper() if k == "cpu" else "GPU" for k, n in chosen.items() if n == e.name) or "-"
        det_table.add_row(e.name, size, f"{e.person_ap:.1f}" if e.person_ap is not None else "not published",
                          f"{e.ap:.1f}" if e.ap is not None else "-", f"{e.gflops:g}" if e.gflops else "-",
                          f"{e.cpu_ms:.0f}" if e.cpu_ms else "-", where, e.licence)
    console.print(det_table)
    console.print(f"default pose weights of `frpose predict`: {zoo.DEFAULT_POSE} (Simple Baselines; the paper's "
                  "network has no published weights)", markup=False)
    console.print("Every card trains on any COCO-format keypoint set, the paper's network included: "
                  "`frpose train frpose-r34 --data ROOT` takes the keypoint names, flip pairs, skeleton and OKS σ "
                  "from the annotation file's category (README: Your own keypoints; docs/keypoints.md).",
                  highlight=False)
