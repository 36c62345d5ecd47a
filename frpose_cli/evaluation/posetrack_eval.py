"""PoseTrack evaluation equal to poseval's ``evaluate.py -e -t`` (PoseTrack's official tool,
github.com/leonid-pishchulin/poseval at 4258a15; docs/evaluation.md, "PoseTrack"): per-joint AP
(greedy PCKh@0.5 assignment, poseval's precision/recall curve and VOC AP) and MOTA, MOTP,
precision and recall, with the same MOT accounting through motmetrics (which poseval uses).

poseval's quirks are reproduced where they change figures, each marked "poseval:" below and in
posetrack_match.py. tests/test_posetrack_eval.py compares every figure with poseval's own output
on the fixture in tests/data/posetrack18/.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from frpose_cli.errors import FrposeError, note
from frpose_cli.evaluation.posetrack_match import JOINTS, match_frame, scored_frames
from frpose_cli.tracking.posetrack import POSEVAL_JOINTS, read_sequence

MOTMETRICS_MISSING = "PoseTrack evaluation needs motmetrics: pip install 'frpose[posetrack]'"
# poseval's summary columns (eval_helpers.getCum): joint ids averaged per group
GROUPS = {"Head": (14, 12, 13), "Shou": (8, 9), "Elb": (7, 10), "Wri": (6, 11), "Hip": (2, 3),
          "Knee": (1, 4), "Ankl": (0, 5)}
FIGURES = ("ap", "ap_precision", "ap_recall", "mota", "motp", "mot_precision", "mot_recall")
_COUNTS = ("num_misses", "num_switches", "num_false_positives", "num_objects", "num_detections")


def _with_total(values) -> np.ndarray:
    """15 per-joint figures and their mean over the joints that have one (poseval's Total)."""
    v = np.asarray(values, dtype=np.float64)
    ok = v[~np.isnan(v)]
    return np.append(v, ok.mean() if ok.size else np.nan)


def voc_ap(recall, precision) -> float:
    """poseval's VOCap: the area under the precision envelope at the recalls where it changes."""
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


def ap_figures(scores, labels, num_gt):
    """poseval's evaluateAP.computeMetrics: AP, precision and recall (%) per joint and Total.
    ``scores``/``labels``: per joint, every predicted joint's score and match; ``num_gt``: (15,)."""
    ap, pre, rec = np.zeros(JOINTS), np.zeros(JOINTS), np.zeros(JOINTS)
    for j in range(JOINTS):
        s, m = np.asarray(scores[j], dtype=np.float64), np.asarray(labels[j], dtype=bool)
        if s.size == 0:
            continue   # poseval: a joint nobody predicted keeps AP 0, and counts in Total
        order = s.argsort()[::-1]   # poseval's (unstable) sort: tied scores fall as its do
        hits = np.cumsum(m[order])
        with np.errstate(divide="ignore", invalid="ignore"):   # poseval: no ground truth → NaN recall
            recall, precision = hits / np.float64(num_gt[j]), hits / np.arange(1.0, s.size + 1)
        ap[j], pre[j], rec[j] = voc_ap(recall, precision) * 100, precision[-1] * 100, recall[-1] * 100
    return _with_total(ap), _with_total(pre), _with_total(rec)


def mot_figures(counts) -> tuple:
    """poseval's MOTA, MOTP, precision, recall (%) per joint and Total from (15, 6) counts:
    misses, switches, false positives, objects, detections, and the sum of motmetrics' D column."""
    miss, switch, fp, obj, det, dsum = np.asarray(counts, dtype=np.float64).T
    with np.errstate(divide="ignore", invalid="ignore"):
        objects = np.where(obj > 0, obj, np.nan)
        mota = 100 * (1.0 - (miss + switch + fp) / objects)
        motp = np.where((det == 0) | np.isnan(dsum), 0.0, 100 * (1.0 - dsum / det))
        pre = 100 * det / np.where(fp + det > 0, fp + det, np.nan)
        rec = 100 * det / objects
    return tuple(_with_total(v) for v in (mota, motp, pre, rec))


def mot_counts(frames, mm) -> np.ndarray:
    """One sequence's (15, 6) MOT counts: a motmetrics accumulator per joint over its frames."""
    metrics, out = mm.metrics.create(), np.zeros((JOINTS, 6))
    for j in range(JOINTS):
        acc = mm.MOTAccumulator(auto_id=True)
        for f in frames:
            acc.update(*f.mot[j])
        got = metrics.compute(acc, metrics=list(_COUNTS), return_dataframe=False, name="acc")
        # poseval sums D over *all* events: motmetrics ≥ 1.2 also lists every finite pair as RAW
        # and repeats matches as TRANSFER/ASCEND/MIGRATE, all of which enter its MOTP
        d = acc.events["D"].sum()
        out[j] = [*(got[c] for c in _COUNTS), 0.0 if np.isnan(d) else d]
    return out


@dataclass
class PoseTrackReport:
    """poseval's figures: 16 values each (its 15 joints, POSEVAL_JOINTS order, then Total), in %."""
    ap: np.ndarray
    ap_precision: np.ndarray
    ap_recall: np.ndarray
    mota: np.ndarray
    motp: np.ndarray
    mot_precision: np.ndarray
    mot_recall: np.ndarray
    sequences: dict = field(default_factory=dict)   # name → its figures (poseval's -s files)
    frames: int = 0        # frames scored for AP
    mot_frames: int = 0    # frames in the MOT accumulators
    notes: list = field(default_factory=list)

    def ap_row(self) -> dict:
        """poseval's printed AP row: Head … Ankl (plain means of its joints) and Total."""
        return {**{g: float(np.mean(self.ap[list(ix)])) for g, ix in GROUPS.items()}, "Total": float(self.ap[JOINTS])}

    def mot_row(self) -> dict:
        """poseval's printed MOT row: MOTA per group and Total, then MOTP, Prec and Rec Total."""
        row = {f"MOTA {g}": float(np.mean(self.mota[list(ix)])) for g, ix in GROUPS.items()}
        row["MOTA Total"] = float(self.mota[JOINTS])
        return {**row, "MOTP Total": float(self.motp[JOINTS]), "Prec Total": float(self.mot_precision[JOINTS]),
                "Rec Total": float(self.mot_recall[JOINTS])}

    def table(self) -> str:
        """The two tables in poseval's layout, readable (one decimal, as poseval prints)."""
        def line(values):
            return "".join(f"{v:>7.1f}" for v in values)
        ap, mot = self.ap_row(), self.mot_row()
        head = list(ap)
        return "\n".join([
            "Average Precision (AP), PCKh@0.5:", "".join(f"{h:>7}" for h in head), line(ap.values()),
            "Multiple Object Tracking (MOT):",
            "".join(f"{h:>7}" for h in ["MOTA"] * 8 + ["MOTP", "Prec", "Rec"]),
            "".join(f"{h:>7}" for h in head + ["Total"] * 3), line(mot.values())])

    def to_json(self) -> dict:
        """Plain JSON (NaN → null): every figure, the summary rows, each sequence's figures."""
        def clean(v):
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, (list, tuple, np.ndarray)):
                return [clean(x) for x in v]
            return None if v is None or math.isnan(v) else float(v)
        return {"protocol": "poseval (PoseTrack) 4258a15: AP at PCKh@0.5, MOT via motmetrics",
                "joints": [*POSEVAL_JOINTS, "total"],
                **{k: clean(getattr(self, k)) for k in FIGURES},
                "summary": {"AP": clean(self.ap_row()), "MOT": clean(self.mot_row())},
                "sequences": clean(self.sequences), "frames": self.frames, "mot_frames": self.mot_frames}


