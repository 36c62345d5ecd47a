"""An evaluation's report written and printed: one :func:`finish` for `frpose eval` and for
`frpose merge` of an eval run's parts (:func:`merge_eval_parts`), so both print the same lines.

The report is printed here, not by the CLI, because ``--analyze`` prints its tables between the
metric table and the files it writes.
"""
from __future__ import annotations

import time
from pathlib import Path

from frpose_cli.errors import FrposeError, note

COVERAGE = ("images_with_persons", "images_without_boxes", "persons_without_boxes")   # evaluate.box_coverage


def finish(report, gt, title, out, json_out, pck_alpha, pck_ref, seconds, analyze=False, analysis_name="",
           ann_file=None, compare=None, analysis_dir=None, log=note) -> None:
    """Write, print and analyse a report (also what `frpose merge` does with an eval run's parts)."""
    from frpose_cli.console import make_console
    from frpose_cli.data.oks_sigmas import describe as describe_sigmas
    from frpose_cli.fileio import create_json
    from frpose_cli.metrics.cocoeval import METRIC_NAMES, metrics_table
    from frpose_cli.metrics.pck import pck
    if out is not None:   # checked free at the start; another run may have written it since: not overwritten
        written = create_json(out, report["results"])
        log(f"results: {written}" + (f" ({out} was written by another run meanwhile)" if written != Path(out) else ""))
    if report.get("damaged_images"):
        log(f"warning: {report['damaged_images']} images have damaged JPEG data (decoded anyway, their poses scored)")
    if report["skipped"]:
        log("skipped: " + "; ".join(f"{n} {why}" for why, n in sorted(report["skipped"].items())))
    missing, with_persons = report.get("images_without_boxes", 0), report.get("images_with_persons", 0)
    if missing:   # COCOeval scores every image: the persons of these can only be missed
        log(f"warning: the person boxes cover {with_persons - missing} of the {with_persons} images with annotated "
            f"persons: the other {missing} ({report['persons_without_boxes']} persons) got no box (none in the file, "
            "or none over --det-thr) and are scored as missed, so AP and AR are capped; use a detection file for "
            "every image, or --gt-boxes")
    log(describe_sigmas(gt.keypoints))
    pck_result = pck(gt, report["results"], pck_alpha, pck_ref)
    console = make_console()
    console.print(metrics_table(report, title=title))
    print(pck_result.line())
    print(f"eval: {report['num_instances']} poses scored in {seconds:.1f} s"
          + (f"; {missing} of {with_persons} images with annotated persons had no boxes" if missing else ""))
    print_timings(report)
    figures = {**{name: report[name] for name in METRIC_NAMES}, **pck_result.to_dict(),
               **{k: report[k] for k in COVERAGE if k in report}}
    if analyze:
        from frpose_cli.evaluation.diagnosis_report import run_analysis
        figures["analysis"] = run_analysis(report["results"], ann_file, analysis_name, compare, analysis_dir, console)
        log(f"analysis: {analysis_dir}")
    if json_out is not None:
        written = create_json(json_out, figures, indent=2)
        log(f"metrics: {written}" + (f" ({json_out} was written by another run meanwhile)" if written != Path(json_out) else ""))


def print_timings(report) -> None:
    """Where the time went (network runs) and, for sharded runs, each shard's throughput."""
    t = report.get("timings")
    if t:
        print("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in t.items())
              + " (load: waiting for the DataLoader's workers to read and crop)")
    parts = report.get("shards") or []
    for p in parts if len(parts) > 1 else []:
        print(f"shard {p['shard']}: {p['crops']} crops in {p['seconds']:.1f} s "
              f"({p['crops'] / p['seconds'] if p['seconds'] else 0:.1f} crops/s)")


def print_shard_done(job, parts) -> None:
    from frpose_cli.evaluation.eval_shards import part_path
    missing = [f"{i}/{job.count}" for i in range(job.count) if not part_path(parts, i, job.count).exists()]
    print(f"eval shard {job.label}: part written to {part_path(parts, job.index, job.count)}"
          + (f"; waiting for shard(s) {', '.join(missing)}: the last to finish merges, or run "
             f"`frpose merge {parts}`" if missing and not job.torchrun else "; rank 0 merges"))


def merge_eval_parts(parts: Path, log=note) -> int:
    """Score (or, for a test split, write the submission of) a whole set of eval parts, with what
    the parts record; returns the exit code. Outputs that exist already are never overwritten."""
    from frpose_cli.data.keypoints import KeypointSpec
    from frpose_cli.evaluation.eval_shards import load_parts
    from frpose_cli.evaluation.evaluate import RESCORE_THRESHOLD, score_poses
    from frpose_cli.evaluation import testdev
    from frpose_cli.metrics.cocoeval import load_ground_truth
    from frpose_cli.outputs import check_output_file

    start = time.perf_counter()
    raw, info, missing = load_parts(parts)
    if missing:
        raise FrposeError(f"{parts}: shard(s) {', '.join(missing)} have no part yet; run them first "
                          "(AP over part of the images would be wrong)")
    out, json_out = Path(info["out"]), Path(info["json_out"]) if info.get("json_out") else None
    spec = KeypointSpec.from_dict(info["keypoints"])
    if info["score"]:
        check_output_file(out, "--out", overwrite=False)   # already merged: never overwritten
        if json_out is not None:
            check_output_file(json_out, "--json", overwrite=False)
        gt = load_ground_truth(info["ann_file"], info.get("sigmas"), recorded=spec, warn=log)
        report = score_poses(raw, gt, RESCORE_THRESHOLD, info["nms_thr"], info["cocoeval"])
        finish(report, gt, info["title"], out, json_out, info["pck_alpha"], info["pck_ref"],
               time.perf_counter() - start, log=log)
        return 0
    zip_path = testdev.check_submission_paths(out)
    gt = testdev.load_image_info(info["ann_file"], spec)
    report = score_poses(raw, gt, RESCORE_THRESHOLD, info["nms_thr"], info["cocoeval"], score=False)
    testdev.write_submission(report["results"], out,
                             testdev.results_name(info["split"], info["alg"] or testdev.default_alg(info["card"])))
    print(testdev.summary(report["results"], gt, report["skipped"], out, zip_path, info["split"]))
    return 0
