"""COCO top-down dataset on the real records of tests/data, plus deliberately broken data."""
import dataclasses
import json
import shutil
from pathlib import Path

import cv2
import numpy as np

import pytest
import torch

from frpose_cli.cards import load_card
from frpose_cli.data.codecs import codec_for_card
from frpose_cli.data.dataset import (NO_AUGMENT, Augment, CocoPoseDataset, detection_instances, gt_instances,
                                     keypoint_spec, load_coco)
from frpose_cli.errors import FrposeError
from frpose_cli.data.geometry import box_to_center_scale, crop_image, transform_points, warp_matrix

COCO_DIR = Path(__file__).parent / "data" / "coco"
TRAIN_ANN = COCO_DIR / "annotations" / "person_keypoints_train2017.json"
VAL_ANN = COCO_DIR / "annotations" / "person_keypoints_val2017.json"


@pytest.fixture(scope="module")
def card():
    return load_card("frpose-r18", "64x32")


def make(card, train, ann=TRAIN_ANN, images=COCO_DIR / "train2017", **kw):
    return CocoPoseDataset(ann, images, card, codec_for_card(card), train=train, **kw)


def test_gt_instances_filter_crowd_and_keypointless():
    raw = json.loads(TRAIN_ANN.read_text())["annotations"]
    inst = gt_instances(load_coco(TRAIN_ANN))
    assert len(inst) == sum(1 for a in raw if a["num_keypoints"] > 0 and not a["iscrowd"]) == 16
    assert inst.skipped["crowd"] == 1 and inst.skipped["no keypoints"] == 5
    assert all(i.keypoints.shape == (17, 3) and i.box[2] > 0 for i in inst)


def test_eval_sample_is_the_normalised_rgb_crop(card):
    ds = make(card, train=False)
    s = ds[3]
    inst = ds.instances[3]
    assert s["image"].shape == (3, 64, 32) and s["target"].shape == (17, 64, 32)
    center, scale = box_to_center_scale(inst.box, 32 / 64)
    bgr = cv2.imread(str(COCO_DIR / "train2017" / inst.file_name))
    rgb = crop_image(bgr, center, scale, 0, (32, 64))[..., ::-1].astype(np.float32) / 255
    mean, std = np.array(card.normalize["mean"]), np.array(card.normalize["std"])
    np.testing.assert_allclose(s["image"].numpy().transpose(1, 2, 0) * std + mean, rgb, atol=1e-5)
    kp = transform_points(inst.keypoints[:, :2], warp_matrix(center, scale, 0, (32, 64)))
    np.testing.assert_allclose(s["keypoints"].numpy(), kp, atol=1e-4)
    np.testing.assert_array_equal(s["visible"].numpy(), inst.keypoints[:, 2] > 0)
    assert s["rotation"] == 0 and not s["flipped"] and s["valid"] and s["image_id"] == inst.image_id
    assert 0 < s["target_weight"].sum() <= s["visible"].sum()


def test_augmentation_replays_per_seed_epoch_index(card):
    ds = make(card, train=True, seed=5)
    a, b = ds[2], ds[2]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["target"], b["target"])
    ds.set_epoch(1)
    draws = {(round(ds[i]["rotation"], 3), float(ds[i]["scale"][0])) for i in range(len(ds))}
    assert len(draws) > len(ds) // 2                       # different draws per index
    assert not torch.equal(ds[2]["image"], a["image"])     # and per epoch
    rots = [ds[i]["rotation"] for i in range(len(ds))]
    assert max(abs(r) for r in rots) <= 40


def test_flip_mirrors_image_and_swaps_left_right(card):
    plain = make(card, train=True, augment=NO_AUGMENT)
    flipped = make(card, train=True, augment=dataclasses.replace(NO_AUGMENT, flip=True, flip_prob=1.0))
    a, b = plain[0], flipped[0]
    assert b["flipped"] and not a["flipped"]
    torch.testing.assert_close(b["image"], a["image"].flip(-1))
    perm = card.keypoints.flip_index()
    names = card.keypoints.names
    assert names[perm[names.index("left_wrist")]] == "right_wrist"
    np.testing.assert_allclose(b["keypoints"][:, 0].numpy(), 31 - a["keypoints"][perm, 0].numpy(), atol=1e-4)
    np.testing.assert_array_equal(b["visible"].numpy(), a["visible"][perm].numpy())


def test_half_body_crops_part_of_the_person(card):
    full = make(card, train=True, augment=NO_AUGMENT)
    half = make(card, train=True, augment=dataclasses.replace(NO_AUGMENT, half_body=True, half_body_prob=1.0,
                                                  half_body_min_joints=8))
    changed = [i for i in range(len(full)) if not torch.equal(full[i]["scale"], half[i]["scale"])]
    eligible = [i for i, inst in enumerate(full.instances) if (inst.keypoints[:, 2] > 0).sum() > 8]
    assert changed and set(changed) <= set(eligible)


def test_device_targets_match_loader_targets(card):
    ds = make(card, train=True, build_targets=False)
    ref = make(card, train=True)
    s, r = ds[1], ref[1]
    assert s["target"].numel() == 0
    heat, weight = ds.codec.encode_torch(s["keypoints"][None], s["visible"][None])
    torch.testing.assert_close(heat[0], r["target"], atol=1e-6, rtol=0)
    torch.testing.assert_close(weight[0], r["target_weight"])


