"""`frpose eval --detector NAME`: boxes from a zoo detector, written beside the results, then the protocol."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from frpose_cli.cards import load_card
from frpose_cli.weights.checkpoint import save_checkpoint
from helpers import run_cli
from test_eval_cli import assert_one_line_error
from test_rtmdet import random_model, save_mmdet, tiny_spec

DATA = Path(__file__).parent / "data" / "coco"
ANN = DATA / "annotations" / "person_keypoints_val2017.json"


def test_eval_with_a_named_detector_writes_its_boxes_and_scores_them(tmp_path, capsys):
    card = load_card("sbn-r18", (128, 96))
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "sbn-r18.pt", card.build_model(), card)
    det = save_mmdet(random_model(tiny_spec(True, False)), tmp_path / "nano.pth")
    out = tmp_path / "run" / "results.json"
    out.parent.mkdir()
    code, stdout, err = run_cli(["eval", "--weights", ckpt, "--ann", ANN, "--images", DATA / "val2017",
                                 "--detector", "rtmdet-nano", "--detector-weights", det, "--det-size", "128",
                                 "--out", out, "--no-progress", "--workers", "0"], capsys)
    assert code == 0, err
    boxes = json.loads((tmp_path / "run" / "results-detections.json").read_text())
    ids = {img["id"] for img in json.loads(ANN.read_text())["images"]}
    assert boxes and {b["image_id"] for b in boxes} <= ids and all(b["category_id"] == 1 for b in boxes)
    assert "results-detections.json" in err and "AP" in stdout
    results = json.loads(out.read_text())
    assert results and {r["image_id"] for r in results} <= {b["image_id"] for b in boxes}

    # a second run never writes over the first one's boxes
    code, _, err = run_cli(["eval", "--weights", ckpt, "--ann", ANN, "--images", DATA / "val2017", "--detector",
                            "rtmdet-nano", "--detector-weights", det, "--out", tmp_path / "run" / "results.json",
                            "--no-progress"], capsys)
    assert_one_line_error(code, err, "already exists")


def test_a_detector_and_a_box_file_exclude_each_other(tmp_path, capsys):
    code, _, err = run_cli(["eval", "sbn-r18", "--ann", ANN, "--detector", "rtmdet-m", "--gt-boxes"], capsys)
    assert_one_line_error(code, err, "--detector finds the person boxes")
    code, _, err = run_cli(["eval", "sbn-r18", "--ann", ANN, "--detector-weights", "x.pth"], capsys)
    assert_one_line_error(code, err, "--detector-weights needs --detector")
