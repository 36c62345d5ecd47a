"""PoseTrack evaluation (frpose_cli/evaluation/posetrack_eval.py) equals poseval: every figure of
poseval's own output on the vendored fixture (tests/data/posetrack18/PROVENANCE.md), the
quirks it has, and what a perfect prediction scores."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from frpose_cli.data.keypoints import COCO17_NAMES
from frpose_cli.errors import FrposeError
from frpose_cli.evaluation.posetrack_eval import (GROUPS, MOTMETRICS_MISSING, ap_figures, evaluate_posetrack,
                                                  voc_ap)
from frpose_cli.tracking.posetrack import POSETRACK18_KEYPOINTS, POSEVAL_JOINTS, posetrack_sequence, write_sequence

DATA = Path(__file__).parent / "data" / "posetrack18"
GT, PRED, POSEVAL = DATA / "gt", DATA / "pred", DATA / "poseval"
SEQUENCES = ("990001_mpii_test", "990002_bonn_test", "990003_mpiinew_test")
AP_KEYS = {"ap": "ap", "pre": "ap_precision", "rec": "ap_recall"}
MOT_KEYS = {"mota": "mota", "motp": "motp", "pre": "mot_precision", "rec": "mot_recall"}


@pytest.fixture(scope="module")
def report():
    return evaluate_posetrack(GT, PRED)


def assert_equal(ours, theirs):
    """To 1e-6, NaN where poseval has NaN."""
    theirs = np.array(theirs, dtype=np.float64)   # poseval writes NaN into its JSON
    assert np.isnan(ours).tolist() == np.isnan(theirs).tolist()
    assert np.nan_to_num(ours) == pytest.approx(np.nan_to_num(theirs), abs=1e-6)


def test_totals_equal_poseval(report):
    ap = json.loads((POSEVAL / "total_AP_metrics.json").read_text())
    mot = json.loads((POSEVAL / "total_MOT_metrics.json").read_text())
    for theirs, ours in [*((ap[k], v) for k, v in AP_KEYS.items()), *((mot[k], v) for k, v in MOT_KEYS.items())]:
        assert_equal(getattr(report, ours), theirs)
    assert report.frames == 20 and report.mot_frames == 17   # each sequence's last frame is not in MOT


@pytest.mark.parametrize("seq", SEQUENCES)
def test_each_sequence_equals_poseval(report, seq):
    ap = json.loads((POSEVAL / f"{seq}_AP_metrics.json").read_text())
    mot = json.loads((POSEVAL / f"{seq}_MOT_metrics.json").read_text())
    for theirs, ours in [*((ap[k], v) for k, v in AP_KEYS.items()), *((mot[k], v) for k, v in MOT_KEYS.items())]:
        assert_equal(report.sequences[seq][ours], theirs)


def test_summary_rows_are_poseval_printed_table(report):
    ap = json.loads((POSEVAL / "total_AP_metrics.json").read_text())["ap"]
    mot = json.loads((POSEVAL / "total_MOT_metrics.json").read_text())
    assert list(report.ap_row()) == ["Head", "Shou", "Elb", "Wri", "Hip", "Knee", "Ankl", "Total"]
    assert report.ap_row()["Head"] == pytest.approx(np.mean([ap[14], ap[12], ap[13]]), abs=1e-6)
    assert report.ap_row()["Ankl"] == pytest.approx(np.mean([ap[0], ap[5]]), abs=1e-6)
    row = report.mot_row()
    assert row["MOTA Wri"] == pytest.approx(np.mean([mot["mota"][6], mot["mota"][11]]), abs=1e-6)
    assert [row["MOTA Total"], row["MOTP Total"], row["Prec Total"], row["Rec Total"]] == \
        pytest.approx([mot["mota"][15], mot["motp"][15], mot["pre"][15], mot["rec"][15]], abs=1e-6)
    # poseval's printed rows (evaluate.py's log, PROVENANCE.md), one decimal
    table = report.table().splitlines()
    assert table[2].split() == "49.2 82.0 77.3 82.1 76.3 78.8 78.5 73.2".split()
    assert table[-1].split() == "19.7 62.2 22.8 -5.7 53.9 53.0 23.8 31.9 64.9 65.5 82.7".split()


def test_to_json_is_plain_json(report):
    figures = json.loads(json.dumps(report.to_json(), allow_nan=False))
    assert figures["joints"] == [*POSEVAL_JOINTS, "total"] and set(figures["sequences"]) == set(SEQUENCES)
    assert figures["sequences"]["990002_bonn_test"]["ap"][5] is None   # poseval's NaN: no left ankle annotated
    assert figures["summary"]["AP"]["Total"] == pytest.approx(report.ap[15])


def test_file_order_does_not_matter(tmp_path):
    """poseval takes its folder's listing order; the fixture's scores have no ties, so any order agrees."""
    for sub in ("gt", "pred"):
        (tmp_path / sub).mkdir()
        for k, seq in enumerate(reversed(SEQUENCES)):   # other names, other order
            (tmp_path / sub / f"{k}_{seq}.json").write_text((DATA / sub / f"{seq}.json").read_text())
    assert evaluate_posetrack(tmp_path / "gt", tmp_path / "pred").ap == pytest.approx(
        evaluate_posetrack(GT, PRED).ap, abs=1e-12)


def gt_as_predictions(seq, names, out):
    """The ground truth of ``seq`` as frpose records (score 1 per annotated joint) through the writer."""
    doc = json.loads((GT / f"{seq}.json").read_text())
    frames = []
    for t, im in enumerate(doc["images"]):
        records = []
        for a in (a for a in doc["annotations"] if a["image_id"] == im["id"]):
            kp = np.array(a["keypoints"], dtype=float).reshape(17, 3)
            rows = [[*kp[POSETRACK18_KEYPOINTS.index(n), :2], 1.0] if n in POSETRACK18_KEYPOINTS
                    and kp[POSETRACK18_KEYPOINTS.index(n)].any() else [0.0, 0.0, 0.0] for n in names]
            records.append({"keypoints": np.array(rows).reshape(-1).tolist(), "score": 1.0,
                            "track_id": a["track_id"]})
        frames.append({"file_name": im["file_name"], "frame": t, "width": im["width"], "height": im["height"],
                       "records": records})
    return write_sequence(out / f"{seq}.json", posetrack_sequence(seq, frames, names))


def test_ground_truth_as_predictions_scores_100(tmp_path):
    seq = "990001_mpii_test"   # (990002 has a frame its ignore region empties: poseval's 1 miss + 1 FP)
    r = evaluate_posetrack(GT / f"{seq}.json", gt_as_predictions(seq, POSETRACK18_KEYPOINTS, tmp_path))
    for figure in ("ap", "ap_precision", "ap_recall", "mota", "motp", "mot_precision", "mot_recall"):
        assert getattr(r, figure) == pytest.approx(np.full(16, 100.0)), figure


def test_a_coco_model_scores_zero_on_the_head_joints_it_lacks(tmp_path):
    seq = "990001_mpii_test"
    r = evaluate_posetrack(GT / f"{seq}.json", gt_as_predictions(seq, COCO17_NAMES, tmp_path))
    lacking = [POSEVAL_JOINTS.index("head_bottom"), POSEVAL_JOINTS.index("head_top")]
    others = [j for j in range(15) if j not in lacking]
    assert r.ap[others] == pytest.approx(100.0) and r.mota[others] == pytest.approx(100.0)
    assert r.ap[lacking] == pytest.approx(0.0) and r.mota[lacking] == pytest.approx(0.0)
    assert r.ap[15] == pytest.approx(100 * 13 / 15)   # Total averages the zeros in, as poseval does
    assert r.ap_row()["Head"] == pytest.approx(100 / 3)


def test_mot_leaves_each_sequence_last_frame_out(tmp_path):
    """poseval's ``imgidxs[:-1]``: an identity switch in a sequence's last frame costs nothing."""
    seq = "990001_mpii_test"
    path = gt_as_predictions(seq, POSETRACK18_KEYPOINTS, tmp_path)
    doc = json.loads(path.read_text())
    last = [a for a in doc["annotations"] if a["image_id"] == doc["images"][-1]["id"]]
    last[0]["track_id"], last[1]["track_id"] = last[1]["track_id"], last[0]["track_id"]
    path.write_text(json.dumps(doc))
    assert evaluate_posetrack(GT / f"{seq}.json", path).mota == pytest.approx(np.full(16, 100.0))
    before = [a for a in doc["annotations"] if a["image_id"] == doc["images"][-2]["id"]]
    before[0]["track_id"], before[1]["track_id"] = before[1]["track_id"], before[0]["track_id"]
    path.write_text(json.dumps(doc))
    assert (evaluate_posetrack(GT / f"{seq}.json", path).mota[:15] < 100).all()


def test_a_frame_without_predictions_is_one_miss_per_joint(tmp_path):
    """poseval: a scored frame with no prediction adds 1 miss and 1 false positive per joint,
    however many people it has."""
    seq = "990001_mpii_test"
    path = gt_as_predictions(seq, POSETRACK18_KEYPOINTS, tmp_path)
    doc = json.loads(path.read_text())
    frame = doc["images"][2]["id"]   # a labeled frame with 5 people
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] != frame]
    path.write_text(json.dumps(doc))
    r = evaluate_posetrack(GT / f"{seq}.json", path)
    full = evaluate_posetrack(GT / f"{seq}.json", gt_as_predictions(seq, POSETRACK18_KEYPOINTS, tmp_path / "b"))
    assert full.mota[:15] == pytest.approx(100.0) and (r.mota[:15] < 100).all()
    # objects O = detections D + 1 miss, 1 false positive: recall = precision = D / (D + 1) and
    # MOTA = 1 - 2 / O = 1 - 2 (1 - recall); 5 misses and no false positive would give precision 100
    rec, pre = r.mot_recall[:15], r.mot_precision[:15]
    assert pre == pytest.approx(rec) and (pre < 100).all()
    assert r.mota[:15] == pytest.approx(100 - 2 * (100 - rec))


def test_motmetrics_missing_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "motmetrics", None)   # import fails as if not installed
    with pytest.raises(FrposeError) as e:
        evaluate_posetrack(GT, PRED)
    assert str(e.value) == MOTMETRICS_MISSING
    assert MOTMETRICS_MISSING == "PoseTrack evaluation needs motmetrics: pip install 'frpose[posetrack]'"


def test_arguments_are_checked():
    with pytest.raises(TypeError, match="gt must be a path"):
        evaluate_posetrack(None, PRED)
    with pytest.raises(FrposeError, match="no such file or folder"):
        evaluate_posetrack(GT / "nope", PRED)


def test_groups_are_poseval_summary_columns():
    names = {g: sorted(POSEVAL_JOINTS[j] for j in ix) for g, ix in GROUPS.items()}
    assert names["Head"] == ["head_bottom", "head_top", "nose"] and names["Wri"] == ["left_wrist", "right_wrist"]
    assert sorted(j for ix in GROUPS.values() for j in ix) == list(range(15))


# ---- poseval's precision/recall curve and VOC AP ----

entries = st.lists(st.tuples(st.floats(0, 1, allow_nan=False), st.booleans()), min_size=1, max_size=30,
                   unique_by=lambda e: e[0])


def ap_of(items, extra_gt=0):
    scores = [[s for s, _ in items]] + [[]] * 14
    labels = [[m for _, m in items]] + [[]] * 14
    return ap_figures(scores, labels, np.array([sum(m for _, m in items) + extra_gt] + [1] * 14))[0][0]


@settings(max_examples=200, deadline=None)
@given(entries, st.integers(0, 5), st.randoms(use_true_random=False))
def test_ap_is_bounded_order_free_and_rises_with_a_hit(items, extra_gt, rnd):
    ap = ap_of(items, extra_gt)
    positives = sum(m for _, m in items)
    assert 0 <= ap <= 100 * positives / (positives + extra_gt) + 1e-9 if positives + extra_gt else np.isnan(ap)
    shuffled = list(items)
    rnd.shuffle(shuffled)
    assert ap_of(shuffled, extra_gt) == pytest.approx(ap, nan_ok=True)   # distinct scores: order-free
    misses = [k for k, (_, m) in enumerate(items) if not m]
    if misses and extra_gt:   # a false positive becoming a hit (of a ground truth missed so far)
        k = rnd.choice(misses)
        better = items[:k] + [(items[k][0], True)] + items[k + 1:]
        assert ap_of(better, extra_gt - 1) >= ap - 1e-9


def test_ap_known_values():
    assert ap_of([(0.9, True), (0.8, True)]) == pytest.approx(100)
    assert ap_of([(0.9, False), (0.8, True)]) == pytest.approx(50)   # envelope 0.5 over recall 0..1
    assert ap_of([(0.9, True), (0.8, False)], extra_gt=1) == pytest.approx(50)
    assert ap_of([(0.9, False)]) != ap_of([(0.9, False)])            # no ground truth: NaN, as poseval
    assert voc_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])) == pytest.approx(0.5 + 0.5 * 2 / 3)
    ap, pre, rec = ap_figures([[]] * 15, [[]] * 15, np.ones(15))
    assert (ap == 0).all() and (pre == 0).all()   # nothing predicted: 0, counted in Total


def to_annolist(doc):
    """A PoseTrack18 file in PoseTrack17's ``annolist`` layout, as poseval's convert.py writes it."""
    names = doc["categories"][0]["keypoints"]
    frames = []
    for im in doc["images"]:
        rects = []
        for a in (a for a in doc["annotations"] if a["image_id"] == im["id"]):
            points = [{"id": [POSEVAL_JOINTS.index(n)], "x": [a["keypoints"][3 * k]], "y": [a["keypoints"][3 * k + 1]],
                       **({"score": [a["scores"][k]]} if a.get("scores") else {})}
                      for k, n in enumerate(names) if n in POSEVAL_JOINTS and any(a["keypoints"][3 * k:3 * k + 3])]
            rect = {"track_id": [a["track_id"]], "annopoints": [{"point": points}]}
            if "bbox_head" in a:
                x, y, w, h = a["bbox_head"]
                rect.update(x1=[x], y1=[y], x2=[x + w], y2=[y + h])
            rects.append(rect)
        frame = {"image": [{"name": im["file_name"]}], "annorect": rects}
        if im.get("ignore_regions_x"):
            frame["ignore_regions"] = [{"point": [{"x": [x], "y": [y]} for x, y in zip(xs, ys)]}
                                       for xs, ys in zip(im["ignore_regions_x"], im["ignore_regions_y"])]
        frames.append(frame)
    return {"annolist": frames}


def test_posetrack17_files_score_as_their_posetrack18_originals(tmp_path, report):
    for sub in ("gt", "pred"):
        (tmp_path / sub).mkdir()
        for seq in SEQUENCES:
            doc = json.loads((DATA / sub / f"{seq}.json").read_text())
            (tmp_path / sub / f"{seq}.json").write_text(json.dumps(to_annolist(doc)))
    r = evaluate_posetrack(tmp_path / "gt", tmp_path / "pred")
    for figure in ("ap", "ap_precision", "ap_recall", "mota", "motp", "mot_precision", "mot_recall"):
        assert_equal(getattr(r, figure), getattr(report, figure))


def test_a_posetrack17_rect_without_annopoints_still_selects_its_frame(tmp_path):
    """poseval picks frames by 'has a rect', then drops rects without annopoints: an unlabeled
    frame holding only such a rect is scored, its predictions false positives. The figures are
    poseval's on these very files (same scratch set-up as PROVENANCE.md)."""
    for sub in ("gt", "pred"):
        (tmp_path / sub).mkdir()
        for seq in SEQUENCES:
            doc = to_annolist(json.loads((DATA / sub / f"{seq}.json").read_text()))
            if sub == "gt" and seq == "990001_mpii_test":
                assert doc["annolist"][1]["annorect"] == []   # an unlabeled frame
                doc["annolist"][1]["annorect"].append({"track_id": [50], "x1": [0], "y1": [0], "x2": [10], "y2": [10]})
            (tmp_path / sub / f"{seq}.json").write_text(json.dumps(doc))
    r = evaluate_posetrack(tmp_path / "gt", tmp_path / "pred")
    assert [r.ap[15], r.mota[15], r.motp[15]] == pytest.approx([70.78143169004149, 29.392007114430857,
                                                               64.87287885713269], abs=1e-6)


