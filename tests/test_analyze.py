"""Keypoint error diagnosis: injected errors are recovered with their counts, corrections
raise AP as they should, and the matcher equals pycocotools'."""
import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from frpose_cli.evaluation.diagnosis import FastOksEval, classify, diagnose
from frpose_cli.metrics.cocoeval import coco_keypoint_eval, load_ground_truth, validate_results
from frpose_cli.data.keypoints import COCO17, COCO17_OKS_SIGMAS

DATA = Path(__file__).parent / "data" / "coco"
ANN = DATA / "annotations" / "person_keypoints_val2017.json"
SIGMAS = np.asarray(COCO17_OKS_SIGMAS)
NOSE, L_WRIST, R_WRIST, L_KNEE, L_ANKLE = 0, 9, 10, 13, 15


@pytest.fixture(scope="module")
def gt():
    return load_ground_truth(ANN)


def people():
    """The persons COCOeval scores (keypoints labelled, not crowd), by image."""
    anns = json.loads(ANN.read_text())["annotations"]
    return [a for a in anns if a["num_keypoints"] > 0 and not a["iscrowd"]]


def as_result(ann, kp=None, score=1.0):
    k = np.asarray(ann["keypoints"], np.float64).reshape(-1, 3) if kp is None else kp
    k = k.copy()
    k[:, 2] = 1.0
    return {"image_id": ann["image_id"], "category_id": 1, "keypoints": k.reshape(-1).tolist(), "score": score}


def kp_of(ann):
    return np.asarray(ann["keypoints"], np.float64).reshape(-1, 3)


def jitter_distance(ann, j, ks=0.7):
    """Distance at which keypoint j of ``ann`` has keypoint similarity ``ks`` (OKS's own formula)."""
    return np.sqrt(-np.log(ks) * 2 * ann["area"] * (2 * SIGMAS[j]) ** 2)


def injected(jitter_all=False):
    """Results = ground truth with known errors: person 0 wrists inverted, person 1's left knee
    from a neighbour, person 2's nose jittered to ks 0.7, person 3's left ankle far away."""
    ps = people()
    by_image = {}
    for p in ps:
        by_image.setdefault(p["image_id"], []).append(p)
    crowded = [p for p in ps if len(by_image[p["image_id"]]) >= 4]
    inv = next(p for p in crowded if kp_of(p)[[L_WRIST, R_WRIST], 2].all()
               and np.linalg.norm(kp_of(p)[L_WRIST, :2] - kp_of(p)[R_WRIST, :2]) > 10)
    swp, donor = next((p, q) for p in crowded for q in by_image[p["image_id"]]
                      if p is not q and p is not inv and kp_of(p)[L_KNEE, 2] and kp_of(q)[L_KNEE, 2])
    jit = next(p for p in ps if p["area"] > 96 ** 2 and kp_of(p)[NOSE, 2] and p not in (inv, swp))
    mis = next(p for p in ps if kp_of(p)[L_ANKLE, 2] and p not in (inv, swp, jit))
    out, expected = [], {"inversion": 2, "swap": 1, "jitter": 1, "miss": 1}
    for i, p in enumerate(ps):
        k = kp_of(p).copy()
        if p is inv:
            k[[L_WRIST, R_WRIST]] = k[[R_WRIST, L_WRIST]]
        if p is swp:
            k[L_KNEE, :2] = kp_of(donor)[L_KNEE, :2]
        if p is jit:   # the nose (or every labelled keypoint) moved to ks 0.7
            for j in (np.flatnonzero(k[:, 2] > 0) if jitter_all else [NOSE]):
                k[j, 1] += jitter_distance(p, j)
        if p is mis:
            k[L_ANKLE, :2] += 2000.0
        out.append(as_result(p, k, score=1.0 - 0.01 * i))
    labelled = sum(int((kp_of(p)[:, 2] > 0).sum()) for p in ps)
    expected["good"] = labelled - sum(expected.values())
    return out, expected, (inv, swp, jit, mis), ps


