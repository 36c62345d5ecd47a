"""`frpose eval --analyze`: the error diagnosis (:mod:`frpose_cli.evaluation.diagnosis`) as terminal tables,
JSON figures and PNGs, for one run or two side by side (``--compare``).

:func:`table_figures` turns a diagnosis into the numbers the tables print, rounded as printed,
so the ``--json`` file holds exactly the figures of the terminal tables.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from frpose_cli.data.annotations import read_json
from frpose_cli.evaluation.diagnosis import CLASSES, ERROR_TYPES, STEPS, diagnose
from frpose_cli.metrics.cocoeval import GroundTruth, validate_results
from frpose_cli.errors import FrposeError
from frpose_cli.outputs import check_writable_dir
from frpose_cli.evaluation.plots import grid_figure, hex_bgr, save_png, stacked_bars, stacked_pr_panel

STEP_LABELS = {"original": "original", "miss": "+ miss", "swap": "+ swap", "inversion": "+ inversion",
               "jitter": "+ jitter", "score": "+ optimal score", "background_fp": "+ background FP",
               "false_negatives": "+ false negatives"}
# coco-analyze's colours; the original detections' region light grey
STEP_COLOURS = {"original": "#D9D9D9", "miss": "#F2E394", "swap": "#F2AE72", "inversion": "#D96459",
                "jitter": "#8C4646", "score": "#4F82BD", "background_fp": "#8063A3", "false_negatives": "#2E8B57"}
CLASS_COLOURS = {"good": "#1ED88B", "jitter": "#8C4646", "inversion": "#D96459", "swap": "#F2AE72",
                 "miss": "#F2E394"}
PR_THRESHOLDS = (0.5, 0.75, 0.9, 0.95)
PNG_NAMES = ("pr_curves.png", "keypoint_errors.png")


def _pct(v: float) -> float:
    return round(100.0 * float(v), 1)


def table_figures(diag: dict) -> dict:
    """The printed figures, in percent with one decimal (as printed): AP table, keypoint
    classes, per-keypoint errors and background errors."""
    t = diag["oks_thresholds"]
    i50, i75 = t.index(0.5), t.index(0.75)

    def mean(v):
        v = [x for x in v if x >= 0]
        return float(np.mean(v)) if v else -1.0

    ap, prev = {}, None
    for step in STEPS:
        row = {"AP": _pct(mean(diag["ap"]["all"][step])), "AP50": _pct(diag["ap"]["all"][step][i50]),
               "AP75": _pct(diag["ap"]["all"][step][i75])}
        for label in ("medium", "large"):
            if label in diag["ap"]:
                row["AP" + label[0].upper()] = _pct(mean(diag["ap"][label][step]))
        row["dAP"] = 0.0 if prev is None else round(row["AP"] - prev, 1)
        if step in ERROR_TYPES:
            alone = _pct(mean(diag["ap_alone"]["all"][step]))
            row["dAP_alone"] = round(alone - ap["original"]["AP"], 1)
        ap[step], prev = row, row["AP"]
    counts = {c: int(sum(diag["keypoint_errors"][c])) for c in CLASSES}
    total = max(sum(counts.values()), 1)
    classes = {c: {"count": n, "percent": round(100.0 * n / total, 1)} for c, n in counts.items()}
    per_kp = {}
    for k, name in enumerate(diag["keypoint_names"]):
        n = max(sum(diag["keypoint_errors"][c][k] for c in CLASSES), 1)
        per_kp[name] = {c: round(100.0 * diag["keypoint_errors"][c][k] / n, 1) for c in CLASSES[1:]}
    return {"ap": ap, "matched_detections": diag["matched_detections"], "keypoint_classes": classes,
            "per_keypoint": per_kp, "background": diag["background"]}


def _background_rows(b: dict) -> list[tuple[str, int]]:
    rows = [("detections", b["detections"]), ("background false positives", b["false_positives"]),
            ("  among the top 20 % scores", b["false_positives_top20_score"])]
    rows += [(f"  {s} (keypoint box)", b["false_positives_by_size"].get(s, 0)) for s in ("small", "medium", "large")]
    rows += [("persons with keypoints", b["persons"]), ("false negatives", b["false_negatives"])]
    rows += [(f"  {s}", b["false_negatives_by_size"].get(s, 0)) for s in ("small", "medium", "large")]
    rows += [(f"  {k} labelled keypoints", b["false_negatives_by_keypoints"].get(k, 0))
             for k in ("1-5", "6-10", "11-15", "16+")]
    return rows


def analysis_tables(runs: list[tuple[str, dict]]) -> list:
    """Rich tables for one run or several side by side; ``runs`` = [(name, table_figures), ...].
    Side by side, columns are tagged A, B, … and each table's caption names the runs."""
    from rich import box
    from rich.table import Table

    one = len(runs) == 1
    tags = [""] if one else [f" {chr(65 + i)}" for i in range(len(runs))]
    who = "" if one else "; ".join(f"{t.strip()}: {n}" for t, (n, _) in zip(tags, runs))
    ap_cols = ("AP", "AP50", "AP75", "APM", "APL", "dAP", "dAP_alone") if one else ("AP", "dAP", "dAP_alone")
    heads = {"dAP": "ΔAP", "dAP_alone": "ΔAP alone"}
    t1 = Table("correcting, in turn", *[f"{heads.get(c, c)}{t}" for t in tags for c in ap_cols],
               title="AP after correcting each error type in turn (Ronchi & Perona 2017)",
               caption="ΔAP: the step's gain; ΔAP alone: that keypoint error corrected by itself"
                       + ("" if one else f"\n{who}"), box=box.SIMPLE_HEAVY)
    for step in STEPS:
        t1.add_row(STEP_LABELS[step], *[("" if c not in f["ap"][step] or (c == "dAP" and step == "original")
                                         else f"{f['ap'][step][c]:+.1f}" if c.startswith("dAP")
                                         else f"{f['ap'][step][c]:.1f}") for _, f in runs for c in ap_cols])
    t2 = Table("keypoints", *[f"{h}{t}" for t in tags for h in ("count", "%")],
               title="labelled keypoints of the detections matched at OKS ≥ 0.1",
               caption="matched detections: " + ", ".join(f"{f['matched_detections']}{t}" for t, (_, f)
                                                          in zip(tags, runs)), box=box.SIMPLE_HEAVY)
    for c in CLASSES:
        t2.add_row(c, *[v for _, f in runs for v in (str(f["keypoint_classes"][c]["count"]),
                                                       f"{f['keypoint_classes'][c]['percent']:.1f}")])
    t3 = Table("keypoint", *[f"% {c}{t}" for t in tags for c in CLASSES[1:]],
               title="errors per keypoint (% of its labelled instances in matched detections)",
               caption=who or None, box=box.SIMPLE_HEAVY)
    for name in runs[0][1]["per_keypoint"]:
        t3.add_row(name, *[f"{f['per_keypoint'][name][c]:.1f}" for _, f in runs for c in CLASSES[1:]])
    t4 = Table("background errors (unmatched at every OKS threshold)", *[t.strip() or "count" for t in tags],
               caption=who or None, box=box.SIMPLE_HEAVY)
    rows = [_background_rows(f["background"]) for _, f in runs]
    for i, (label, _) in enumerate(rows[0]):
        t4.add_row(label, *[str(r[i][1]) for r in rows])
    return [t1, t2, t3, t4]


