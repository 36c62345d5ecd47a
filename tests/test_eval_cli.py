"""`frpose eval` end to end: results files, model checkpoints, oracle, bad input."""
import json
import shutil
from pathlib import Path

import pytest
import torch

from frpose_cli.cards import load_card
from frpose_cli.weights.checkpoint import save_checkpoint
from frpose_cli.metrics.cocoeval import METRIC_NAMES
from helpers import run_cli

from test_eval_metrics import gt_as_results, pycocotools_by_hand

DATA = Path(__file__).parent / "data" / "coco"
ANN = DATA / "annotations" / "person_keypoints_val2017.json"
DET_JSON = DATA / "person_detection_results" / "COCO_val2017_detections_AP_H_56_person_subset.json"
SIZE = (128, 96)


def assert_one_line_error(code, err, needle):
    assert code == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("frpose: error:")]
    assert len(lines) == 1 and needle in lines[0], err


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    card = load_card("sbn-r18", SIZE)
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "sbn-r18.pt", card.build_model(), card)


def test_results_file_json_equals_pycocotools_by_hand(tmp_path, capsys):
    res = gt_as_results(dx=4.0, seed=3)
    (tmp_path / "r.json").write_text(json.dumps(res))
    code, out, err = run_cli(["eval", "--results", tmp_path / "r.json", "--ann", ANN, "--json", tmp_path / "m.json"],
                             capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert list(metrics)[:10] == list(METRIC_NAMES) and metrics["PCK_reference"] == "box"
    assert {n: metrics[n] for n in METRIC_NAMES} == pytest.approx(pycocotools_by_hand(ANN, res), abs=1e-12)
    assert "AP50" in out and f"{100 * metrics['AP']:.1f}" in out


@pytest.mark.parametrize("content,needle", [
    ("[{", "not valid JSON"),
    ("[]", "no results"),
    (json.dumps([{"image_id": 785, "category_id": 1, "keypoints": [1.0] * 39, "score": 1.0}] * 3),
     "39 keypoint values"),
    (json.dumps([{"image_id": 4242, "category_id": 1, "keypoints": [1.0] * 51, "score": 1.0}]), "image ids not in"),
])
def test_bad_results_files_give_one_line_errors(tmp_path, capsys, content, needle):
    (tmp_path / "r.json").write_text(content)
    code, _, err = run_cli(["eval", "--results", tmp_path / "r.json", "--ann", ANN], capsys)
    assert_one_line_error(code, err, needle)


def test_partly_bad_results_are_counted_skips(tmp_path, capsys):
    res = gt_as_results() + [{"image_id": 4242, "category_id": 1, "keypoints": [1.0] * 51, "score": 1.0}]
    (tmp_path / "r.json").write_text(json.dumps(res))
    code, _, err = run_cli(["eval", "--results", tmp_path / "r.json", "--ann", ANN, "--json", tmp_path / "m.json"],
                           capsys)
    assert code == 0
    assert "1 with image ids not in the annotation file" in err
    assert json.loads((tmp_path / "m.json").read_text())["AP"] == 1.0


@pytest.mark.parametrize("args,needle", [
    (["--results", "MISSING", "--ann", ANN], "not found"),
    (["sbn-r18", "--data", DATA], "--weights"),
    (["--weights", "MISSING.pt", "--data", DATA], "weights not found"),
    (["--oracle", "--data", DATA], "MODEL"),
    (["nope-r1", "--oracle", "--data", DATA], "unknown model"),
    (["--results", ANN, "--ann", ANN], "annotation file"),
])
def test_usage_errors(tmp_path, capsys, args, needle):
    args = [tmp_path / a if a in ("MISSING", "MISSING.pt") else a for a in args]
    code, _, err = run_cli(["eval", *args], capsys)
    assert_one_line_error(code, err, needle)


def test_model_eval_with_detector_boxes_matches_pycocotools_on_its_results(tmp_path, capsys, ckpt, monkeypatch):
    reads, real = [], json.load
    monkeypatch.setattr(json, "load", lambda f, *a, **k: reads.append(Path(getattr(f, "name", ""))) or real(f, *a, **k))
    out, metrics = tmp_path / "res.json", tmp_path / "m.json"
    code, stdout, err = run_cli(["eval", "--weights", ckpt, "--data", DATA, "--out", out, "--json", metrics,
                                 "--no-progress", "--batch-size", "16", "--workers", "1"], capsys)
    assert code == 0, err
    assert reads.count(ANN) == 1, reads   # the test-split check and the ground truth share one read
    assert DET_JSON.name in err and "shift 1 heatmap px" in err   # sbn codec at stride 4
    results = json.loads(out.read_text())
    n_boxes = len(json.loads(DET_JSON.read_text()))
    assert 0 < len(results) <= n_boxes
    assert {tuple(sorted(r)) for r in results} == {("category_id", "image_id", "keypoints", "score")}
    assert all(len(r["keypoints"]) == 51 for r in results)
    figures = json.loads(metrics.read_text())
    assert {n: figures[n] for n in METRIC_NAMES} == pytest.approx(pycocotools_by_hand(ANN, results), abs=1e-12)
    assert figures["images_without_boxes"] == 0 and "boxes cover" not in err and "had no boxes" not in stdout
    assert "on cpu (onnxruntime) in fp32" in err   # the runtime named once, not "(onnxruntime, onnxruntime)"


def test_model_eval_gt_boxes_other_codec_and_missing_image(tmp_path, capsys, ckpt):
    root = tmp_path / "coco"
    shutil.copytree(DATA, root)
    (root / "val2017" / "000000000785.jpg").unlink()
    code, _, err = run_cli(["eval", "sbn-r18", "--weights", ckpt, "--data", root, "--gt-boxes", "--codec", "udp",
                            "--no-flip", "--out", tmp_path / "res.json", "--no-progress", "--workers", "0"], capsys)
    assert code == 0, err
    assert "1 missing image file" in err
    results = json.loads((tmp_path / "res.json").read_text())
    assert 785 not in {r["image_id"] for r in results} and results


def test_model_name_must_match_checkpoint(capsys, ckpt):
    code, _, err = run_cli(["eval", "frpose-r34", "--weights", ckpt, "--data", DATA], capsys)
    assert_one_line_error(code, err, "sbn-r18")


def test_oracle_cli_full_resolution_at_least_stride_4(tmp_path, capsys):
    ap = {}
    for name in ("sbn-r18", "frpose-r18"):
        m = tmp_path / f"{name}.json"
        code, out, err = run_cli(["eval", name, "--oracle", "--data", DATA, "--input-size", "128x96",
                                  "--json", m, "--out", tmp_path / f"{name}-res.json"], capsys)
        assert code == 0, err
        assert "oracle" in out
        ap[name] = json.loads(m.read_text())["AP"]
    assert ap["frpose-r18"] >= ap["sbn-r18"] and ap["sbn-r18"] < 1.0


def test_boxes_for_some_images_only_warn_with_counts_and_the_summary_says_so(tmp_path, capsys, ckpt):
    """COCOeval scores every image: a detection file covering 1 of the 4 images caps AP, and eval says so."""
    partial = tmp_path / "det.json"
    partial.write_text(json.dumps([d for d in json.loads(DET_JSON.read_text()) if d["image_id"] == 785]))
    metrics = tmp_path / "m.json"
    code, out, err = run_cli(["eval", "--weights", ckpt, "--ann", ANN, "--images", DATA / "val2017", "--boxes", partial,
                              "--backend", "torch", "--out", tmp_path / "res.json", "--json", metrics,
                              "--no-progress", "--workers", "0"], capsys)
    assert code == 0, err
    # 40083, 196141 and 197388 hold 2 + 4 + 5 persons with keypoints (one each has none: not scored)
    assert ("frpose: warning: the person boxes cover 1 of the 4 images with annotated persons: the other 3 "
            "(11 persons) got no box") in err
    assert "eval: " in out and "; 3 of 4 images with annotated persons had no boxes" in out
    figures = json.loads(metrics.read_text())
    assert (figures["images_with_persons"], figures["images_without_boxes"], figures["persons_without_boxes"]) \
        == (4, 3, 11)
    assert "on cpu (torch, set-up " in err   # a torch set-up is named as one (onnxruntime's is named once)