def test_fast_oks_equals_pycocotools(gt):
    rng = np.random.default_rng(0)
    res = [as_result(p, kp_of(p) + np.r_[rng.normal(0, 6, 2), 0], float(rng.uniform()))
           for p in json.loads(ANN.read_text())["annotations"]]   # zero-keypoint and crowd persons too
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(ANN))
        dt = coco.loadRes(copy.deepcopy(res))
        ref, fast = COCOeval(coco, dt, "keypoints"), FastOksEval(coco, dt, "keypoints")
        ref._prepare()
        fast._prepare()
    for key in ref._gts.keys() | ref._dts.keys():
        a, b = ref.computeOks(*key), fast.computeOks(*key)
        assert np.shape(a) == np.shape(b)
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-12, atol=1e-15)


def test_injected_errors_are_classified_with_their_counts(gt):
    res, expected, _, _ = injected()
    d = diagnose(gt, validate_results(res, gt).results)
    assert d["matched_detections"] == len(res)
    assert {c: sum(v) for c, v in d["keypoint_errors"].items()} == expected
    names = d["keypoint_names"]
    assert d["keypoint_errors"]["inversion"][names.index("left_wrist")] == 1
    assert d["keypoint_errors"]["inversion"][names.index("right_wrist")] == 1
    assert d["keypoint_errors"]["swap"][names.index("left_knee")] == 1
    assert d["keypoint_errors"]["jitter"][names.index("nose")] == 1
    assert d["keypoint_errors"]["miss"][names.index("left_ankle")] == 1
    # the first row is frpose eval's AP
    assert np.mean(d["ap"]["all"]["original"]) == pytest.approx(coco_keypoint_eval(gt, res)["AP"], abs=1e-12)


@pytest.mark.parametrize("which", ["inversion", "swap", "jitter", "miss"])
def test_correcting_an_error_type_raises_ap_as_expected(gt, which):
    res, _, (inv, swp, jit, mis), ps = injected(jitter_all=which == "jitter")
    person = {"inversion": inv, "swap": swp, "jitter": jit, "miss": mis}[which]
    # only that person's error: every other person exactly at its ground truth
    only = []
    for r, p in zip(res, ps):
        only.append(r if p is person else as_result(p, score=r["score"]))
    d = diagnose(gt, validate_results(only, gt).results)
    n_injected = {"inversion": 2, "swap": 1, "miss": 1, "jitter": int((kp_of(person)[:, 2] > 0).sum())}[which]
    assert {c: sum(v) for c, v in d["keypoint_errors"].items() if c != "good"} == \
        {c: (n_injected if c == which else 0) for c in ("jitter", "inversion", "swap", "miss")}
    ap = {s: np.mean(v) for s, v in d["ap"]["all"].items()}
    alone = {s: np.mean(v) for s, v in d["ap_alone"]["all"].items()}
    assert ap["original"] < 1.0
    for other in {"inversion", "swap", "jitter", "miss"} - {which}:
        assert alone[other] == pytest.approx(ap["original"], abs=1e-12)   # nothing of that kind to correct
    if which in ("inversion", "swap"):
        # the wrong candidate matched exactly (ks 1): the correction puts the keypoint on the truth
        assert alone[which] == pytest.approx(1.0, abs=1e-12)
    else:
        # jitter → ks 0.85^¼ = 0.96, miss → 0.5^¼ = 0.84 (coco-analyze's correction): better, not perfect
        assert ap["original"] < alone[which] <= 1.0
    assert ap["jitter"] == pytest.approx(alone[which], abs=1e-12)          # cumulative = alone here
    assert ap["false_negatives"] == 1.0


