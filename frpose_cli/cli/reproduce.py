"""`frpose reproduce`: parse options, hand them to :mod:`frpose_cli.training.reproduce`, print its table."""
from __future__ import annotations

import sys
from pathlib import Path

import typer

from frpose_cli.option_ranges import limits
from frpose_cli.cli.options import apply_download_options, offline_option


def reproduce(
    table: str = typer.Argument(..., help="table1 (ablation, ResNet-34), table2 (val2017 vs SBN, two input sizes) "
                                "or table3 (test-dev2017, ResNet-34 to 152)", show_default=False),
    data: Path = typer.Option(None, "--data", help="COCO root: annotations/, train2017/, val2017/ (and for Table 3 "
                              "test2017/ with annotations/image_info_test-dev2017.json)"),
    out: Path = typer.Option(None, "--out", help="The table's folder: one sub-folder per row; the same --out resumes "
                             "(default: a new runs/reproduce/TABLE[-N])"),
    gpus: int = typer.Option(None, "--gpus", **limits("--gpus"),
        help="0: train on the CPU; 1: one process on the default device "
                             "(the default); N > 1: torchrun with N processes per row"),
    plan: bool = typer.Option(False, "--plan", help="Print one command per row (for array jobs) and exit"),
    dry_run: bool = typer.Option(False, "--dry-run", help="The whole pipeline on the CPU in minutes: 1 epoch on 4 "
                                 "training images scored on 2, 1/4 input height, random init; figures are not comparable"),
    boxes: Path = typer.Option(None, "--boxes", help="Person detections for val2017 (default: the val2017 file in "
                               "DATA/person_detection_results, else ground-truth boxes)"),
    only: str = typer.Option(None, "--only", help="Run one row, e.g. frpose-r34-384x288"),
    restart: str = typer.Option(None, "--restart", help="Start one row over: remove DIR/ROW/ (its training and "
                                "scores) and run that row alone from its first epoch; the other rows are kept"),
    epochs: int = typer.Option(None, "--epochs", **limits("--epochs"),
        help="Epochs per row (default: the card's recipe, 140; dry run 1)"),
    limit: int = typer.Option(None, "--limit", **limits("--limit"),
        help="Use the first N images of each split (default: all; dry "
                          "run: 4 training, 2 scored)"),
    pretrained: str = typer.Option(None, "--pretrained", help="Encoder init as in `frpose train` (default: auto; "
                                   "dry run: none)"),
    batch_size: int = typer.Option(None, "--batch-size", **limits("--batch-size"),
        help="Batch per process (default: the card's, 32; dry run 16)"),
    workers: int = typer.Option(None, "--workers", **limits("--workers"),
        help="Data-loading workers (default 2; dry run 0)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars"),
    offline: bool = offline_option(),
) -> None:
    """Train and evaluate every row of one of the paper's tables; print ours beside the paper's figures."""
    from frpose_cli.training.reproduce import ReproduceOptions, reproduce as run

    apply_download_options(offline)
    report = run(ReproduceOptions(table=table, data=data, out=out, gpus=gpus, plan=plan, dry_run=dry_run, boxes=boxes,
                                  only=only, restart=restart, epochs=epochs, limit=limit, pretrained=pretrained,
                                  batch_size=batch_size, workers=workers, progress=progress))
    if plan:
        print("\n".join(report["plan"]))
        print(f"# one command per row above (e.g. `sed -n \"${{SLURM_ARRAY_TASK_ID}}p\" plan.txt | bash`); once every "
              f"row is done, this renders the table: {report['render']}", file=sys.stderr)
        return
    print(report["markdown"], end="")
    if "files" in report:
        print("table: " + ", ".join(map(str, report["files"])))
    else:
        print(f"row done; once every row is, this renders the table: {report['render']}")