def _pairs(gt, pred) -> list:
    """(ground-truth file, prediction file) per sequence: a folder's *.json by name, or one file."""
    gt, pred = Path(gt), Path(pred)
    if not gt.exists():
        raise FrposeError(f"PoseTrack ground truth {gt}: no such file or folder")
    if not pred.exists():
        raise FrposeError(f"PoseTrack predictions {pred}: no such file or folder")
    if gt.is_dir():
        files = sorted(gt.glob("*.json"))   # poseval: glob order; sorted here (it matters only for tied scores)
        if not files:
            raise FrposeError(f"PoseTrack ground truth {gt}: no .json files in the folder")
        if not pred.is_dir():
            raise FrposeError(f"--ann {gt} is a folder of sequences: --results must be a folder of "
                              "prediction files by the same names")
    else:
        files = [gt]
    pairs = [(f, pred / f.name if pred.is_dir() else pred) for f in files]
    for f, p in pairs:
        if not p.is_file():
            raise FrposeError(f"no prediction file {p} for sequence {f.name} (poseval needs one per "
                              "ground-truth file, by the same name)")
    return pairs


def _check_predictions(gt, pr) -> None:
    if len(pr.frames) != len(gt.frames):
        raise FrposeError(f"{pr.source}: {len(pr.frames)} frames, but {gt.source} has {len(gt.frames)} "
                          "(poseval matches frames by position)")
    for i, f in enumerate(pr.frames):
        ids = [p.track_id for p in f.people]
        if len(set(ids)) != len(ids):   # poseval refuses them too
            raise FrposeError(f"{pr.source}: frame {i} ({f.file_name}) gives one track id to two people")


