"""PCK@α against hand-computed cases, and COCOeval with a custom keypoint set's σ."""
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frpose_cli.metrics.cocoeval import coco_keypoint_eval, load_ground_truth, oks_sigmas_for
from frpose_cli.errors import FrposeError
from frpose_cli.metrics.pck import pck, reference_points

NAMES = ["head_top", "neck", "left_shoulder", "right_shoulder", "left_hip", "right_hip"]
# One upright person: box 100 wide, 200 tall (reference "box" = 200).
PERSON = np.array([[50, 10, 2], [50, 40, 2], [20, 50, 2], [80, 50, 2], [30, 150, 2], [70, 150, 2]], float)


def write_ann(tmp_path, people, sigmas=None):
    cat = {"id": 1, "name": "person", "keypoints": NAMES}
    if sigmas is not None:
        cat["sigmas"] = sigmas
    anns = [{"id": i + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0, "bbox": list(box),
             "area": float(box[2] * box[3]), "keypoints": kp.reshape(-1).tolist(),
             "num_keypoints": int((kp[:, 2] > 0).sum())} for i, (image_id, kp, box) in enumerate(people)]
    data = {"images": [{"id": i, "file_name": f"{i}.jpg", "width": 400, "height": 400} for i in (1, 2)],
            "annotations": anns, "categories": [cat]}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path


def result(image_id, xy, score=1.0):
    kp = np.concatenate([np.asarray(xy, float), np.ones((len(xy), 1))], 1)
    return {"image_id": image_id, "category_id": 1, "keypoints": kp.reshape(-1).tolist(), "score": score}


def test_pck_counts_keypoints_within_alpha_of_each_reference(tmp_path):
    gt = load_ground_truth(write_ann(tmp_path, [(1, PERSON, (0, 0, 100, 200))]))
    moved = PERSON[:, :2].copy()
    moved[0, 0] += 30          # head top 30 px off
    moved[4, 1] += 50          # left hip 50 px off
    res = [result(1, moved)]
    box = pck(gt, res, 0.2, "box")            # 0.2 × 200 = 40 px: the head top counts, the hip does not
    assert box.pck == pytest.approx(5 / 6) and box.per_keypoint["left_hip"] == 0 and box.keypoints == 6
    torso = pck(gt, res, 0.2, "torso")        # diagonals √(60² + 100²) = 116.6 → 23.3 px: both miss
    assert torso.pck == pytest.approx(4 / 6)
    head = pck(gt, res, 1.0, "head")          # head top → neck: 30 px; 30 < 30 is not correct (strict)
    assert head.pck == pytest.approx(4 / 6) and head.per_keypoint["head_top"] == 0
    assert pck(gt, res, 1.01, "head").per_keypoint["head_top"] == 1
    pair = pck(gt, res, 0.5, "left_shoulder,right_shoulder")   # 60 px → 30 px
    assert pair.pck == pytest.approx(4 / 6) and "left_shoulder–right_shoulder distance" in pair.line()


def test_people_are_matched_to_their_nearest_pose_and_unmatched_ones_miss(tmp_path):
    other = PERSON.copy()
    other[:, 0] += 200
    gt = load_ground_truth(write_ann(tmp_path, [(1, PERSON, (0, 0, 100, 200)), (1, other, (200, 0, 100, 200)),
                                                (2, PERSON, (0, 0, 100, 200))]))
    # Image 1: the better-scored pose belongs to the second person; a far-away background pose is nobody's.
    res = [result(1, other[:, :2], 0.9), result(1, PERSON[:, :2] + 1, 0.5), result(1, PERSON[:, :2] + 500, 0.99)]
    r = pck(gt, res, 0.05)
    assert r.persons == 3 and r.missed_persons == 1 and r.pck == pytest.approx(12 / 18)
    assert pck(gt, res + [result(2, PERSON[:, :2])], 0.05).pck == 1.0


def test_persons_without_reference_points_are_left_out(tmp_path):
    no_neck = PERSON.copy()
    no_neck[1] = 0
    gt = load_ground_truth(write_ann(tmp_path, [(1, PERSON, (0, 0, 100, 200)), (2, no_neck, (0, 0, 100, 200))]))
    r = pck(gt, [result(1, PERSON[:, :2]), result(2, PERSON[:, :2])], 0.1, "head")
    assert r.persons == 1 and r.no_reference == 1 and r.pck == 1.0 and "1 persons without a head length" in r.line()


@settings(max_examples=40, deadline=None)
@given(st.floats(0.01, 0.5), st.floats(0, 2 * np.pi), st.floats(0.05, 3.0))
def test_a_uniform_shift_is_correct_exactly_below_alpha(alpha, angle, factor):
    spec_ref = 200.0
    shift = factor * alpha * spec_ref * np.array([np.cos(angle), np.sin(angle)])
    if abs(factor - 1) < 1e-6 or factor * alpha >= 1:   # the boundary itself; beyond the matching limit
        return
    with tempfile.TemporaryDirectory() as d:
        gt = load_ground_truth(write_ann(Path(d), [(1, PERSON, (0, 0, 100, 200))]))
    r = pck(gt, [result(1, PERSON[:, :2] + shift)], alpha)
    assert r.pck == (1.0 if factor < 1 else 0.0)


def test_bad_references_fail_before_work(tmp_path):
    gt = load_ground_truth(write_ann(tmp_path, [(1, PERSON, (0, 0, 100, 200))]))
    for ref, needle in [("elbow", "choose box"), ("neck,nose", "two different keypoint names"),
                        ("neck,neck", "two different")]:
        with pytest.raises(FrposeError, match=needle):
            reference_points(gt.keypoints, ref)
    with pytest.raises(FrposeError, match="positive"):
        pck(gt, [], 0)


@pytest.mark.parametrize("cocoeval", ["pycocotools", "faster"])
def test_cocoeval_uses_the_data_sigmas_on_both_backends(tmp_path, cocoeval):
    pytest.importorskip("faster_coco_eval") if cocoeval == "faster" else None
    people = [(1, PERSON, (0, 0, 100, 200)), (2, PERSON, (0, 0, 100, 200))]
    off = PERSON[:, :2] + np.array([6.0, 0.0])
    res = [result(1, off, 0.9), result(2, PERSON[:, :2], 0.8)]
    tight = load_ground_truth(write_ann(tmp_path, people, sigmas=[0.01] * 6))
    loose = load_ground_truth(write_ann(tmp_path, people, sigmas=[0.2] * 6))
    assert list(oks_sigmas_for(tight)) == [0.01] * 6
    # OKS of the shifted pose: exp(-36 / (2 · 20000 · (2σ)²)) = 0.44 for σ 0.01, 0.9994 for σ 0.2.
    ap_tight = coco_keypoint_eval(tight, res, cocoeval)["AP"]
    ap_loose = coco_keypoint_eval(loose, res, cocoeval)["AP"]
    assert ap_loose == pytest.approx(1.0) and ap_tight < 0.6
    same = coco_keypoint_eval(tight, res, "pycocotools")
    assert coco_keypoint_eval(tight, res, cocoeval) == pytest.approx(same, abs=1e-9)
