"""predict detects several images per call where the detector gains from it (RTMDet without --overlap)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from frpose_cli.cards import load_card
from frpose_cli.inference.predict import PredictOptions, run_predict
from frpose_cli.inference.rtmdet_detector import RTMDetDetector
from frpose_cli.weights.checkpoint import save_checkpoint
from test_rtmdet import random_model, save_mmdet, tiny_spec

IMAGES = Path(__file__).parent / "data" / "coco" / "val2017"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("batches")
    card = load_card("sbn-r18", (64, 48))
    torch.manual_seed(0)
    pose = save_checkpoint(root / "pose.pt", card.build_model(), card)
    return pose, save_mmdet(random_model(tiny_spec(True, False)), root / "nano.pth")


def run(tmp_path, files, name, batch_size, monkeypatch):
    pose, nano = files
    det = RTMDetDetector(nano, arch="rtmdet-nano", score_thr=0.3, input_size=128)
    calls = []
    real = det.raw_detections
    monkeypatch.setattr(det, "raw_detections", lambda images, model=None, score_thr=None:
                        calls.append(len(images)) or real(images, model, score_thr))
    monkeypatch.setattr(RTMDetDetector, "detect_batch_size", property(lambda self: batch_size))
    opts = PredictOptions(source=str(IMAGES), weights=str(pose), out=str(tmp_path / name), progress=False,
                          workers=0, save_vis=False, flip=False)
    summary = run_predict(opts, log=lambda m: None, detector=det)
    records = json.loads((tmp_path / name / "predictions.json").read_text())
    return summary, records, calls


def test_a_batch_of_images_per_call_gives_the_boxes_of_one_at_a_time(tmp_path, files, monkeypatch):
    one_summary, one, one_calls = run(tmp_path, files, "one", 1, monkeypatch)
    many_summary, many, many_calls = run(tmp_path, files, "many", 8, monkeypatch)
    assert one_calls == [1, 1, 1, 1] and many_calls == [4]          # four images: four calls, or one
    assert one_summary.images == many_summary.images == 4 and len(one) == len(many) > 0
    key = lambda r: (r["file_name"], tuple(np.round(r["bbox"], 1)))  # noqa: E731
    for a, b in zip(sorted(one, key=key), sorted(many, key=key)):
        assert a["file_name"] == b["file_name"]
        # the boxes (a random pose network's flat heatmaps may tip a keypoint by a heatmap pixel: not compared)
        assert np.allclose(a["bbox"], b["bbox"], atol=1e-2)
    assert many_summary.timings["detect"] > 0   # the batch's time is counted in the detect stage
