"""Keypoint error diagnosis (Ronchi & Perona, "Benchmarking and Error Diagnosis in
Multi-Instance Pose Estimation", ICCV 2017), measured the way their public coco-analyze does.

1. **Localisation errors.**  Detections are matched to ground truth by COCOeval's greedy
   matcher at OKS 0.1.  Each labelled keypoint of a matched detection gets its keypoint
   similarity ``ks`` to every candidate: the matched person's keypoint, the same person's
   left/right-mirrored keypoint, and the keypoints (and mirrored keypoints) of every other
   annotation in the image.  With the best candidate and its ``ks``:
   *good* ``ks ≥ 0.85`` on the matched person; *jitter* ``0.5 ≤ ks < 0.85`` there;
   *inversion* ``ks ≥ 0.5`` on the mirrored keypoint; *swap* ``ks ≥ 0.5`` on another
   person; *miss* ``ks < 0.5`` everywhere.
2. **Correcting an error** moves the keypoint onto the matched person's keypoint, offset in
   x by ``sqrt(-2 ln(t) · area · σ²)``, with ``t`` = 0.85 for jitter, 0.5 for miss and the
   wrong candidate's ``ks`` for inversion and swap (coco-analyze's distance; as OKS divides
   by ``(2σ)²``, the corrected keypoint's ``ks`` is ``t^¼``: 0.96 for jitter, 0.84 for miss).
3. **Scoring.**  With every keypoint error corrected, each detection's *optimal score* is
   its best OKS with a (non-ignored) person of its image, then soft-NMS'd within the image
   (``score · exp(-OKS² / 0.5)`` against each better detection, OKS over the keypoints'
   boxes); AP with these scores is the AP of optimal rescoring.
4. **Background errors.**  After that, detections matched to nobody at an OKS threshold are
   background false positives (ignored for the "w/o background FP" AP) and persons matched
   by nobody are false negatives (ignored on top for "w/o FN", which reaches AP 1).

AP after correcting the errors *cumulatively* in that order (miss, swap, inversion, jitter,
score, background FP, FN) gives the stacked PR curves of the paper; each keypoint error type
is also corrected *alone* (its own AP gain).  Area ranges default to COCOeval's (``all``
includes small people, so the first row is ``frpose eval``'s AP; coco-analyze's ``all``
starts at 32²: pass ``area_ranges`` to match it).  pycocotools does the matching and the
accumulation (its matcher, thresholds, 101 recall points, 20 detections per image); OKS is
computed here in numpy with the same formula (``FastOksEval``, equal to its loop, tested).
"""
from __future__ import annotations

import contextlib
import copy
import io
from collections import Counter

import numpy as np
from pycocotools.cocoeval import COCOeval

from frpose_cli.metrics.cocoeval import GroundTruth, oks_sigmas_for

ERROR_TYPES = ("miss", "swap", "inversion", "jitter")
CLASSES = ("good", "jitter", "inversion", "swap", "miss")
STEPS = ("original", *ERROR_TYPES, "score", "background_fp", "false_negatives")
KS_JITTER, KS_GOOD, MATCH_OKS = 0.5, 0.85, 0.1
OKS_THRESHOLDS = np.round(np.linspace(0.5, 0.95, 10), 2)
COCO_AREAS = {"all": (0.0, 1e10), "medium": (32.0 ** 2, 96.0 ** 2), "large": (96.0 ** 2, 1e10)}
MAX_DETS = 20


class FastOksEval(COCOeval):
    """pycocotools' COCOeval with its per-pair OKS loop done as one numpy expression per image."""

    def computeOks(self, imgId, catId):
        p = self.params
        gts, dts = self._gts[imgId, catId], self._dts[imgId, catId]
        order = np.argsort([-d["score"] for d in dts], kind="mergesort")[:p.maxDets[-1]]
        if len(gts) == 0 or len(order) == 0:
            return []
        var = (np.asarray(p.kpt_oks_sigmas) * 2) ** 2
        d = np.array([dts[i]["keypoints"] for i in order], np.float64).reshape(len(order), -1, 3)
        g = np.array([gt["keypoints"] for gt in gts], np.float64).reshape(len(gts), -1, 3)
        area = np.array([gt["area"] for gt in gts], np.float64)
        vis = g[:, :, 2] > 0                                                    # (G, K)
        dx, dy = d[:, None, :, 0] - g[None, :, :, 0], d[:, None, :, 1] - g[None, :, :, 1]
        # persons without labelled keypoints: distance to a box twice the ground-truth box
        bb = np.array([gt["bbox"] for gt in gts], np.float64)
        x0, x1 = (bb[:, 0] - bb[:, 2])[None, :, None], (bb[:, 0] + 2 * bb[:, 2])[None, :, None]
        y0, y1 = (bb[:, 1] - bb[:, 3])[None, :, None], (bb[:, 1] + 2 * bb[:, 3])[None, :, None]
        xd, yd = d[:, None, :, 0], d[:, None, :, 1]
        bx = np.maximum(0, x0 - xd) + np.maximum(0, xd - x1)
        by = np.maximum(0, y0 - yd) + np.maximum(0, yd - y1)
        some = vis.any(1)[None, :, None]
        dx, dy = np.where(some, dx, bx), np.where(some, dy, by)
        e = np.exp(-(dx ** 2 + dy ** 2) / var / (area[None, :, None] + np.spacing(1)) / 2)
        use = np.where(some, vis[None], True)
        return (e * use).sum(-1) / use.sum(-1)


