"""The Python API validates at its public boundary (issue 33): a wrong argument to ``PosePredictor``,
``Results``, ``load_pose_model`` or ``predict_stream`` is a ValueError or TypeError naming the argument,
never numpy's or OpenCV's error from deep inside; NaN and degenerate boxes are counted in
``Results.dropped`` as `frpose predict` counts them in images.json, never dropped without a word."""
import json
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from frpose_cli.cards import load_card
from frpose_cli.data.geometry import clip_boxes
from frpose_cli.data.keypoints import COCO17
from frpose_cli.errors import FrposeError
from frpose_cli.inference.predict import PosePredictor, predict_stream
from frpose_cli.inference.results import Results
from frpose_cli.load import load_pose_model

IMAGE = np.full((90, 120, 3), 127, np.uint8)   # H 90, W 120
GOOD_BOX = [10.0, 5.0, 40.0, 60.0, 0.9]
FIXTURE_SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def ckpt(sbn_r18_checkpoint):
    return sbn_r18_checkpoint


@pytest.fixture(scope="module")
def predictor(ckpt):
    return PosePredictor(str(ckpt), backend="torch", device="cpu", precision="fp32", log=None, progress=False)


def raises(kind, name, call, *args, **kwargs):
    """``call`` raises ``kind`` (also a FrposeError: the CLI prints it on one line) naming ``name``."""
    with pytest.raises(kind) as caught:
        call(*args, **kwargs)
    assert isinstance(caught.value, FrposeError), type(caught.value).__mro__
    assert name in str(caught.value), str(caught.value)
    return str(caught.value)


# -- images ---------------------------------------------------------------------------------------------
BAD_IMAGES = [
    (IMAGE.astype(np.float32), TypeError),            # float: would be normalised as near-black
    (IMAGE.astype(np.uint16), TypeError),
    (IMAGE.tolist(), TypeError),                      # not an array
    (IMAGE[..., 0], ValueError),                      # grey (H, W)
    (np.zeros((90, 120, 4), np.uint8), ValueError),   # RGBA
    (IMAGE[None], ValueError),                        # a batch (1, H, W, 3)
    (np.zeros((0, 120, 3), np.uint8), ValueError),    # empty
]


@pytest.mark.parametrize("image, kind", BAD_IMAGES, ids=["float32", "uint16", "list", "grey", "rgba", "4d", "empty"])
def test_image_rgb_must_be_uint8_hw3(predictor, image, kind):
    message = raises(kind, "image_rgb", predictor.predict, image, [GOOD_BOX])
    assert "(H, W, 3)" in message and "uint8" in message
    raises(kind, "image_rgb", predictor, image, [GOOD_BOX])


# -- boxes ----------------------------------------------------------------------------------------------
def test_a_3d_box_array_is_refused_not_flattened(predictor):
    """The tester's (1, 2, 5): two boxes in a wrong layout were flattened into one."""
    boxes = np.array([[GOOD_BOX, [50.0, 10.0, 30.0, 40.0, 0.8]]])
    assert "(1, 2, 5)" in raises(ValueError, "boxes", predictor.predict, IMAGE, boxes)
    raises(ValueError, "boxes", predictor, IMAGE, boxes)


@pytest.mark.parametrize("boxes, kind", [
    ([[1.0, 2.0, 30.0]], ValueError),                 # three columns: crashed in the box clipping
    (GOOD_BOX, ValueError),                           # one box without its list: [box]
    ([GOOD_BOX, GOOD_BOX[:3]], ValueError),           # ragged rows: numpy's "inhomogeneous shape"
    ([["a", "b", "c", "d"]], TypeError),
    (np.ones((2, 5), bool), TypeError),
    ([[None] * 5], TypeError),
])
def test_boxes_of_a_wrong_shape_or_type(predictor, boxes, kind):
    raises(kind, "boxes", predictor.predict, IMAGE, boxes)
    raises(kind, "boxes", predictor, IMAGE, boxes)


@FIXTURE_SETTINGS
@given(shape=st.lists(st.integers(0, 6), min_size=1, max_size=3), seed=st.integers(0, 2**16))
def test_box_shapes_property(predictor, shape, seed):
    """(M, 4) and (M, 5) run (every box inside the image gives one pose); any other shape is a
    ValueError naming ``boxes``: nothing is reshaped into boxes it was not."""
    rng = np.random.default_rng(seed)
    boxes = rng.uniform(1, 40, shape)     # every value a usable x, y, w, h or score inside the image
    valid = (len(shape) == 2 and shape[1] in (4, 5)) or (boxes.size == 0 and len(shape) == 1) \
        or (boxes.size == 0 and len(shape) == 2 and shape[1] in (4, 5))
    if not valid:
        raises(ValueError, "boxes", predictor.predict, IMAGE, boxes)
        return
    res = predictor.predict(IMAGE, boxes, nms_thr=1.0)
    assert len(res) == len(boxes) and res.dropped == {}
    assert predictor(IMAGE, boxes).shape == (len(boxes), 17, 3)