def pr_figure(runs: list[tuple[str, dict]]) -> np.ndarray:
    """Stacked PR curves, one row per run, one column per OKS threshold (area all)."""
    recall = np.linspace(0, 1, 101)
    panels = [(name, diag, t) for name, diag in runs for t in PR_THRESHOLDS]

    def draw(img, rect, panel):
        name, diag, t = panel
        i = diag["oks_thresholds"].index(t)
        layers = [(STEP_LABELS[s].lstrip("+ "), diag["pr_curves_all"][s][i], diag["ap"]["all"][s][i],
                   hex_bgr(STEP_COLOURS[s])) for s in STEPS]
        stacked_pr_panel(img, rect, recall, layers, f"{name}: OKS {t:.2f}, all persons")

    return grid_figure(panels, cols=len(PR_THRESHOLDS), cell=(520, 360), draw=draw)


def keypoint_figure(runs: list[tuple[str, dict]]) -> np.ndarray:
    rows = []
    for k, kp in enumerate(runs[0][1]["keypoint_names"] + ["all keypoints"]):
        for name, diag in runs:
            e = diag["keypoint_errors"]
            n = [sum(e[c]) if kp == "all keypoints" else e[c][k] for c in CLASSES]
            total = max(sum(n), 1)
            rows.append((kp if len(runs) == 1 else f"{kp} [{name}]", [v / total for v in n]))
    return stacked_bars(rows, CLASSES, [hex_bgr(CLASS_COLOURS[c]) for c in CLASSES],
                        "keypoints of matched detections by error class", width=1000 if len(runs) > 1 else 900)