def _evaluator(coco_gt, coco_dt, category: int, area, thresholds, sigmas) -> COCOeval:
    ev = FastOksEval(coco_gt, coco_dt, iouType="keypoints")
    p = ev.params
    p.catIds, p.areaRng, p.areaRngLbl = [category], [list(area)], ["range"]
    p.iouThrs, p.maxDets, p.kpt_oks_sigmas = np.asarray(thresholds, np.float64), [MAX_DETS], sigmas
    return ev


def _run(ev: COCOeval, accumulate: bool = True) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):   # pycocotools prints progress
        ev.evaluate()
        if accumulate:
            ev.accumulate()
    return ev


def _precision(ev: COCOeval) -> np.ndarray:
    """(T, R) precision of the one category, area range and detection limit evaluated."""
    return ev.eval["precision"][:, :, 0, 0, 0].copy()


def ap_per_threshold(precision) -> np.ndarray:
    """COCOeval's AP at each OKS threshold: mean precision over the recall points that exist."""
    return np.array([row[row > -1].mean() if (row > -1).any() else -1.0 for row in np.asarray(precision)])


def _accumulate(ev: COCOeval) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        ev.accumulate()
    return _precision(ev)


def classify(dt_xy, gt_rows, areas, n_anns: int, sigmas, flip_index):
    """Keypoint classes of one matched detection and the corrected positions.

    ``dt_xy`` (K, 2); ``gt_rows`` (n, K, 3) the image's annotations, row 0 the matched one;
    ``areas`` (n,).  Returns ``(classes dict name → bool (K,), corrected (K, 2) per error type)``.
    """
    rows = np.concatenate([gt_rows, gt_rows[:, flip_index]])          # + mirrored: rows n .. 2n-1
    rows_area = np.concatenate([areas, areas])
    var = (2 * sigmas) ** 2
    d2 = ((rows[:, :, :2] - dt_xy[None]) ** 2).sum(-1)
    ks = np.where(rows[:, :, 2] > 0, np.exp(-d2 / var / (rows_area[:, None] + np.spacing(1)) / 2), -1.0)
    best, arg = np.maximum(ks.max(0), 0.0), ks.argmax(0)
    labelled = gt_rows[0, :, 2] > 0
    near = best >= KS_JITTER
    cls = {"good": labelled & (best >= KS_GOOD) & (arg == 0),
           "jitter": labelled & near & (best < KS_GOOD) & (arg == 0),
           "inversion": labelled & near & (arg == n_anns),
           "swap": labelled & near & (arg != 0) & (arg != n_anns),
           "miss": labelled & ~near}

    def moved(t):
        dist = np.sqrt(np.maximum(-np.log(t), 0.0) * 2 * areas[0] * sigmas ** 2)
        return np.stack([gt_rows[0, :, 0] + dist, gt_rows[0, :, 1]], -1)

    corrected = {"jitter": moved(KS_GOOD), "miss": moved(KS_JITTER),
                 "inversion": moved(np.clip(best, 1e-12, 1)), "swap": moved(np.clip(best, 1e-12, 1))}
    return cls, corrected


def _keypoint_errors(coco_gt, coco_dt, ev: COCOeval, sigmas, flip_index):
    """Classes (dt id → {class: bool (K,)}) and corrections of every detection matched at OKS 0.1."""
    classes, corrections = {}, {}
    for e in ev.evalImgs:
        if e is None:
            continue
        anns = coco_gt.imgToAnns.get(e["image_id"], [])
        for did, gid in zip(e["dtIds"], e["dtMatches"][0]):
            gt = coco_gt.anns.get(int(gid))
            if gt is None or gt.get("num_keypoints", 0) == 0:
                continue
            ordered = [gt] + [a for a in anns if a["id"] != gt["id"]]
            rows = np.array([a["keypoints"] for a in ordered], np.float64).reshape(len(ordered), -1, 3)
            areas = np.array([a["area"] for a in ordered], np.float64)
            dt_xy = np.asarray(coco_dt.anns[did]["keypoints"], np.float64).reshape(-1, 3)[:, :2]
            classes[did], corrections[did] = classify(dt_xy, rows, areas, len(ordered), sigmas, flip_index)
    return classes, corrections