def test_cumulative_corrections_never_lower_ap_and_background_errors_are_counted(gt):
    res, _, _, ps = injected()
    dropped = ps[-1]                                          # a person nobody predicts: a false negative
    res = [r for r, p in zip(res, ps) if p is not dropped]
    far = kp_of(ps[0]).copy()
    far[:, 0] += 5000.0                                       # a pose far from everybody: a background FP
    res.append(as_result(ps[0], far, score=0.999))
    d = diagnose(gt, validate_results(res, gt).results)
    steps = [np.mean(d["ap"]["all"][s]) for s in d["steps"]]
    assert all(b >= a - 1e-12 for a, b in zip(steps, steps[1:])), steps
    assert steps[-1] == 1.0
    b = d["background"]
    assert (b["false_positives"], b["false_negatives"], b["detections"]) == (1, 1, len(res))
    size = "small" if dropped["area"] < 32 ** 2 else "medium" if dropped["area"] < 96 ** 2 else "large"
    assert b["false_negatives_by_size"] == {size: 1}
    n = dropped["num_keypoints"]
    assert sum(b["false_negatives_by_keypoints"].values()) == 1
    assert b["false_negatives_by_keypoints"] == {"1-5" if n <= 5 else "6-10" if n <= 10 else
                                                 "11-15" if n <= 15 else "16+": 1}
    assert b["false_positives_top20_score"] == 1                # it has the best score of all


def test_optimal_rescoring_fixes_inverted_scores(gt):
    # good poses scored low, poor poses (every keypoint shifted) scored high: rescoring by the
    # poses' own OKS puts the good ones first
    rng = np.random.default_rng(1)
    res = []
    for i, p in enumerate(people()):
        k = kp_of(p).copy()
        bad = i % 2 == 0
        if bad:
            k[:, :2] += rng.normal(0, 1, (17, 2)) * 2 * SIGMAS[:, None] * np.sqrt(p["area"]) * 0.8
        res.append(as_result(p, k, score=0.9 if bad else 0.1))
    d = diagnose(gt, validate_results(res, gt).results)
    before, after = np.mean(d["ap"]["all"]["jitter"]), np.mean(d["ap"]["all"]["score"])
    assert after > before + 0.01


def test_classify_clear_cut_cases():
    # two persons; the detection of person 0 has: wrists inverted, knee of person 1, nose at ks 0.7
    g = np.zeros((2, 17, 3))
    g[0, :, :2] = np.stack([np.arange(17) * 20.0, np.full(17, 100.0)], 1)
    g[1, :, :2] = g[0, :, :2] + [0, 300]
    g[:, :, 2] = 2
    areas = np.array([10000.0, 10000.0])
    dt = g[0, :, :2].copy()
    dt[[L_WRIST, R_WRIST]] = dt[[R_WRIST, L_WRIST]]
    dt[L_KNEE] = g[1, L_KNEE, :2]
    dt[NOSE, 0] += np.sqrt(-np.log(0.7) * 2 * 10000.0 * (2 * SIGMAS[NOSE]) ** 2)
    dt[L_ANKLE] += 1000
    cls, corrected = classify(dt, g, areas, 2, SIGMAS, COCO17.flip_index())
    assert np.flatnonzero(cls["inversion"]).tolist() == [L_WRIST, R_WRIST]
    assert np.flatnonzero(cls["swap"]).tolist() == [L_KNEE]
    assert np.flatnonzero(cls["jitter"]).tolist() == [NOSE]
    assert np.flatnonzero(cls["miss"]).tolist() == [L_ANKLE]
    assert cls["good"].sum() == 17 - 5
    assert sum(c.astype(int) for c in cls.values()).max() == 1             # one class per keypoint
    # corrections: coco-analyze's x offsets, so the corrected ks is t^(1/4)
    for t, kind, j in ((0.85, "jitter", NOSE), (0.5, "miss", L_ANKLE), (1.0, "inversion", L_WRIST)):
        d2 = ((corrected[kind][j] - g[0, j, :2]) ** 2).sum()
        ks = np.exp(-d2 / (2 * SIGMAS[j]) ** 2 / (10000.0 + np.spacing(1)) / 2)
        assert ks == pytest.approx(t ** 0.25, abs=1e-9)