@pytest.mark.parametrize("empty", [[], np.zeros((0, 5)), np.zeros((0, 4), np.float32)], ids=["list", "0x5", "0x4"])
def test_no_boxes_is_no_person(predictor, empty):
    res = predictor.predict(IMAGE, empty)
    assert len(res) == 0 and res.dropped == {} and res.boxes.shape == (0, 5)
    assert predictor(IMAGE, empty).shape == (0, 17, 3)


def test_nan_and_degenerate_boxes_are_counted_as_the_cli_counts_them(predictor):
    boxes = np.array([GOOD_BOX, [np.nan, 1, 20, 20, 0.9], [5, 5, 20, np.inf, 0.9], [5, 5, 0, 20, 0.9],
                      [500, 500, 20, 20, 0.9], [119.5, 5, 20, 20, 0.9]])
    res = predictor.predict(IMAGE, boxes)
    assert len(res) == 1 and res.boxes[0].tolist() == pytest.approx(GOOD_BOX)
    assert res.dropped == {"non-finite values (NaN or inf)": 2, "zero or negative width/height": 1,
                           "outside the image": 1, "under 1 px once clipped to the image": 1}
    counted = Counter()   # the counter the CLI's detectors and box files fill for images.json
    clip_boxes(boxes, IMAGE.shape[1], IMAGE.shape[0], dropped=counted)
    assert res.dropped == dict(counted)
    assert "dropped=" in repr(res) and res[[0]].dropped == res.dropped   # kept with a subset of the persons
    assert predictor.predict(IMAGE, [GOOD_BOX]).dropped == {}
    assert "dropped" not in repr(predictor.predict(IMAGE, [GOOD_BOX]))


def test_call_refuses_boxes_it_cannot_crop(predictor):
    """``predictor(image, boxes)`` gives one pose per box: an unusable box is an error, not a gap."""
    assert "boxes[1]" in raises(ValueError, "boxes", predictor, IMAGE, [GOOD_BOX, [np.nan, 1, 20, 20, 0.9]])
    assert "boxes[0]" in raises(ValueError, "boxes", predictor, IMAGE, [[5, 5, 0, 20]])


def test_predict_stream_reports_dropped_boxes_too(ckpt, tmp_path):
    """The generator's Results carry the counts `frpose predict` writes into images.json."""
    import cv2
    cv2.imwrite(str(tmp_path / "a.png"), IMAGE)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([{"file_name": "a.png", "bbox": b[:4], "score": b[4], "category_id": 1}
                                 for b in (GOOD_BOX, [5, 5, 0, 20, 0.9])]))
    (res,) = list(predict_stream(tmp_path / "a.png", str(ckpt), boxes=str(boxes), backend="torch", device="cpu",
                                 precision="fp32", workers=0, flip=False))
    assert len(res) == 1 and res.dropped == {"zero or negative width/height": 1}


# -- the other arguments of predict ---------------------------------------------------------------------
@pytest.mark.parametrize("name, value, kind", [
    ("nms_thr", 1.5, ValueError), ("nms_thr", -0.1, ValueError), ("nms_thr", float("nan"), ValueError),
    ("nms_thr", "0.5", TypeError), ("nms_thr", True, TypeError), ("nms_thr", None, TypeError),
    ("batch_size", 0, ValueError), ("batch_size", 2.5, ValueError), ("batch_size", "8", TypeError),
    ("batch_size", True, TypeError),
])
def test_predict_options(predictor, name, value, kind):
    raises(kind, name, predictor.predict, IMAGE, [GOOD_BOX], **{name: value})
    raises(kind, name, predictor.predict, IMAGE, [], **{name: value})   # checked even with no crop to run


def test_numpy_scalars_are_numbers(predictor):
    res = predictor.predict(IMAGE, [GOOD_BOX], nms_thr=np.float32(0.5), batch_size=np.int64(2))
    assert len(res) == 1


# -- load_pose_model and PosePredictor ------------------------------------------------------------------
@pytest.mark.parametrize("name, value, kind", [
    ("weights", None, TypeError), ("weights", np.zeros(3), TypeError), ("weights", {"state_dict": {}}, TypeError),
    ("model_name", 18, TypeError),
    ("input_size", (64,), ValueError), ("input_size", (64, 64, 3), ValueError), ("input_size", (65, 64), ValueError),
    ("input_size", (0, 64), ValueError), ("input_size", (64.0, 64), TypeError), ("input_size", 64, TypeError),
    ("input_size", "64by64", ValueError), ("input_size", (4096, 64), ValueError),
    ("backend", "tensorflow", ValueError), ("backend", None, TypeError),
    ("device", 1.5, TypeError), ("device", "gpu7", ValueError),
    ("threads", 0, ValueError), ("threads", 1.5, ValueError), ("threads", "2", TypeError),
    ("precision", "fp64", ValueError), ("precision", 32, TypeError),
    ("setup", "turbo", ValueError),
    ("log", "stderr", TypeError),
])
def test_load_pose_model_arguments(ckpt, name, value, kind):
    args = {"weights": str(ckpt), "backend": "torch", "device": "cpu", "precision": "fp32", name: value}
    weights = args.pop("weights")
    message = raises(kind, "device" if name == "device" and value == "gpu7" else name, load_pose_model, weights,
                     **args)
    if name == "input_size" and kind is ValueError and value != (4096, 64) and len(value) == 2:
        assert "multiples of 32" in message or "HxW" in message


