"""COCOeval wrapper, results validation, oracle and the model path, against pycocotools run directly."""
import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from frpose_cli.cards import load_card
from frpose_cli.metrics.cocoeval import (METRIC_NAMES, coco_keypoint_eval, load_ground_truth, load_results,
                                         validate_results)
from frpose_cli.errors import FrposeError
from frpose_cli.evaluation.evaluate import evaluate_model, evaluate_oracle, evaluate_results_file, resolve_codec

DATA = Path(__file__).parent / "data" / "coco"
ANN = DATA / "annotations" / "person_keypoints_val2017.json"
SIZE = (128, 96)


def pycocotools_by_hand(ann_file, results) -> dict:
    """The reference: pycocotools exactly as its README runs it."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        dt = gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(gt, dt, "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return dict(zip(METRIC_NAMES, ev.stats.tolist()))


def gt_as_results(ann_file=ANN, dx=0.0, seed=None):
    anns = json.loads(Path(ann_file).read_text())["annotations"]
    rng = np.random.default_rng(seed)
    out = []
    for a in anns:
        if a["num_keypoints"] == 0 or a.get("iscrowd"):
            continue
        k = np.asarray(a["keypoints"], np.float64).reshape(-1, 3)
        k[:, 0] += dx
        k[:, 2] = 1.0
        score = 1.0 if seed is None else float(rng.uniform(0.1, 1.0))
        out.append({"image_id": a["image_id"], "category_id": 1, "keypoints": k.reshape(-1).tolist(), "score": score})
    return out


@pytest.fixture(scope="module")
def gt():
    return load_ground_truth(ANN)


def test_ground_truth_as_results_gives_ap_1(gt):
    res = gt_as_results()
    ours = coco_keypoint_eval(gt, validate_results(res, gt).results)
    assert ours["AP"] == 1.0 and ours["AR"] == 1.0
    assert ours == pytest.approx(pycocotools_by_hand(ANN, res), abs=1e-12)


@pytest.mark.parametrize("dx", [2.0, 6.0])
def test_known_perturbation_lowers_ap_by_what_pycocotools_gives(gt, dx):
    res = gt_as_results(dx=dx, seed=1)
    ours = coco_keypoint_eval(gt, validate_results(res, gt).results)
    ref = pycocotools_by_hand(ANN, res)
    assert ours == pytest.approx(ref, abs=1e-12)
    assert ours["AP"] < 1.0          # a shift of a few pixels costs AP on the small persons
    assert ours["AP50"] >= ours["AP75"] >= 0


def test_bigger_shift_costs_more(gt):
    small = coco_keypoint_eval(gt, validate_results(gt_as_results(dx=2.0), gt).results)["AP"]
    large = coco_keypoint_eval(gt, validate_results(gt_as_results(dx=8.0), gt).results)["AP"]
    assert large < small < 1.0


def test_faster_coco_eval_agrees_with_pycocotools(gt):
    pytest.importorskip("faster_coco_eval")
    res = gt_as_results(dx=3.0, seed=2)
    a = coco_keypoint_eval(gt, validate_results(res, gt).results, "pycocotools")
    b = coco_keypoint_eval(gt, validate_results(res, gt).results, "faster")
    assert b == pytest.approx(a, abs=1e-4)


def test_bad_entries_are_skipped_and_counted(gt):
    res = gt_as_results()
    bad = [{"image_id": 123456789, "category_id": 1, "keypoints": [0.0] * 51, "score": 1.0},
           {"image_id": 785, "category_id": 1, "keypoints": [0.0] * 42, "score": 1.0},
           {"image_id": 785, "category_id": 1, "keypoints": [float("nan")] * 51, "score": 1.0},
           {"image_id": 785, "category_id": 2, "keypoints": [0.0] * 51, "score": 1.0},
           {"image_id": 785, "category_id": 1, "keypoints": [0.0] * 51},
           "not an object"]
    loaded = validate_results(res + bad, gt)
    assert len(loaded.results) == len(res)
    assert sum(loaded.skipped.values()) == len(bad)
    assert loaded.skipped["with image ids not in the annotation file"] == 1
    assert coco_keypoint_eval(gt, loaded.results)["AP"] == 1.0


@pytest.mark.parametrize("content,needle", [
    ("[", "not valid JSON"),
    ("[]", "no results"),
    ('{"a": 1}', "must be a JSON list"),
    (json.dumps([{"image_id": 785, "category_id": 1, "keypoints": [1.0] * 42, "score": 1.0}]), "42 keypoint values"),
    (json.dumps([{"image_id": 1, "category_id": 1, "keypoints": [1.0] * 51, "score": 1.0}]), "image ids not in"),
])
def test_unusable_results_files_raise_one_line_errors(tmp_path, gt, content, needle):
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(FrposeError) as e:
        load_results(path, gt)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_missing_and_bad_annotation_files(tmp_path):
    with pytest.raises(FrposeError, match="not found"):
        load_ground_truth(tmp_path / "nope.json")
    (tmp_path / "det.json").write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1}]}))
    with pytest.raises(FrposeError, match="no keypoint category"):
        load_ground_truth(tmp_path / "det.json")
    with pytest.raises(FrposeError, match="not found"):
        evaluate_results_file(tmp_path / "missing.json", ANN)


def test_oracle_full_resolution_at_least_stride_4_and_matches_pycocotools():
    ap = {}
    for name in ("sbn-r18", "frpose-r18"):
        card = load_card(name, input_size=SIZE)
        report = evaluate_oracle(card, ANN)
        assert {k: report[k] for k in METRIC_NAMES} == pytest.approx(pycocotools_by_hand(ANN, report["results"]),
                                                                     abs=1e-12)
        ap[name] = report["AP"]
        ap[name + " error"] = report["median_error_px"]
    # At 128x96 a stride-4 heatmap pixel is ~8 image pixels: the representation alone loses AP.
    assert ap["sbn-r18"] < 1.0
    assert ap["frpose-r18"] >= ap["sbn-r18"]
    assert ap["frpose-r18 error"] < ap["sbn-r18 error"]


class ReplayNet(torch.nn.Module):
    """Stands in for a network: returns precomputed heatmaps for the crops, in loader order
    (for a flip-test batch of 2n: the crops' heatmaps, then their mirrors')."""

    def __init__(self, plain, mirrored):
        super().__init__()
        self.plain, self.mirrored, self.pos = plain, mirrored, 0
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        n = x.shape[0] if self.mirrored is None else x.shape[0] // 2
        sl = slice(self.pos, self.pos + n)
        self.pos += n
        return self.plain[sl] if self.mirrored is None else torch.cat([self.plain[sl], self.mirrored[sl]])


@pytest.mark.parametrize("flip", [False, True])
def test_model_path_with_perfect_heatmaps_equals_the_oracle(flip):
    """Crop → heatmaps → decode → image → rescoring → NMS → COCOeval: with the codec's own
    targets as the network output the model path must give exactly the oracle's figures."""
    from frpose_cli.data.dataset import CocoPoseDataset
    from frpose_cli.evaluation.evaluate import oracle_heatmaps
    from frpose_cli.data.geometry import flip_points_in_crop

    card = load_card("sbn-r18", input_size=SIZE)
    codec = resolve_codec(card, "dark")
    ds = CocoPoseDataset(ANN, DATA / "val2017", card, codec, train=False, build_targets=False)
    items = [ds[i] for i in range(len(ds))]
    kp = [it["keypoints"].numpy() for it in items]
    vis = [it["visible"].numpy() for it in items]
    plain = oracle_heatmaps(codec, kp, vis)
    mirrored = None
    if flip:
        fi = card.keypoints.flip_index()
        mirrored = oracle_heatmaps(codec, [flip_points_in_crop(k, SIZE[1])[fi] for k in kp], [v[fi] for v in vis])
    model = ReplayNet(plain, mirrored)
    report = evaluate_model(model, card, ANN, DATA / "val2017", boxes=None, flip=flip, codec=codec,
                            batch_size=5, workers=0)
    oracle = evaluate_oracle(card, ANN, codec=codec, flip=flip)
    assert model.pos == len(items)
    assert {k: report[k] for k in METRIC_NAMES} == pytest.approx({k: oracle[k] for k in METRIC_NAMES}, abs=1e-9)
    assert report["AP"] > 0.9
