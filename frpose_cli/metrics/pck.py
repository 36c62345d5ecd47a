"""PCK@α: the share of labelled keypoints predicted within α × a reference length.

Many custom keypoint datasets are single-person and report PCK rather than OKS AP (mmpose's
``PCKAccuracy``, PCKh on MPII, PCK@0.2 of the box for hands and animals).  ``frpose eval``
reports it next to COCOeval's AP, from the same results file, so it works for every box
source (ground truth, detector, a results file).

* **Reference length** per ground-truth person: ``box`` (the longer side of its box, as
  mmpose's ``norm_item='bbox'``), ``torso`` (the longer labelled shoulder-to-opposite-hip
  diagonal), ``head`` (head top to neck when such points exist, as MPII's head segment; else
  ear to ear), or ``A,B``: the distance between the keypoints named A and B.  Persons whose
  reference points are not both labelled are left out and counted.
* **Matching** (needed with detector boxes, where poses and people are not paired): in each
  image, predictions by falling score each take the unpaired ground-truth person nearest to
  them, by mean distance over that person's labelled keypoints in units of its box's longer
  side, if that mean is below :data:`MATCH_LIMIT`; a person left without a prediction counts
  as missed on every labelled keypoint.  OKS is not used: with COCO's small σ a pose that PCK
  counts as correct can have an OKS near 0.  With ground-truth boxes each crop's pose pairs
  with its own person.
* **Correct**: distance < α × reference (strict, as mmpose).  PCK = correct / labelled
  keypoints over all counted persons; per keypoint the same per column.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from frpose_cli.errors import FrposeError
from frpose_cli.data.keypoints import KeypointSpec

DEFAULT_ALPHA = 0.2          # mmpose's PCK@0.2 of the box for hand and animal sets
REFERENCES = ("box", "torso", "head")
MATCH_LIMIT = 1.0            # a pose further than one box length (on average) is nobody's
_HEAD_TOPS, _NECKS = ("head_top", "top_head", "head"), ("upper_neck", "neck")


@dataclass
class PCKResult:
    alpha: float
    reference: str
    pck: float                                   # nan when no keypoint could be counted
    per_keypoint: dict = field(default_factory=dict)   # name → PCK (None: never labelled)
    keypoints: int = 0                           # labelled keypoints counted
    persons: int = 0                             # ground-truth persons counted
    missed_persons: int = 0                      # of those, persons no prediction matched
    no_reference: int = 0                        # persons left out: reference points not labelled

    def line(self) -> str:
        value = "n/a" if not np.isfinite(self.pck) else f"{100 * self.pck:.1f}"
        extra = (f", {self.missed_persons} without a prediction" if self.missed_persons else "") + \
            (f"; {self.no_reference} persons without a {self.reference} length left out" if self.no_reference else "")
        return (f"PCK@{self.alpha:g} of the {reference_label(self.reference)}: {value} ({self.keypoints} labelled keypoints of "
                f"{self.persons} persons{extra})")

    def to_dict(self) -> dict:
        return {"PCK": self.pck if np.isfinite(self.pck) else None, "PCK_alpha": self.alpha, "PCK_reference": self.reference,
                "PCK_per_keypoint": dict(self.per_keypoint), "PCK_keypoints": self.keypoints,
                "PCK_persons": self.persons}


def reference_label(reference: str) -> str:
    """``box`` → "box", ``a,b`` → "a–b distance" (for one-line reports)."""
    return reference if reference in REFERENCES else reference.replace(",", "–") + " distance"


def reference_points(spec: KeypointSpec, reference: str) -> list[tuple[int, int]]:
    """Index pairs whose (largest labelled) distance is the reference; [] for ``box``."""
    if reference == "box":
        return []

    def find(*names):
        return next((i for n in names if (i := spec.index_of(n)) is not None), None)

    if reference == "torso":
        ls, rs, lh, rh = (find(n) for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip"))
        pairs = [(a, b) for a, b in ((ls, rh), (rs, lh)) if a is not None and b is not None]
        if pairs:
            return pairs
        raise FrposeError("--pck-ref torso needs shoulder and hip keypoints (left_shoulder … right_hip); "
                          "name two keypoints instead, e.g. --pck-ref neck,tail_base")
    if reference == "head":
        top, neck = find(*_HEAD_TOPS), find(*_NECKS)
        if top is not None and neck is not None:
            return [(top, neck)]
        le, re_ = find("left_ear"), find("right_ear")
        if le is not None and re_ is not None:
            return [(le, re_)]
        raise FrposeError("--pck-ref head needs head_top and neck (or left_ear and right_ear) keypoints; "
                          "name two keypoints instead: --pck-ref A,B")
    parts = [p.strip() for p in reference.split(",")]
    if len(parts) == 2:
        a, b = (spec.index_of(p) for p in parts)
        if a is None or b is None or a == b:
            raise FrposeError(f"--pck-ref {reference}: two different keypoint names of this set expected "
                              f"({', '.join(spec.names[:6])}{' …' if spec.num_keypoints > 6 else ''})")
        return [(a, b)]
    raise FrposeError(f"--pck-ref {reference!r}: choose box, torso, head, or two keypoint names A,B")


def _match_distance(gt_kp, box_length, pred_xy) -> float:
    """Mean distance of ``pred_xy`` to the person's labelled keypoints, in box lengths."""
    vis = gt_kp[:, 2] > 0
    if not vis.any() or not box_length > 0:
        return np.inf
    return float(np.linalg.norm(pred_xy[vis] - gt_kp[vis, :2], axis=1).mean() / box_length)