def _set_keypoints(coco_dt, original, classes, corrections, types) -> None:
    for did, kp in original.items():
        kp = kp.copy()
        for t in types:
            if did in classes:
                m = classes[did][t]
                kp[m, :2] = corrections[did][t][m]
        coco_dt.anns[did]["keypoints"] = kp.reshape(-1).tolist()


def optimal_scores(coco_gt, coco_dt, sigmas, area) -> dict:
    """dt id → soft-NMS'd best OKS with a non-ignored person of its image (coco-analyze's rescoring)."""
    var = (2 * sigmas) ** 2
    out = {}
    by_image = {}
    for d in coco_dt.anns.values():
        by_image.setdefault(d["image_id"], []).append(d)
    for image_id, dts in by_image.items():
        gts = [g for g in coco_gt.imgToAnns.get(image_id, [])
               if not g.get("iscrowd", 0) and g.get("num_keypoints", 0) > 0 and area[0] <= g["area"] <= area[1]]
        kp = np.array([d["keypoints"] for d in dts], np.float64).reshape(len(dts), -1, 3)
        best = np.zeros(len(dts))
        if gts:
            g = np.array([x["keypoints"] for x in gts], np.float64).reshape(len(gts), -1, 3)
            ga = np.array([x["area"] for x in gts], np.float64)
            d2 = ((kp[:, None, :, :2] - g[None, :, :, :2]) ** 2).sum(-1)
            e = np.exp(-d2 / var / (ga[None, :, None] + np.spacing(1)) / 2)
            vis = g[None, :, :, 2] > 0
            best = ((e * vis).sum(-1) / vis.sum(-1)).max(1)
        box = (kp[:, :, 0].max(1) - kp[:, :, 0].min(1)) * (kp[:, :, 1].max(1) - kp[:, :, 1].min(1))
        score, left = best.copy(), list(range(len(dts)))
        while left:
            m = max(left, key=lambda i: score[i])   # first of the best, as a stable sort would
            left.remove(m)
            for i in left:
                d2 = ((kp[i, :, :2] - kp[m, :, :2]) ** 2).sum(-1)
                oks = np.exp(-d2 / var / (0.5 * (box[m] + box[i]) + np.spacing(1)) / 2).mean()
                score[i] *= np.exp(-oks ** 2 / 0.5)
        out.update({d["id"]: float(s) for d, s in zip(dts, score)})
    return out


def _unmatched(ev: COCOeval):
    """Per threshold: detection ids and ground-truth ids left unmatched by the matcher."""
    fp = [set() for _ in ev.params.iouThrs]
    fn = [set() for _ in ev.params.iouThrs]
    for e in ev.evalImgs:
        if e is None:
            continue
        for t in range(len(fp)):
            fp[t].update(d for d, m in zip(e["dtIds"], e["dtMatches"][t]) if m == 0)
            fn[t].update(g for g, m in zip(e["gtIds"], e["gtMatches"][t]) if m == 0)
    return fp, fn


def _curves_for_area(coco_gt, coco_dt, category, area, sigmas, flip_index, original, scores0):
    """Precision (T, R) of every cumulative step, AP per threshold of each keypoint error
    corrected alone, and the keypoint classes, for one area range."""
    def restore():
        _set_keypoints(coco_dt, original, {}, {}, ())
        for did, s in scores0.items():
            coco_dt.anns[did]["score"] = s

    restore()
    match = _run(_evaluator(coco_gt, coco_dt, category, area, [MATCH_OKS], sigmas), accumulate=False)
    classes, corrections = _keypoint_errors(coco_gt, coco_dt, match, sigmas, flip_index)
    ev = _evaluator(coco_gt, coco_dt, category, area, OKS_THRESHOLDS, sigmas)
    curves, alone = {"original": _precision(_run(ev))}, {}
    for i, err in enumerate(ERROR_TYPES):
        _set_keypoints(coco_dt, original, classes, corrections, ERROR_TYPES[:i + 1])
        curves[err] = _precision(_run(ev))
        if i == 0:   # the first cumulative step is that error alone
            alone[err] = ap_per_threshold(curves[err])
        else:
            _set_keypoints(coco_dt, original, classes, corrections, (err,))
            alone[err] = ap_per_threshold(_precision(_run(ev)))
    _set_keypoints(coco_dt, original, classes, corrections, ERROR_TYPES)
    for did, s in optimal_scores(coco_gt, coco_dt, sigmas, area).items():
        coco_dt.anns[did]["score"] = s
    curves["score"] = _precision(_run(ev))
    fp, fn = _unmatched(ev)
    for e in ev.evalImgs:
        if e is not None:
            for t in range(len(fp)):
                e["dtIgnore"][t] = e["dtIgnore"][t] | np.array([d in fp[t] for d in e["dtIds"]], bool)
    curves["background_fp"] = _accumulate(ev)
    fn_curve, missed = np.empty_like(curves["background_fp"]), set()
    for t in range(len(fn)):   # a person missed at one OKS is missed at every higher one too
        missed |= fn[t]
        for e in ev.evalImgs:
            if e is not None:
                e["gtIgnore"] = np.maximum(e["gtIgnore"], np.array([g in missed for g in e["gtIds"]], int))
        fn_curve[t] = _accumulate(ev)[t]
    curves["false_negatives"] = fn_curve
    restore()
    return curves, alone, classes


