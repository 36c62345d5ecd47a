"""`frpose merge`: finish a sharded run from its parts (thin: the work is in run_merge / eval_report).

Shards merge by themselves (rank 0 under torchrun, the last ``--shard`` job to finish); this verb
is for when that did not happen — a job was lost, or the shards wrote into several folders — and
for merging what a stopped predict run has so far.
"""
from __future__ import annotations

from pathlib import Path

import typer


def merge(
    run_dirs: list[Path] = typer.Argument(..., help="A predict run folder (its parts/ logs), several folders of one "
                                          "run, or an eval run's OUT-parts folder (or the folder holding it)",
                                          show_default=False),
    out: Path = typer.Option(None, "--out", "-o", help="predict: the folder for predictions.json and images.json "
                             "(default: the one RUN_DIR; needed for several)"),
    partial: bool = typer.Option(False, "--partial", help="predict: merge what there is when shards have not "
                                 "finished (a stopped run); eval parts are only merged whole"),
) -> None:
    """Merge the parts of a sharded `predict` or `eval` run into its results (exit 1 when shards are
    missing or inputs were skipped, 2 on errors)."""
    from frpose_cli.errors import FrposeError
    from frpose_cli.inference.run_log import list_logs

    for d in run_dirs:
        if not d.is_dir():
            raise FrposeError(f"{d}: no such folder")
    if all(list_logs(d) for d in run_dirs):
        raise typer.Exit(_merge_predict(run_dirs, out, partial))
    parts = [_eval_parts(d) for d in run_dirs]
    if len(parts) != 1 or parts[0] is None:
        raise FrposeError("give one predict run folder (with parts/), several folders of one predict run, or "
                          "one eval parts folder (OUT-parts/ with shard-I-of-N.npz)")
    if partial:
        raise FrposeError("--partial is for predict runs: AP over part of the images would be wrong")
    from frpose_cli.evaluation.eval_report import merge_eval_parts
    raise typer.Exit(merge_eval_parts(parts[0]))


def _eval_parts(folder: Path) -> Path | None:
    if any(folder.glob("shard-*-of-*.npz")):
        return folder
    inside = [p for p in folder.glob("*-parts") if any(p.glob("shard-*-of-*.npz"))]
    return inside[0] if len(inside) == 1 else None


def _merge_predict(run_dirs, out, partial: bool) -> int:
    from frpose_cli.outputs import check_writable_dir
    from frpose_cli.inference.run_merge import merge_run
    target = out if out is not None else (run_dirs[0] if len(run_dirs) == 1 else None)
    if target is not None:
        check_writable_dir(target, "--out")
    m = merge_run(run_dirs, out, partial)
    lines = [f"merge: {m.images} images, {m.persons} persons, {len(m.skipped)} skipped, {len(m.warnings)} with "
             f"warnings, {len(m.ignored)} ignored, from {sum(len(s.sessions) for s in m.shards)} logs"]
    for s in m.shards:
        lines.append(f"shard {s.shard}: {s.images} images, {s.persons} persons in {s.seconds:.1f} s "
                     f"({s.rate:.2f} images/s)" + ("" if s.finished else ", not finished"))
    if m.missing:
        lines.append(f"incomplete: shard(s) {', '.join(m.missing)} have not finished (resume them with "
                     "--resume, then merge again); merged what is there")
    for kind, entries in (("skipped", m.skipped), ("warning", m.warnings)):
        for s in entries[:20]:
            lines.append(f"{kind} {s.file_name}: {s.reason}")
    lines.append(f"results: {m.out_dir / 'predictions.json'}")
    print("\n".join(lines))
    return 1 if m.missing or m.skipped or m.warnings else 0