def pck(gt, results: list, alpha: float = DEFAULT_ALPHA, reference: str = "box") -> PCKResult:
    """PCK@``alpha`` of COCO keypoint ``results`` against ``gt`` (a :class:`~frpose_cli.metrics.cocoeval.GroundTruth`)."""
    if not alpha > 0:
        raise FrposeError(f"--pck must be a positive fraction (got {alpha})")
    spec: KeypointSpec = gt.keypoints
    k = spec.num_keypoints
    ref_pairs = reference_points(spec, reference)
    people = defaultdict(list)
    for a in gt.dataset["annotations"]:
        kp = np.asarray(a.get("keypoints") or [], np.float64)
        if a.get("category_id", gt.person_category) != gt.person_category or a.get("iscrowd", 0) \
                or kp.size != 3 * k or not (kp[2::3] > 0).any():
            continue
        people[a["image_id"]].append(a)
    preds = defaultdict(list)
    for r in results:
        preds[r["image_id"]].append(r)

    correct, labelled = np.zeros(k), np.zeros(k)
    persons = missed = no_ref = 0
    for image_id, anns in people.items():
        gts = [np.asarray(a["keypoints"], np.float64).reshape(k, 3) for a in anns]
        boxes = [max((float(v) for v in (a.get("bbox") or [0, 0, 0, 0])[2:4]), default=0.0) for a in anns]
        refs = []
        for g, box in zip(gts, boxes):
            if reference == "box":
                refs.append(box if box > 0 else None)
            else:
                lengths = [np.linalg.norm(g[i, :2] - g[j, :2]) for i, j in ref_pairs if g[i, 2] > 0 and g[j, 2] > 0]
                refs.append(max(lengths) if lengths and max(lengths) > 0 else None)
        match = [None] * len(anns)
        for r in sorted(preds.get(image_id, []), key=lambda r: -r["score"]):
            xy = np.asarray(r["keypoints"], np.float64).reshape(k, 3)[:, :2]
            free = [(_match_distance(gts[i], boxes[i], xy), i) for i in range(len(anns)) if match[i] is None]
            if not free:
                break
            distance, best = min(free)
            if distance < MATCH_LIMIT:
                match[best] = xy
        for g, ref, xy in zip(gts, refs, match):
            if ref is None:
                no_ref += 1
                continue
            vis = g[:, 2] > 0
            persons += 1
            labelled += vis
            if xy is None:
                missed += 1
                continue
            dist = np.linalg.norm(xy - g[:, :2], axis=1)
            correct += vis & (dist < alpha * ref)
    per = {n: (float(c / k) if k else None) for n, c, k in zip(spec.names, correct, labelled)}
    total = float(correct.sum() / labelled.sum()) if labelled.sum() else float("nan")
    return PCKResult(float(alpha), reference, total, per, int(labelled.sum()), persons, missed, no_ref)