def test_detection_instances_use_person_boxes_above_threshold():
    coco = load_coco(VAL_ANN)
    det_file = COCO_DIR / "person_detection_results" / "COCO_val2017_detections_AP_H_56_person_subset.json"
    dets = json.loads(det_file.read_text())
    everything = detection_instances(coco, det_file)
    assert len(everything) + sum(everything.skipped.values()) == len(dets)
    strong = detection_instances(coco, dets, score_thr=0.5)
    assert len(strong) == sum(1 for d in dets if d["score"] >= 0.5) - strong.skipped["box outside image"]
    assert all(i.score >= 0.5 and i.keypoints.shape == (17, 3) for i in strong)
    with pytest.raises(FrposeError, match="not found"):
        detection_instances(coco, COCO_DIR / "nope.json")


@pytest.fixture()
def broken_coco(tmp_path):
    """tests/data train split with a missing image, a corrupt JPEG, a keypoint-less
    annotation and a box outside its image added."""
    root = tmp_path / "coco"
    shutil.copytree(COCO_DIR / "train2017", root / "train2017")
    data = json.loads(TRAIN_ANN.read_text())
    good = next(a for a in data["annotations"] if a["num_keypoints"] > 5 and not a["iscrowd"])
    img0 = next(i for i in data["images"] if i["id"] == good["image_id"])
    (root / "train2017" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    for new_id, name in ((1, "missing.jpg"), (2, "corrupt.jpg")):
        data["images"].append({**img0, "id": new_id, "file_name": name})
        data["annotations"].append({**good, "id": 900 + new_id, "image_id": new_id})
    data["annotations"].append({**good, "id": 903, "keypoints": [0] * 51, "num_keypoints": 0})
    data["annotations"].append({**good, "id": 904, "bbox": [5000, 5000, 40, 80]})
    ann = root / "annotations" / "person_keypoints_train2017.json"
    ann.parent.mkdir(parents=True)
    ann.write_text(json.dumps(data))
    return ann, root / "train2017"


def test_bad_data_is_skipped_and_counted(card, broken_coco):
    ann, images = broken_coco
    ds = make(card, train=True, ann=ann, images=images)
    assert ds.skipped["missing image file"] == 1
    assert ds.skipped["box outside image"] == 1
    assert ds.skipped["no keypoints"] == 6
    samples = [ds[i] for i in range(len(ds))]                  # never raises
    bad = [s for s in samples if not s["valid"]]
    assert len(bad) == 1 and bad[0]["target_weight"].sum() == 0
    assert len(samples) == 17
    loader = torch.utils.data.DataLoader(ds, batch_size=6)
    assert sum(int((~b["valid"]).sum()) for b in loader) == 1   # collates with the flag


def test_keypoints_come_from_the_annotation_category(card, tmp_path):
    data = json.loads(TRAIN_ANN.read_text())
    keep = [0, 5, 6, 11, 12]                                   # nose, shoulders, hips
    cat = data["categories"][0]
    data["categories"] = [{**cat, "keypoints": [cat["keypoints"][i] for i in keep], "skeleton": [[2, 3]]}]
    for a in data["annotations"]:
        a["keypoints"] = [v for i in keep for v in a["keypoints"][3 * i:3 * i + 3]]
    ann = tmp_path / "five.json"
    ann.write_text(json.dumps(data))
    spec = keypoint_spec(load_coco(ann))
    assert spec.names == ("nose", "left_shoulder", "right_shoulder", "left_hip", "right_hip")
    assert spec.flip_pairs == ((1, 2), (3, 4)) and spec.skeleton == ((1, 2),)
    with pytest.raises(FrposeError, match="5 keypoints per person"):
        make(card, train=True, ann=ann)
    five = dataclasses.replace(card, keypoints=spec, arch=dataclasses.replace(card.arch, num_keypoints=5))
    s = make(five, train=True, ann=ann)[0]
    assert s["target"].shape == (5, 64, 32)


def test_scale_rotation_distributions_from_the_card(card, tmp_path):
    """uniform: inside the paper's ranges; clipped-normal (Simple Baselines): N(1, 0.3) clipped to
    the same scale range (a third of the draws land on its ends), rotation up to twice the factor."""
    draws = {}
    for dist in ("uniform", "clipped-normal"):
        ds = make(card, train=True, augment=dataclasses.replace(NO_AUGMENT, rotation=40.0, rotation_prob=0.6,
                                                                 scale=(0.7, 1.3), distribution=dist))
        inst = ds.instances[0]
        s, r = [], []
        for i in range(4000):
            _, sc, rot, _ = ds._draw(inst, np.zeros(2), np.ones(2), np.random.default_rng([0, 0, i]))
            s.append(sc[0])
            r.append(rot)
        draws[dist] = np.array(s), np.array(r)
    (su, ru), (sn, rn) = draws["uniform"], draws["clipped-normal"]
    for s in (su, sn):
        assert s.min() >= 0.7 and s.max() <= 1.3
    assert np.abs(ru).max() <= 40 and 40 < np.abs(rn).max() <= 80
    assert 0.5 < (ru != 0).mean() < 0.7 and 0.5 < (rn != 0).mean() < 0.7          # rotation with probability 0.6
    near_one = lambda s: (np.abs(s - 1) < 0.1).mean()                            # noqa: E731
    assert 0.23 < near_one(sn) < 0.29 < 0.31 < near_one(su) < 0.36     # N(1, 0.3): P(|z| < 1/3) = 0.26; U: 1/3
    ends = lambda s: np.isin(s, (0.7, 1.3)).mean()                               # noqa: E731
    assert 0.28 < ends(sn) < 0.35 and ends(su) == 0                              # P(|z| > 1) = 0.317
    # the card key, and a clear error for a wrong value
    data = card.to_dict()
    data["train"]["distribution"] = "gaussian"
    bad = tmp_path / "bad.yaml"
    import yaml
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(FrposeError, match="train.distribution"):
        Augment.from_card(load_card(str(bad)))
    assert Augment.from_card(card).distribution == "uniform"
