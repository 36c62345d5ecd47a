"""The Python API is the CLI: `PosePredictor.predict(image, boxes).to_coco()` gives the records `frpose predict
IMAGE --boxes FILE` writes, with the same defaults (PredictOptions, their one place) and the same box filters."""
import inspect
import json
from pathlib import Path

import pytest

from frpose_cli.data.geometry import LOW_SCORE
from frpose_cli.data.images import read_image
from frpose_cli.inference.predict import PosePredictor
from frpose_cli.inference.predict_options import PredictOptions
from helpers import run_cli

COCO = Path(__file__).parent / "data" / "coco"
IMAGE = COCO / "val2017" / "000000000785.jpg"
# The real detector's boxes (Simple Baselines' AP_H_56 file): 22 on this image, 20 of them scored under 0.3.
DETECTIONS = COCO / "person_detection_results" / "COCO_val2017_detections_AP_H_56_person_subset.json"


@pytest.fixture(scope="module")
def detections(tmp_path_factory) -> tuple[Path, list]:
    records = [r for r in json.loads(DETECTIONS.read_text()) if r["image_id"] == 785]
    path = tmp_path_factory.mktemp("boxes") / "det.json"
    path.write_text(json.dumps(records))
    return path, records


def test_predict_with_boxes_equals_the_cli_on_the_same_file(frpose_r18_checkpoint, detections, tmp_path, capsys):
    path, records = detections
    threshold = PredictOptions.det_thr
    low = sum(r["score"] < threshold for r in records)
    assert len(records) == 22 and 0 < low < len(records)   # the filter has boxes to drop, and boxes to keep
    out = tmp_path / "run"
    code, stdout, err = run_cli(["predict", IMAGE, "--boxes", path, "-w", frpose_r18_checkpoint, "--backend", "torch",
                                 "--precision", "fp32", "--no-vis", "--out", out, "--no-progress", "--workers", "0"],
                                capsys)
    assert code == 0, stdout + err
    written = json.loads((out / "predictions.json").read_text())
    counted = json.loads((out / "images.json").read_text())["boxes_dropped"]

    predictor = PosePredictor(str(frpose_r18_checkpoint), backend="torch", precision="fp32", log=None, progress=False)
    image, _ = read_image(IMAGE)
    boxes = [[*r["bbox"], r["score"]] for r in records]
    res = predictor.predict(image, boxes, file_name=IMAGE.name, image_id=785)
    assert json.loads(json.dumps(res.to_coco())) == written   # every record, field and value, in order
    assert res.dropped == {LOW_SCORE: low} == counted
    # Without the score filter the same call gives other poses: the equality above depends on it.
    unfiltered = predictor.predict(image, boxes, det_thr=0.0, file_name=IMAGE.name, image_id=785)
    assert len(unfiltered) > len(written) and unfiltered.dropped == {}


def test_the_api_takes_its_defaults_from_predict_options():
    """One place for each default: PosePredictor.predict's thresholds and batch are PredictOptions', as the
    CLI's are."""
    from frpose_cli.cli.predict import predict as cli_predict
    api = inspect.signature(PosePredictor.predict).parameters
    cli = inspect.signature(cli_predict).parameters
    for name in ("det_thr", "nms_thr", "batch_size"):
        assert api[name].default == getattr(PredictOptions, name) == cli[name].default.default, name
    assert cli["kpt_thr"].default.default == PredictOptions.kpt_thr
