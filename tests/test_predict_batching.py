"""predict across images (issue 21): crops of several images share one network batch, with the same
bytes out as one image at a time; the summary says how much of the time was detection."""
import json
from pathlib import Path
from types import SimpleNamespace

import torch

from frpose_cli.cards import load_card
from frpose_cli.inference.predict_report import detection_hint
from frpose_cli.weights import zoo
from frpose_cli.weights.checkpoint import save_checkpoint
from helpers import randomised, run_cli

DATA = Path(__file__).parent / "data" / "coco"
DET_JSON = DATA / "person_detection_results" / "COCO_val2017_detections_AP_H_56_person_subset.json"


def test_batched_across_images_writes_the_bytes_of_one_image_at_a_time(tmp_path, capsys):
    card = load_card("sbn-r18", (64, 48))
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "m.pt", randomised(card.build_model()), card)
    outs = {}
    for batch in (1, 7, 256):   # one crop a call; a batch that ends inside an image; every image in one batch
        out = tmp_path / f"b{batch}"
        code, _, err = run_cli(["predict", DATA / "val2017", "-w", ckpt, "--boxes", DET_JSON, "--batch-size", batch,
                                "--precision", "fp32", "--backend", "torch", "--no-vis", "--no-progress",
                                "--workers", "0", "--out", out], capsys)
        assert code == 0, err
        outs[batch] = (out / "predictions.json").read_bytes()
    assert len(json.loads(outs[1])) > 20
    assert outs[7] == outs[1] and outs[256] == outs[1]


def test_the_summary_names_the_faster_detector_when_detection_dominates():
    slow = SimpleNamespace(images=4, detector="torchvision", timings={"detect": 8.0, "pose": 1.0, "read": 0.1})
    line = detection_hint(slow)
    assert line.startswith("detection: 88 % of the time")
    mobilenet, ssd = line.index("--detector fasterrcnn-mobilenet-v3"), line.index("--detector ssdlite320-mobilenet-v3")
    assert mobilenet < ssd   # the smaller step first: it keeps more of the box AP
    assert f"box AP {zoo.DETECTOR_MOBILENET.ap:.1f}" in line and f"box AP {zoo.DETECTOR.ap:.1f}" in line
    light = SimpleNamespace(images=4, detector="torchvision", timings={"detect": 1.0, "pose": 3.0})
    assert detection_hint(light) == "detection: 25 % of the time"
    middle = SimpleNamespace(images=4, detector="fasterrcnn-mobilenet-v3", timings={"detect": 8.0, "pose": 1.0})
    assert "--detector ssdlite320-mobilenet-v3" in detection_hint(middle) and "fasterrcnn-r50" not in detection_hint(middle)
    fastest = SimpleNamespace(images=4, detector="ssdlite320-mobilenet-v3", timings={"detect": 8.0, "pose": 1.0})
    assert "--detector" not in detection_hint(fastest)
    assert detection_hint(SimpleNamespace(images=3, detector="boxes", timings={"detect": 0.0, "pose": 1.0})) == ""
