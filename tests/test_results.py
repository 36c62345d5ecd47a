"""The Python results object: the records and overlay it gives are the ones `frpose predict` writes."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from frpose_cli.cards import load_card
from frpose_cli.data.images import read_image
from frpose_cli.data.keypoints import COCO17
from frpose_cli.inference.results import Person, Results, predict_image
from frpose_cli.metrics.oks_nms import rescore
from helpers import randomised, run_cli

VAL = Path(__file__).parent / "data" / "coco" / "val2017"
IMAGE = VAL / "000000000785.jpg"   # 640×425, one person at about x 280..500
# The person's box, a near-duplicate (merged by OKS-NMS at 0.7) and one over the left edge (clipped).
BOXES = [[280.79, 44.73, 218.7, 346.68, 0.99], [283.6, 48.4, 208.1, 329.9, 0.5], [-20.0, 300.0, 150.0, 200.0, 0.6]]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from frpose_cli.weights.checkpoint import save_checkpoint
    card = load_card("sbn-r18", (64, 64))
    torch.manual_seed(0)
    model = randomised(card.build_model())
    torch.nn.init.constant_(model.final_layer.bias, 0.3)   # keypoint scores above rescore's 0.2: scores ≠ 0
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.pt", model, card)


def known(p=2, seed=0, frame=None):
    rng = np.random.default_rng(seed)
    kpts = (rng.random((p, 17, 2)) * [200, 300]).astype(np.float32)
    conf = rng.random((p, 17)).astype(np.float32)
    boxes = np.array([[10, 20, 100, 200, 0.9], [50, 60, 70, 80, 0.4]][:p], np.float32)
    return Results(boxes, kpts, conf, COCO17, file_name="a/b.jpg", frame=frame), kpts, conf, boxes


def test_to_coco_is_what_the_cli_writes(ckpt, tmp_path, capsys):
    from frpose_cli.inference.predict import PosePredictor
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([{"image_id": 785, "bbox": b[:4], "score": b[4], "category_id": 1} for b in BOXES]))
    out = tmp_path / "run"
    code, stdout, err = run_cli(["predict", IMAGE, "-w", ckpt, "--boxes", boxes, "--backend", "torch",
                                 "--nms-thr", "0.7", "--out", out, "--no-progress", "--workers", "0"], capsys)
    assert code == 0, stdout + err
    written = json.loads((out / "predictions.json").read_text())
    # The near-duplicate is merged by OKS-NMS (OKS ≈ 0.55 with this network), the rest kept best first.
    assert len(written) == 2 and {r["image_id"] for r in written} == {785} and written[0]["score"] > written[1]["score"] > 0

    image, _ = read_image(IMAGE)
    predictor = PosePredictor(str(ckpt), backend="torch", log=lambda *a: None, progress=False)
    found = predict_image(predictor, image, np.array(BOXES), nms_thr=0.7, file_name=IMAGE.name, image_id=785)
    assert found.to_coco() == written                      # every field, every value, the same order
    assert [list(r) for r in found.to_coco()] == [list(r) for r in written]   # key order too
    # The same from the arrays themselves: the network's (P, K, 3) poses of the clipped boxes, then OKS-NMS
    # (all three boxes in one batch, as the CLI ran them: a batch of another size may differ in the last bit).
    from frpose_cli.inference.detectors import clip_boxes
    clipped = clip_boxes(np.array(BOXES), 640, 425)
    assert clipped[2, 0] == 0.0                            # the third box clipped as --boxes clips it
    _, _, scales = predictor.crops(image, clipped)
    again = Results.from_poses(predictor(image, clipped), clipped, predictor.card.keypoints, file_name=IMAGE.name)
    again = again[again.nms_keep(scales[:, 0] * scales[:, 1], predictor.oks_sigmas, 0.7)]
    assert again.to_coco(image_id=785) == written
    # save() writes the overlay byte for byte as the CLI's vis/ (same drawing, same encoder).
    saved = found.save(tmp_path / "mine.jpg")
    assert saved.read_bytes() == (out / "vis" / IMAGE.name).read_bytes()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []   # no temp file left
    # With no boxes, the whole image is the person, as with --detector whole-image.
    whole = predict_image(predictor, image, file_name=IMAGE.name)
    assert len(whole) == 1 and whole.boxes[0].tolist() == [0, 0, 640, 425, 1.0]


def test_record_fields_and_values():
    res, kpts, conf, boxes = known()
    recs = res.to_coco()
    assert [list(r) for r in recs] == [["image_id", "file_name", "category_id", "keypoints", "score", "bbox",
                                        "box_score"]] * 2
    scores = rescore(boxes[:, 4], conf)
    for i, r in enumerate(recs):
        flat = np.concatenate([kpts[i], conf[i][:, None]], 1).reshape(-1)
        assert r["keypoints"] == [round(float(v), 2) for v in flat] and len(r["keypoints"]) == 51
        assert r["score"] == round(float(scores[i]), 5) and r["box_score"] == round(float(boxes[i, 4]), 5)
        assert r["bbox"] == [round(float(v), 2) for v in boxes[i, :4]]
        assert r["image_id"] is None and r["file_name"] == "a/b.jpg" and r["category_id"] == 1
    assert [r["image_id"] for r in res.to_coco(image_id=7)] == [7, 7]
    frames = known(frame=12)[0].to_coco()
    assert [r["frame"] for r in frames] == [12, 12] and list(frames[0])[-1] == "frame"
    # Given pose scores are kept, not recomputed.
    assert Results(boxes, kpts, conf, COCO17, [0.5, 0.25]).to_coco()[1]["score"] == 0.25


def test_accessors_and_repr():
    res, kpts, conf, boxes = known(frame=3)
    assert res.xy is res.keypoints and res.conf is res.keypoint_scores
    assert res.numpy().shape == (2, 17, 3) and np.array_equal(res.numpy()[..., 2], conf)
    assert res.xywh.tolist() == boxes[:, :4].tolist() and res.box_scores.tolist() == boxes[:, 4].tolist()
    assert res.xyxy[0].tolist() == [10, 20, 110, 220]
    assert res.names == COCO17.names and res.skeleton == COCO17.skeleton
    assert repr(res) == "Results('a/b.jpg', frame=3, persons=2, keypoints=17)"


def test_indexing():
    res, kpts, conf, boxes = known()
    person = res[1]
    assert isinstance(person, Person) and person.score == pytest.approx(res.scores[1])
    assert np.array_equal(person.keypoints, kpts[1]) and np.array_equal(res[-1].box, boxes[1])
    x, y, s = person["left_wrist"]
    k = COCO17.names.index("left_wrist")
    assert (x, y, s) == (float(kpts[1, k, 0]), float(kpts[1, k, 1]), float(conf[1, k]))
    with pytest.raises(KeyError, match="no keypoint 'tail'"):
        person["tail"]
    with pytest.raises(IndexError):
        res[2]
    for index in (slice(1, None), [1], np.array([False, True]), [False, True]):
        part = res[index]
        assert isinstance(part, Results) and len(part) == 1
        assert part.to_coco() == [res.to_coco()[1]]
    assert len(res[res.scores > 2]) == 0 and len(res[[]]) == 0
    assert [p.score for p in res] == [res[0].score, res[1].score]


def test_no_person():
    image = np.full((40, 30, 3), 7, np.uint8)
    for res in (Results(np.zeros((0, 5)), np.zeros((0, 17, 2)), np.zeros((0, 17)), COCO17, image=image),
                Results.from_poses(np.zeros((0, 0, 3)), [], COCO17, image=image),   # the loop's empty arrays
                Results.from_coco([], COCO17, image=image)):
        assert len(res) == 0 and res.to_coco() == [] and res.scores.shape == (0,) and res.numpy().shape == (0, 17, 3)
        assert np.array_equal(res.plot(), image) and res.plot() is not image
        assert res.orig_shape == (40, 30) and "persons=0" in repr(res)
    with pytest.raises(ValueError, match="boxes but"):
        Results(np.zeros((1, 5)), np.zeros((0, 17, 2)), np.zeros((0, 17)), COCO17)
    with pytest.raises(ValueError, match="keypoints: expected shape P×17×2"):
        Results(np.zeros((1, 5)), np.zeros((1, 16, 2)), np.zeros((1, 17)), COCO17)


def test_plot_draws_on_the_keypoints(tmp_path):
    res, kpts, conf, _ = known(p=1)
    conf[:] = 1.0
    res = Results(res.boxes, kpts, conf, COCO17)
    image = np.zeros((300, 200, 3), np.uint8)
    canvas = res.plot(image)
    assert canvas.shape == image.shape and canvas.dtype == np.uint8 and not image.any()   # input untouched
    for x, y in kpts[0]:
        assert canvas[round(float(y)), round(float(x))].any()
    assert not res.plot(image, kpt_thr=1.01, boxes=False).any()   # nothing above the threshold: nothing drawn
    with pytest.raises(ValueError, match="no image to draw on"):
        res.plot()
    path = Results(res.boxes, kpts, conf, COCO17, image=image).save(tmp_path / "o" / "x.png")
    assert np.array_equal(cv2.imread(str(path))[:, :, ::-1], canvas)   # PNG: lossless


finite = st.floats(-1e4, 1e4, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 4).flatmap(lambda p: st.tuples(
    st.lists(finite, min_size=p * 17 * 2, max_size=p * 17 * 2),
    st.lists(st.floats(0, 1, width=32), min_size=p * 17, max_size=p * 17),
    st.lists(st.floats(0, 1, width=32), min_size=p, max_size=p))))
def test_to_coco_round_trips(data):
    xy, conf, box_scores = data
    p = len(box_scores)
    kpts, conf = np.array(xy, np.float32).reshape(p, 17, 2), np.array(conf, np.float32).reshape(p, 17)
    boxes = np.concatenate([np.tile([1, 2, 3, 4], (p, 1)), np.array(box_scores).reshape(p, 1)], 1).astype(np.float32)
    res = Results(boxes, kpts, conf, COCO17, file_name="x.jpg", image_id=5)
    recs = res.to_coco()
    back = Results.from_coco(json.loads(json.dumps(recs)), COCO17)   # through JSON, as predictions.json is read
    assert len(back) == p and back.file_name == ("x.jpg" if p else None) and back.to_coco() == recs
    assert np.abs(back.keypoints - kpts).max(initial=0) <= 0.005 + 1e-3   # rounded to 0.01 px
    assert np.abs(back.keypoint_scores - conf).max(initial=0) <= 0.005 + 1e-6
    assert np.abs(back.scores - res.scores).max(initial=0) <= 5e-6 + 1e-9