def test_a_sequence_with_one_scored_frame_has_no_mot_frame(tmp_path):
    """poseval's ``imgidxs[:-1]`` leaves nothing (poseval itself then fails); AP is still scored."""
    doc = json.loads((GT / "990002_bonn_test.json").read_text())
    first = doc["images"][0]["id"]
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] == first]
    (tmp_path / "990002_bonn_test.json").write_text(json.dumps(doc))
    r = evaluate_posetrack(tmp_path / "990002_bonn_test.json", PRED / "990002_bonn_test.json")
    assert r.frames == 1 and r.mot_frames == 0 and np.isnan(r.mota[:15]).all() and r.ap[15] > 0
    assert any("one annotated frame" in n for n in r.notes)


def person(track_id, joints, dx=0.0, head=None):
    """A PosePerson with joints ``j`` at (10 j + dx, 0), scores falling with j."""
    from frpose_cli.tracking.posetrack import PosePerson
    xy, present = np.zeros((15, 2)), np.zeros(15, dtype=bool)
    for j in joints:
        xy[j], present[j] = (10.0 * j + dx, 0.0), True
    return PosePerson(track_id, xy, present, np.linspace(0.9, 0.5, 15), head)


def test_assignment_is_poseval_greedy_pckh():
    """Prediction 1 covers person A's 3 joints (PCKh 1) and 5 of person B's 10 (0.5): by fraction it
    goes to A (by count it would go to B), so its joints 3 and 4 are misses; each prediction keeps
    its best person only, so B goes to prediction 2 (0.5), not again to prediction 1. (poseval's
    figures on these people as files: AP Total 43.3, MOTA Total 85.0; frpose's are equal.)"""
    from frpose_cli.evaluation.posetrack_match import match_frame
    head = (0.0, 0.0, 50.0, 50.0)   # head size 0.6 · 70.7: a joint matches within 21.2 px
    gt = [person(0, range(3), head=head), person(1, range(10), head=head)]
    m = match_frame(gt, [person(0, range(5), dx=1), person(1, range(5, 10), dx=1)], "test")
    assert [list(m.labels[j]) for j in range(10)] == [[True]] * 3 + [[False]] * 2 + [[True]] * 5
    assert m.num_gt.tolist() == [2, 2, 2] + [1] * 7 + [0] * 5
    ids, hyps, dist = m.mot[1]   # joint 1: both people annotated, prediction 1 within reach of both
    assert ids == [0, 1] and hyps == [0] and dist[:, 0] == pytest.approx([0.1 / 4.24264, 0.1 / 4.24264], rel=1e-4)