def background_errors(coco_gt, coco_dt, category, sigmas, area) -> dict:
    """Detections and persons unmatched at every OKS threshold (no corrections), by size and keypoints."""
    ev = _run(_evaluator(coco_gt, coco_dt, category, area, OKS_THRESHOLDS, sigmas), accumulate=False)
    fp, fn = _unmatched(ev)
    fp_ids, fn_ids = set.intersection(*fp), set.intersection(*fn)
    scores = np.array([d["score"] for d in coco_dt.anns.values()])
    top = np.percentile(scores, 80) if len(scores) else 0.0

    def size(a):
        return "small" if a < 32 ** 2 else "medium" if a < 96 ** 2 else "large"

    def bucket(n):
        return "1-5" if n <= 5 else "6-10" if n <= 10 else "11-15" if n <= 15 else "16+"

    fps = [coco_dt.anns[i] for i in fp_ids]
    fns = [coco_gt.anns[i] for i in fn_ids
           if not coco_gt.anns[i].get("iscrowd", 0) and coco_gt.anns[i].get("num_keypoints", 0) > 0]
    return {"false_positives": len(fps), "detections": len(coco_dt.anns),
            "false_positives_top20_score": sum(d["score"] >= top for d in fps),
            "false_positives_by_size": dict(Counter(size(d["area"]) for d in fps)),
            "false_negatives": len(fns),
            "persons": sum(1 for g in coco_gt.anns.values()
                           if not g.get("iscrowd", 0) and g.get("num_keypoints", 0) > 0),
            "false_negatives_by_size": dict(Counter(size(g["area"]) for g in fns)),
            "false_negatives_by_keypoints": dict(Counter(bucket(g["num_keypoints"]) for g in fns))}


def diagnose(gt: GroundTruth, results: list, area_ranges: dict | None = None) -> dict:
    """The whole diagnosis of validated ``results`` against ``gt`` (plain numbers, JSON-ready).

    ``area_ranges``: label → (min, max) person area, default COCOeval's; must include ``all``."""
    areas = dict(area_ranges or COCO_AREAS)
    if "all" not in areas:
        raise ValueError("area_ranges needs an 'all' range")
    coco_gt = gt.coco("pycocotools")
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
    category = gt.person_category
    sigmas = np.asarray(oks_sigmas_for(gt), np.float64)
    spec = gt.keypoints
    mirror = spec.flip_index() or list(range(spec.num_keypoints))   # no left/right: no inversions
    original = {d["id"]: np.asarray(d["keypoints"], np.float64).reshape(-1, 3) for d in coco_dt.anns.values()}
    scores0 = {d["id"]: d["score"] for d in coco_dt.anns.values()}
    ap, alone_ap = {}, {}
    for label, area in areas.items():
        curves, alone, classes = _curves_for_area(coco_gt, coco_dt, category, area, sigmas, mirror,
                                                  original, scores0)
        ap[label] = {step: ap_per_threshold(curves[step]).tolist() for step in STEPS}
        alone_ap[label] = {err: v.tolist() for err, v in alone.items()}
        if label == "all":
            kp_classes = classes
            pr_all = {step: np.round(curves[step], 5).tolist() for step in STEPS}
    counts = np.zeros((len(CLASSES), gt.num_keypoints), int)
    for cls in kp_classes.values():
        counts += np.stack([cls[c] for c in CLASSES]).astype(int)
    return {"oks_thresholds": OKS_THRESHOLDS.tolist(), "area_ranges": {k: list(v) for k, v in areas.items()},
            "steps": list(STEPS), "ap": ap, "ap_alone": alone_ap, "pr_curves_all": pr_all,
            "matched_detections": len(kp_classes), "keypoint_names": list(spec.names),
            "keypoint_errors": {c: counts[i].tolist() for i, c in enumerate(CLASSES)},
            "background": background_errors(coco_gt, coco_dt, category, sigmas, areas["all"])}
