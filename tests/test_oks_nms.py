"""Rescoring and OKS-NMS on real annotations, checked against pycocotools' own OKS."""
import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from frpose_cli.metrics.cocoeval import oks_sigmas_for
from frpose_cli.metrics.oks_nms import nms_by_image, oks_matrix, oks_nms, rescore

ANN = Path(__file__).parent / "data" / "coco" / "annotations" / "person_keypoints_val2017.json"
SIGMAS = oks_sigmas_for(17)


def real_poses(image_id=197388):
    anns = [a for a in json.loads(ANN.read_text())["annotations"]
            if a["image_id"] == image_id and a["num_keypoints"] > 0]
    kpts = np.stack([np.asarray(a["keypoints"], np.float64).reshape(-1, 3) for a in anns])
    return kpts, np.array([a["area"] for a in anns]), anns


def test_oks_matrix_matches_pycocotools_computeoks():
    """With every keypoint labelled and equal areas, our OKS is COCOeval's OKS."""
    kpts, areas, anns = real_poses(785)
    full = [i for i, a in enumerate(anns) if a["num_keypoints"] == 17]
    assert full, "need a fully labelled person"
    g = kpts[full[0]].copy()
    rng = np.random.default_rng(0)
    dts = [g.copy() for _ in range(4)]
    for i, d in enumerate(dts):
        d[:, :2] += rng.normal(0, 2.0 * (i + 1), size=(17, 2))
    gt_dataset = {"images": [{"id": 1, "width": 640, "height": 480}],
                  "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": float(areas[full[0]]),
                                   "bbox": anns[full[0]]["bbox"], "keypoints": g.reshape(-1).tolist(),
                                   "num_keypoints": 17}],
                  "categories": [{"id": 1, "name": "person", "keypoints": [str(i) for i in range(17)]}]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt_dataset
        coco.createIndex()
        dt = coco.loadRes([{"image_id": 1, "category_id": 1, "keypoints": d.reshape(-1).tolist(), "score": 1.0}
                           for d in dts])
        ev = COCOeval(coco, dt, "keypoints")
        ev.params.imgIds = [1]
        ev.evaluate()
    ref = ev.ious[(1, 1)][:, 0]          # OKS of each detection to the one ground truth
    ours = oks_matrix(np.stack([g, *dts]), np.full(5, areas[full[0]]), SIGMAS)[0, 1:]
    # pycocotools orders detections by score (all equal, stable) → same order.
    np.testing.assert_allclose(ours, ref, rtol=1e-10)
    assert ref[0] > ref[-1]


def test_duplicate_removed_distinct_kept():
    kpts, areas, _ = real_poses()
    n = len(kpts)
    dup = kpts[1].copy()
    dup[:, :2] += 0.5                     # a second box on the same person: near-identical pose
    all_kpts = np.concatenate([kpts, dup[None]])
    scores = np.concatenate([np.linspace(0.9, 0.5, n), [0.3]])
    keep = oks_nms(all_kpts, scores, np.append(areas, areas[1]), SIGMAS, 0.9)
    assert sorted(keep) == list(range(n))  # the duplicate (lower score) goes, every distinct person stays
    # Give the duplicate the higher score: it survives and the original goes instead.
    scores[-1] = 0.95
    keep = oks_nms(all_kpts, scores, np.append(areas, areas[1]), SIGMAS, 0.9)
    assert keep[0] == n and 1 not in keep and len(keep) == n
    # Threshold 1 keeps everything.
    assert len(oks_nms(all_kpts, scores, np.append(areas, areas[1]), SIGMAS, 1.0)) == n + 1


def test_nms_by_image_works_per_image():
    a, areas_a, _ = real_poses(197388)
    b, areas_b, _ = real_poses(196141)
    inst = [{"image_id": 197388, "keypoints": k, "score": 1.0, "area": ar} for k, ar in zip(a, areas_a)]
    inst += [{"image_id": 197388, "keypoints": a[0], "score": 0.1, "area": areas_a[0]}]   # duplicate
    inst += [{"image_id": 196141, "keypoints": k, "score": 0.5, "area": ar} for k, ar in zip(b, areas_b)]
    kept = nms_by_image(inst, SIGMAS, 0.9)
    assert len(kept) == len(a) + len(b)
    assert all(k["score"] > 0.1 for k in kept)


def test_rescore_is_box_times_mean_keypoint_score_above_threshold():
    box = np.array([0.8, 0.5, 1.0])
    kp = np.array([[0.9, 0.1, 0.5, 0.2],     # 0.9 and 0.5 count (0.2 is not above 0.2)
                   [0.1, 0.1, 0.0, 0.2],     # none above: score 0
                   [1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_allclose(rescore(box, kp), [0.8 * 0.7, 0.0, 1.0])
    with pytest.raises(ValueError):
        rescore(box, np.ones((2, 4)))


def test_empty_and_single():
    assert oks_nms(np.zeros((0, 17, 3)), [], [], SIGMAS) == []
    assert oks_nms(np.zeros((1, 17, 3)), [0.5], [100.0], SIGMAS) == [0]
