"""One top-down engine (issue 20): predict with the ground-truth boxes, `eval --gt-boxes` and the
accuracy gate's float32 reference give the same keypoints for every person of the vendored data."""
import json

import numpy as np
import pytest
import torch

from frpose_cli.cards import load_card
from frpose_cli.data.codecs import codec_for_card
from frpose_cli.data.images import read_image
from frpose_cli.evaluation.evaluate import infer_poses, instances_for
from frpose_cli.inference.predict import PosePredictor
from frpose_cli.metrics.cocoeval import load_ground_truth
from frpose_cli.precision.crops import person_crops, split_paths
from frpose_cli.runtime.engine import TopDownEngine
from frpose_cli.precision.gate import keypoints_of
from frpose_cli.load import load_pose_model
from frpose_cli.weights.checkpoint import save_checkpoint
from helpers import randomised, run_cli

SIZE = (64, 48)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    card = load_card("sbn-r18", SIZE)
    return save_checkpoint(tmp_path_factory.mktemp("engine") / "m.pt", randomised(card.build_model()), card)


def _by_image(records) -> dict:
    out = {}
    for r in records:
        out.setdefault(r["image_id"], []).append(np.asarray(r["keypoints"], np.float64).reshape(-1, 3)[:, :2])
    return out


def _max_mismatch(a: dict, b: dict) -> float:
    """Largest distance (px) from any person of ``a`` to the nearest of ``b`` in its image; inf when
    the images or the person counts differ."""
    if set(a) != set(b) or any(len(a[i]) != len(b[i]) for i in a):
        return float("inf")
    worst = 0.0
    for image_id, people in a.items():
        for kp in people:
            worst = max(worst, min(float(np.abs(kp - other).max()) for other in b[image_id]))
    return worst


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_predict_eval_and_gate_give_the_same_keypoints(checkpoint, coco_root, tmp_path, capsys, backend):
    ann, images = split_paths(coco_root, "val2017")
    gt = load_ground_truth(ann)
    people = instances_for(gt)                      # the ground-truth boxes eval --gt-boxes crops
    model = load_pose_model(checkpoint, backend=backend, precision="fp32", device="cpu")
    raw = infer_poses(model, model.card, ann, images, people, list(range(len(people))), gt,
                      codec_for_card(model.card, model.codec_name), True, 32, 0, None, None, False)
    assert len(raw.keypoints) == len(people) >= 10

    # predict's Python path on the same boxes, image by image, in its own batches
    predictor = PosePredictor(str(checkpoint), backend=backend, precision="fp32", device="cpu", log=lambda *a: None)
    predicted = np.zeros_like(raw.keypoints)
    for image_id in sorted({p.image_id for p in people}):
        mine = [i for i, p in enumerate(people) if p.image_id == image_id]
        image, _ = read_image(images / people[mine[0]].file_name)
        predicted[mine] = predictor(image, np.array([people[i].box for i in mine]))[..., :2]
    assert float(np.abs(predicted - raw.keypoints).max()) <= 1e-4

    # the gate's float32 reference: the same engine on the same set-up
    crops = person_crops(model.card, ann, images, limit=None)
    _, gated, _ = keypoints_of(model, crops, model.card, codec_for_card(model.card, model.codec_name))
    order = {(p.image_id, tuple(np.round(p.box, 3))): i for i, p in enumerate(people)}
    index = [order[(a["image_id"], tuple(np.round(np.asarray(a["bbox"], np.float64), 3)))] for a in crops.annotations]
    assert len(index) == len(people) and float(np.abs(gated - raw.keypoints[index]).max()) <= 1e-4

    if backend != "torch":   # the verbs' files once (the backend's own path is checked above)
        return
    # and the two verbs' files, which round keypoints to 0.01 px (predict) and 0.001 px (eval)
    boxes = [{"image_id": p.image_id, "category_id": 1, "bbox": [float(v) for v in p.box], "score": 1.0}
             for p in people]
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    common = ["-w", checkpoint, "--backend", backend, "--precision", "fp32", "--no-progress"]
    code, _, err = run_cli(["predict", images, "--boxes", tmp_path / "boxes.json", "--det-thr", "0",
                            "--out", tmp_path / "p", "--no-vis", *common], capsys)
    assert code == 0, err
    code, _, err = run_cli(["eval", "--data", coco_root, "--gt-boxes", "--out", tmp_path / "e.json",
                            "--workers", "0", *common], capsys)
    assert code == 0, err
    from_predict = json.loads((tmp_path / "p" / "predictions.json").read_text())
    from_eval = json.loads((tmp_path / "e.json").read_text())
    assert len(from_predict) == len(from_eval) >= 10
    assert _max_mismatch(_by_image(from_predict), _by_image(from_eval)) <= 0.005 + 0.0005 + 1e-6


def test_the_engine_feeds_bgr_weights_bgr_and_chunks_without_changing_results(checkpoint, coco_root):
    model = load_pose_model(checkpoint, backend="torch", precision="fp32", device="cpu", setup="eager")
    crops = person_crops(model.card, *split_paths(coco_root, "val2017"), limit=None).crops
    one = TopDownEngine(model, model.card, batch_size=len(crops)).heatmaps(crops)
    chunked = TopDownEngine(model, model.card, batch_size=3).heatmaps(crops)
    torch.testing.assert_close(chunked, one, atol=1e-5, rtol=1e-4)
    seen = []
    model.net.register_forward_pre_hook(lambda m, args: seen.append(args[0][:1, :, :2, :2].clone()))
    bgr_card = model.card.with_channel_order("bgr")
    TopDownEngine(model, model.card, flip=False, batch_size=1).heatmaps(crops[:1])
    TopDownEngine(model, bgr_card, flip=False, batch_size=1).heatmaps(crops[:1])
    rgb_in, bgr_in = seen
    mean, std = (torch.tensor(model.card.normalize[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    # mean/std apply by channel index in both orders (as the original SBN code did): only the pixels flip
    torch.testing.assert_close(rgb_in * std + mean, (bgr_in * std + mean).flip(1))
    assert not torch.allclose(rgb_in, bgr_in, atol=1e-3)