def test_load_pose_model_takes_the_sizes_the_cli_takes(ckpt):
    for size in ((64, 64), [64, 64], "64x64", (np.int64(64), 64)):
        assert load_pose_model(str(ckpt), input_size=size, backend="torch", device="cpu",
                               precision="fp32").card.input_size == (64, 64)


@pytest.mark.parametrize("name, value, kind", [
    ("flip", "no", TypeError), ("log", 3, TypeError), ("input_size", (100, 70), ValueError),
    ("model_name", ["sbn-r18"], TypeError), ("weights", 3, TypeError),
])
def test_pose_predictor_arguments(ckpt, name, value, kind):
    """Checked before the zoo's default weights are looked up (weights=None) or any file is read."""
    args = {"weights": None, "backend": "torch", "device": "cpu", "progress": False, name: value}
    raises(kind, name, PosePredictor, **args)


# -- Results --------------------------------------------------------------------------------------------
def record(i=0, k=17):
    return {"image_id": 1, "category_id": 1, "keypoints": [float(i)] * (3 * k), "score": 0.5,
            "bbox": [1.0, 2.0, 30.0, 40.0], "box_score": 0.9}


@settings(max_examples=40, deadline=None)
@given(count=st.integers(0, 120).filter(lambda n: n != 51), at=st.integers(0, 3), total=st.integers(1, 4))
def test_from_coco_names_the_record_with_a_wrong_keypoint_count(count, at, total):
    at = at % total
    records = [record(i) for i in range(total)]
    records[at]["keypoints"] = [1.0] * count
    message = raises(ValueError, "keypoints", Results.from_coco, records, COCO17)
    assert f"records[{at}]" in message and "51" in message and f"{count} values" in message


@pytest.mark.parametrize("change, field, kind", [
    (lambda r: r.pop("keypoints"), "keypoints", ValueError),
    (lambda r: r.pop("bbox"), "bbox", ValueError),
    (lambda r: r.pop("score"), "score", ValueError),
    (lambda r: r.update(bbox=[1, 2, 3]), "bbox", ValueError),
    (lambda r: r.update(score="high"), "score", ValueError),
    (lambda r: r.update(box_score=None), "box_score", ValueError),
    (lambda r: r.update(keypoints=[[0.0, 0.0, 1.0]] * 17), "keypoints", ValueError),
    (lambda r: r.update(keypoints_raw=[0.0] * 50), "keypoints_raw", ValueError),
])
def test_from_coco_names_the_record_and_field(change, field, kind):
    records = [record(0), record(1)]
    change(records[1])
    message = raises(kind, field, Results.from_coco, records, COCO17)
    assert "records[1]" in message


def test_from_coco_arguments():
    raises(TypeError, "records", Results.from_coco, record(), COCO17)            # one record, not a list
    raises(TypeError, "records[0]", Results.from_coco, [[1, 2, 3]], COCO17)
    raises(TypeError, "spec", Results.from_coco, [record()], load_card("sbn-r18"))   # a card, not its keypoints
    assert len(Results.from_coco([], COCO17)) == 0
    back = Results.from_coco([record(0), record(1)], COCO17)
    assert len(back) == 2 and back.to_coco(image_id=1)[1]["keypoints"] == record(1)["keypoints"]


def test_results_arrays_are_named():
    kpts, conf = np.zeros((2, 17, 2)), np.zeros((2, 17))
    raises(ValueError, "boxes", Results, [GOOD_BOX, GOOD_BOX[:2]], kpts, conf, COCO17)   # ragged
    raises(ValueError, "boxes", Results, [["a"] * 5] * 2, kpts, conf, COCO17)
    raises(ValueError, "keypoints", Results, [GOOD_BOX] * 2, np.zeros((2, 17, 3)), conf, COCO17)
    raises(TypeError, "spec", Results, [GOOD_BOX] * 2, kpts, conf, load_card("sbn-r18"))


# -- predict_stream -------------------------------------------------------------------------------------
def test_predict_stream_checks_its_options_at_the_call(tmp_path):
    """At the call, not at the first next(): nothing is read (the source does not even exist)."""
    missing = tmp_path / "none.jpg"
    message = raises(TypeError, "nms_threshold", predict_stream, missing, None, nms_threshold=0.5)
    assert "nms_thr" in message          # the options it does take are listed
    raises(TypeError, "log", predict_stream, missing, None, log="stderr")
    raises(TypeError, "detector", predict_stream, missing, None, detector="yolo")
    raises(ValueError, "nms_thr must be a number from 0 to 1 (got 3", predict_stream, missing, None, nms_thr=3)
