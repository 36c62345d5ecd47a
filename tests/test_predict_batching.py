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
    m, nano = line.index("--detector rtmdet-m"), line.index("--detector rtmdet-nano")
    assert m < nano   # the most accurate of the faster detectors first
    assert f"person AP {zoo.DETECTOR_RTMDET_M.person_ap:.1f}" in line and f"box AP {zoo.DETECTOR.ap:.1f}" in line
    assert "ssdlite" not in line   # two suggestions at most
    light = SimpleNamespace(images=4, detector="torchvision", timings={"detect": 1.0, "pose": 3.0})
    assert detection_hint(light) == "detection: 25 % of the time"
    middle = SimpleNamespace(images=4, detector="ssdlite320-mobilenet-v3", timings={"detect": 8.0, "pose": 1.0})
    assert "--detector rtmdet-nano" in detection_hint(middle) and "fasterrcnn-r50" not in detection_hint(middle)
    fastest = SimpleNamespace(images=4, detector="rtmdet-nano", timings={"detect": 8.0, "pose": 1.0})
    assert "--detector" not in detection_hint(fastest)
    assert detection_hint(SimpleNamespace(images=3, detector="boxes", timings={"detect": 0.0, "pose": 1.0})) == ""
    # --overlap: the detector's own time is the helper's; the detect stage is only the main thread's wait
    beside = SimpleNamespace(images=4, detector="torchvision", overlapped=8.0, timings={"detect": 0.5, "pose": 1.5})
    assert detection_hint(beside).startswith("detection: 84 % of the time (in a helper thread beside the pose network)")
    assert "--detector rtmdet-m" in detection_hint(beside)


def test_detecting_the_next_image_meanwhile_writes_the_same_bytes(tmp_path, capsys):
    """--overlap (the detector one image ahead in a helper thread) on a folder of images and a video:
    predictions.json is the bytes of --no-overlap, images.json too but for the run's seconds."""
    import shutil
    import cv2
    from helpers import confident_random_mobilenet
    src = tmp_path / "src"
    src.mkdir()
    images = sorted((DATA / "val2017").glob("*.jpg"))[:2]   # two images and a two-frame video: both kinds, quickly
    for p in images:
        shutil.copy(p, src / p.name)
    frames = [cv2.resize(cv2.imread(str(p)), (160, 112)) for p in images]
    writer = cv2.VideoWriter(str(src / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 112))
    for f in frames:
        writer.write(f)
    writer.release()
    card = load_card("sbn-r18", (64, 32))
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "m.pt", randomised(card.build_model()), card)
    det = confident_random_mobilenet(tmp_path)
    outs = {}
    for flag, workers in (("--no-overlap", 0), ("--overlap", 0), ("--overlap", 1)):
        out = tmp_path / f"{flag}{workers}"
        code, stdout, err = run_cli(["predict", src, "-w", ckpt, "--detector", "fasterrcnn-mobilenet-v3",
                                     "--detector-weights", det, "--det-size", 256, "--precision", "fp32",
                                     "--backend", "torch", "--no-vis", "--no-progress", "--workers", workers,
                                     flag, "--batch-size", 32, "--out", out], capsys)
        assert code == 0, err
        assert ("the detector beside the pose network (--overlap)" in stdout) == (flag == "--overlap"), stdout
        images = json.loads((out / "images.json").read_text())
        for part in images["shards"]["parts"]:
            part.pop("seconds")
        outs[flag, workers] = [(out / "predictions.json").read_bytes(), images]
    first = outs["--no-overlap", 0]
    assert len(json.loads(first[0])) > 10 and any(r.get("frame") is not None for r in json.loads(first[0]))
    assert outs["--overlap", 0] == first and outs["--overlap", 1] == first


def test_detect_ahead_keeps_a_first_runs_trial_in_the_main_thread_and_the_source_order():
    import threading
    from frpose_cli.inference.detect_ahead import DetectAhead

    class Detector:   # on trial for its first two calls, as TorchvisionDetector deciding its set-up
        def __init__(self):
            self.calls, self.trial_model = [], "on trial"

        def __call__(self, item):
            self.calls.append((item, threading.current_thread().name))
            if len(self.calls) == 2:
                self.trial_model = None
            return item

    det = Detector()
    ahead = DetectAhead(det, "cpu", enabled=True)
    got = []
    for item, future in ahead.ahead(range(8), lambda e: e, lambda e: e != 5):   # item 5 needs no detection
        got.append(future.result()[0] if future is not None else (det(item) if item != 5 else None))
    ahead.close()
    assert got == [0, 1, 2, 3, 4, None, 6, 7]
    assert [item for item, _ in det.calls] == [0, 1, 2, 3, 4, 6, 7]   # one at a time, in source order
    threads = dict(det.calls)
    assert threads[0] == threads[1] == "MainThread"                       # the trial: nothing runs beside it
    assert all(threads[i].startswith("frpose-detect") for i in (2, 3, 4, 6, 7)) and ahead.helped == 5


def test_overlap_is_on_by_default_for_frposes_detector_networks_only():
    from frpose_cli.inference.detect_ahead import overlap_wanted
    from frpose_cli.inference.detectors import TorchvisionDetector, WholeImageDetector

    def users_own(item):   # a Python API callable may hold thread-bound state: main thread unless asked
        return None

    assert TorchvisionDetector.overlap_safe and overlap_wanted(None, TorchvisionDetector.__new__(TorchvisionDetector))
    assert not overlap_wanted(None, users_own) and overlap_wanted(True, users_own)
    assert not overlap_wanted(False, TorchvisionDetector.__new__(TorchvisionDetector))
    assert not overlap_wanted(True, WholeImageDetector())   # boxes found in the decode workers: no network
    # SSDlite on a CPU: too little detection to hide (docs/benchmarks.md); on unless it is SSDlite on a CPU
    for arch, device, want in (("ssdlite320-mobilenet-v3", "cpu", False), ("ssdlite320-mobilenet-v3", "cuda", True),
                               ("fasterrcnn-r50-fpn", "cpu", True), ("fasterrcnn-mobilenet-v3", "cpu", True)):
        det = TorchvisionDetector.__new__(TorchvisionDetector)
        det.arch, det.device = arch, torch.device(device)
        assert overlap_wanted(None, det) is want and overlap_wanted(True, det), (arch, device)
