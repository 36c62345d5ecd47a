"""frpose's RTMDet equals mmdet 3.3.0's own, on files and outputs mmdet itself made (tests/data/rtmdet-mmdet-3.3.0/,
PROVENANCE.md there): the letterbox byte for byte, the decoding on mmdet's own head outputs, and the whole
detector (network + decoding) from the published checkpoint layout to boxes within 1e-3 px."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from frpose_cli.data.images import read_image
from frpose_cli.inference.rtmdet_detector import DecodeConfig, RTMDetDetector, decode, letterbox

DATA = Path(__file__).parent / "data"
FIXTURE = DATA / "rtmdet-mmdet-3.3.0"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())
IMAGES = {name: DATA / "coco" / "val2017" / name for name in EXPECTED["images"]}
MODELS = {"rtmdet-nano-arch": "rtmdet-nano", "rtmdet-m-arch": "rtmdet-m"}


def expected(model: str, image: str):
    inst = EXPECTED["models"][model]["images"][image]["pred_instances"]
    return np.array(inst["bboxes"], np.float64).reshape(-1, 4), np.array(inst["scores"], np.float64)


def same_detections(boxes, scores, ref_boxes, ref_scores, px=1e-3, score_tol=1e-4) -> str:
    """'' when the two sets hold the same boxes (mmdet's order of two near-equal scores is float luck)."""
    if len(boxes) != len(ref_boxes):
        return f"{len(boxes)} boxes, mmdet {len(ref_boxes)}"
    gap = np.abs(np.asarray(boxes, np.float64)[:, None, :] - ref_boxes[None]).max(2)
    nearest = gap.argmin(1)
    if len(set(nearest.tolist())) != len(nearest) or gap.min(1).max() > px:
        return f"boxes differ by {gap.min(1).max():.5f} px"
    if np.abs(np.asarray(scores, np.float64) - ref_scores[nearest]).max() > score_tol:
        return "scores differ"
    return ""


@pytest.fixture(scope="module")
def detectors():
    return {m: RTMDetDetector(FIXTURE / EXPECTED["models"][m]["checkpoint"], arch=arch, score_thr=0.0)
            for m, arch in MODELS.items()}


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("image", list(IMAGES))
def test_the_letterbox_is_mmdets_byte_for_byte(model, image):
    info = EXPECTED["models"][model]["images"][image]
    size = info["metainfo"]["pad_shape"][0]
    canvas, scale = letterbox(read_image(IMAGES[image])[0], size)
    chw = np.ascontiguousarray(canvas.transpose(2, 0, 1))
    assert hashlib.sha256(chw.tobytes()).hexdigest() == info["resized_padded_uint8_chw"]["sha256"]
    assert scale == pytest.approx(tuple(info["metainfo"]["scale_factor"]), abs=1e-12)


def test_decoding_mmdets_own_head_outputs_gives_mmdets_boxes():
    model, image = "rtmdet-nano-arch", "000000000785.jpg"
    heads = np.load(FIXTURE / EXPECTED["models"][model]["images"][image]["heads_npz"])
    levels = [(torch.from_numpy(heads[f"cls_score_{i}"][0]), torch.from_numpy(heads[f"bbox_pred_{i}"][0]))
              for i in range(3)]
    scale = EXPECTED["models"][model]["images"][image]["metainfo"]["scale_factor"]
    boxes, scores, labels = decode(levels, scale, 320, 0.0, DecodeConfig())
    why = same_detections(boxes.numpy(), scores.numpy(), *expected(model, image), px=1e-4, score_tol=1e-6)
    assert not why, why
    assert (labels == 0).all()


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("image", list(IMAGES))
def test_the_detector_equals_mmdet_from_the_published_file(detectors, model, image):
    boxes, scores, _ = detectors[model].raw_detections([read_image(IMAGES[image])[0]])[0]
    why = same_detections(boxes.numpy(), scores.numpy(), *expected(model, image))
    assert not why, f"{model} on {image}: {why}"


def test_a_batch_equals_mmdets_list_call(detectors):
    """mmdet's list call runs the images one at a time; frpose runs them in one network batch, whose float32
    sums round differently (a few 1e-3 px after the letterbox's ×1.56 rescale): the same boxes within 5e-3 px."""
    for model in MODELS:
        call = EXPECTED["models"][model]["batch_call"]["pred_instances"]
        images = [read_image(IMAGES[name])[0] for name in IMAGES]
        for (boxes, scores, _), ref in zip(detectors[model].raw_detections(images), call):
            why = same_detections(boxes.numpy(), scores.numpy(), np.array(ref["bboxes"]).reshape(-1, 4),
                                  np.array(ref["scores"]), px=5e-3, score_tol=1e-3)
            assert not why, f"{model}: {why}"


def test_the_comparison_catches_a_channel_swap_and_a_wrong_key_map(detectors, tmp_path):
    """The parity above would fail on the two classic porting mistakes (785 has colour; 40083 is grey)."""
    image = read_image(IMAGES["000000000785.jpg"])[0]
    for model in MODELS:
        ref = expected(model, "000000000785.jpg")
        boxes, scores, _ = detectors[model].raw_detections([image[:, :, ::-1].copy()])[0]   # fed as the other order
        assert same_detections(boxes.numpy(), scores.numpy(), *ref), f"{model}: a BGR/RGB swap went unnoticed"
    ckpt = torch.load(FIXTURE / EXPECTED["models"]["rtmdet-m-arch"]["checkpoint"], weights_only=True)
    state = ckpt["state_dict"]
    a, b = "backbone.stage2.1.main_conv.conv.weight", "backbone.stage2.1.short_conv.conv.weight"
    state[a], state[b] = state[b].clone(), state[a].clone()   # two same-shaped tensors mapped to each other's place
    torch.save(ckpt, tmp_path / "swapped.pth")
    det = RTMDetDetector(tmp_path / "swapped.pth", arch="rtmdet-m", score_thr=0.0)
    boxes, scores, _ = det.raw_detections([image])[0]
    assert same_detections(boxes.numpy(), scores.numpy(), *expected("rtmdet-m-arch", "000000000785.jpg"))