def evaluate_posetrack(gt, pred) -> PoseTrackReport:
    """poseval's ``evaluate.py -e -t`` on ``gt`` and ``pred``: each a folder of per-sequence
    PoseTrack18 (or PoseTrack17) files with the same names, or one file."""
    for name, v in (("gt", gt), ("pred", pred)):
        if not isinstance(v, (str, os.PathLike)):
            raise TypeError(f"{name} must be a path (str or Path), got {type(v).__name__}")
    try:
        import motmetrics as mm
    except ImportError:
        raise FrposeError(MOTMETRICS_MISSING) from None
    scores, labels = [[] for _ in range(JOINTS)], [[] for _ in range(JOINTS)]   # every sequence's, in order
    num_gt, counts, per_seq, notes, frames, mot_frames = np.zeros(JOINTS), np.zeros((JOINTS, 6)), {}, [], 0, 0
    for gt_file, pr_file in _pairs(gt, pred):
        g, p = read_sequence(gt_file), read_sequence(pr_file)
        _check_predictions(g, p)
        if p.scoreless:
            notes.append(f"{p.source}: {p.scoreless} people without keypoint scores (poseval's fallback score -9999)")
        if p.unmatched:
            notes.append(f"{p.source}: {p.unmatched} annotations whose image_id is no image of the file "
                         "(poseval skips them)")
        matches = [match_frame(gt_people, pr_people, f"{g.source} frame {frame.file_name}")
                   for frame, gt_people, pr_people in scored_frames(g.frames, p.frames)]
        if not matches:
            continue   # poseval: a sequence with no annotated frame has no figures
        if len(matches) == 1:
            notes.append(f"{g.source}: one annotated frame, none left for MOT (poseval fails on it)")
        seq_scores = [[s for m in matches for s in m.scores[j]] for j in range(JOINTS)]
        seq_labels = [[x for m in matches for x in m.labels[j]] for j in range(JOINTS)]
        seq_gt = np.sum([m.num_gt for m in matches], axis=0)
        seq_counts = mot_counts(matches[:-1], mm)   # poseval: imgidxs[:-1] leaves each sequence's last frame out of MOT
        per_seq[g.name] = dict(zip(FIGURES, (*ap_figures(seq_scores, seq_labels, seq_gt), *mot_figures(seq_counts))))
        for j in range(JOINTS):
            scores[j] += seq_scores[j]
            labels[j] += seq_labels[j]
        num_gt, counts = num_gt + seq_gt, counts + seq_counts
        frames, mot_frames = frames + len(matches), mot_frames + len(matches) - 1
    return PoseTrackReport(*ap_figures(scores, labels, num_gt), *mot_figures(counts), sequences=per_seq,
                           frames=frames, mot_frames=mot_frames, notes=notes)


def run_posetrack_eval(o, ann_file, log=note) -> dict:
    """`frpose eval --ann GT --results PRED` on PoseTrack files: the tables printed, ``--json`` written."""
    from frpose_cli.fileio import create_json
    from frpose_cli.outputs import check_output_file
    if o.results is None:
        raise FrposeError(f"--ann {ann_file} is PoseTrack ground truth: give --results PRED (the prediction "
                          "files, one per sequence by the same names, as `frpose predict --track` writes)")
    if o.model or o.weights or o.oracle or o.analyze or o.out is not None or o.shard:
        raise FrposeError("PoseTrack evaluation scores --results against --ann; it takes no MODEL, --weights, "
                          "--oracle, --analyze, --out or --shard")
    if o.json_out is not None:
        check_output_file(o.json_out, "--json", overwrite=False)
    report = evaluate_posetrack(ann_file, o.results)
    for line in report.notes:
        log(f"warning: {line}")
    n = len(report.sequences)
    print(f"PoseTrack (poseval) {Path(o.results).name} on {Path(ann_file).name}: {n} sequence{'s' * (n != 1)}, "
          f"{report.frames} annotated frames ({report.mot_frames} in MOT)")
    print(report.table())
    figures = report.to_json()
    if o.json_out is not None:
        written = create_json(o.json_out, figures, indent=2)
        log(f"metrics: {written}" + (f" ({o.json_out} was written by another run meanwhile)"
                                     if written != Path(o.json_out) else ""))
    return figures