def write_pngs(runs: list[tuple[str, dict]], out_dir: Path) -> list[Path]:
    return [save_png(Path(out_dir) / PNG_NAMES[0], pr_figure(runs)),
            save_png(Path(out_dir) / PNG_NAMES[1], keypoint_figure(runs))]


def load_other(path, gt: GroundTruth) -> dict:
    """``--compare``: a COCO keypoint results file (diagnosed here) or the ``--json`` of an
    earlier ``--analyze`` run (its diagnosis is reused)."""
    path = Path(path)
    data = read_json(path, "--compare file")
    if isinstance(data, dict) and isinstance(data.get("analysis"), dict) and "diagnosis" in data["analysis"]:
        return data["analysis"]["diagnosis"]
    if isinstance(data, list):
        return diagnose(gt, validate_results(data, gt, source=f"--compare {path}").results)
    raise FrposeError(f"--compare {path}: neither a keypoint results file nor the --json of an --analyze run")


def check_analysis_dir(out_dir: Path) -> Path:
    """Refuse a folder that already holds an analysis (never overwrite another run's figures);
    check it is writable before any work."""
    out_dir = Path(out_dir)
    taken = [n for n in (*PNG_NAMES, "analysis.json") if (out_dir / n).exists()]
    if taken:
        raise FrposeError(f"{out_dir} already holds {', '.join(taken)}; choose another --analysis-dir")
    check_writable_dir(out_dir, "--analysis-dir")
    return out_dir


def run_analysis(results: list, ann_file, name: str, compare, out_dir: Path, console) -> dict:
    """Diagnose ``results`` (and ``compare``), print the tables, write the PNGs and
    ``analysis.json`` into ``out_dir``; returns what ``--json`` records under ``analysis``."""
    from frpose_cli.metrics.cocoeval import load_ground_truth
    from frpose_cli.fileio import atomic_write_json

    gt = load_ground_truth(ann_file)
    diag = diagnose(gt, validate_results(results, gt, source=name).results)
    runs = [(name, diag)]
    if compare is not None:
        other = load_other(compare, gt)
        other_name = Path(compare).stem if Path(compare).stem != name else f"{Path(compare).stem} (2)"
        runs.append((other_name, other))
    figures = [(n, table_figures(d)) for n, d in runs]
    for table in analysis_tables(figures):
        console.print(table)
    pngs = write_pngs(runs, out_dir)
    record = {"name": name, "table": figures[0][1], "diagnosis": diag,
              "pngs": [str(p) for p in pngs]}
    if compare is not None:
        record["compare"] = {"name": runs[1][0], "table": figures[1][1], "diagnosis": runs[1][1]}
    atomic_write_json(Path(out_dir) / "analysis.json", record)
    return record
