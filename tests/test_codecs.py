"""Heatmap codecs: encode → decode round trips on the real COCO annotations of tests/data."""
import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from frpose_cli.cards import load_card
from frpose_cli.data.codecs import codec_for_card, make_codec
from frpose_cli.errors import FrposeError
from frpose_cli.data.geometry import box_to_center_scale, transform_points, warp_matrix

ANN = Path(__file__).parent / "data" / "coco" / "annotations" / "person_keypoints_train2017.json"


@pytest.fixture(scope="module")
def people():
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(ANN))
    anns = [a for a in coco.anns.values() if a["num_keypoints"] > 0 and not a["iscrowd"]]
    assert len(anns) >= 10
    return [np.array(a["keypoints"], np.float32).reshape(-1, 3) for a in anns], [a["bbox"] for a in anns]


def round_trip(codec, people):
    """Crop-pixel errors of encode → decode for every labelled on-map joint, and a flag
    for joints at least 3σ (in input pixels) from the crop border."""
    h, w = codec.input_size
    errors, interior = [], []
    for kp, box in zip(*people):
        center, scale = box_to_center_scale(box, w / h)
        pts = transform_points(kp[:, :2], warp_matrix(center, scale, 0, (w, h), udp=codec.use_udp))
        heat, weight = codec.encode(pts, kp[:, 2])
        assert heat.shape == (17, *codec.heatmap_size) and heat.dtype == np.float32
        decoded, scores = codec.decode(heat[None])
        # joints whose rounded centre is on the map: those the heatmap can represent exactly
        centre = np.floor(codec.to_heatmap(pts) + 0.5)
        inside = ((centre >= 0) & (centre <= np.array(codec.heatmap_size[::-1]) - 1)).all(1)
        on = (weight > 0) & inside
        np.testing.assert_allclose(scores[0][on], heat.reshape(17, -1).max(1)[on])
        errors.append(np.linalg.norm(decoded[0] - pts, axis=1)[on])
        margin = 3 * codec.sigma * codec.stride
        interior.append(((pts > margin) & (pts < np.array([w, h]) - margin)).all(1)[on])
    return np.concatenate(errors), np.concatenate(interior)


# (codec, stride, σ at 256x192) → bounds on the mean crop-pixel error; the SBN scheme
# quantises centres to heatmap pixels (mean ≈ 0.38 heatmap px), DARK/UDP do not.
CASES = [("sbn", 1, 8.0, 0.25, 0.55), ("sbn", 4, 2.0, 1.0, 2.0),
         ("dark", 1, 8.0, 0.0, 0.05), ("dark", 4, 2.0, 0.0, 0.05),
         ("udp", 1, 8.0, 0.0, 0.05), ("udp", 4, 2.0, 0.0, 0.03)]


@pytest.mark.parametrize("name,stride,sigma,low,high", CASES)
def test_round_trip_error_on_real_annotations(people, name, stride, sigma, low, high):
    codec = make_codec(name, (256, 192), stride, sigma)
    errors, interior = round_trip(codec, people)
    assert len(errors) > 100
    assert low <= errors.mean() <= high, f"{name}/{stride}: mean error {errors.mean():.4f} px"
    if name == "sbn":   # at most half a heatmap pixel per axis, the ¼ step adds none for exact Gaussians
        assert errors.max() <= 0.5 * stride * np.sqrt(2) + 1e-4
    else:               # sub-pixel exact away from the border (the blur sees the cut-off Gaussian there)
        assert errors[interior].max() < 0.01


@pytest.mark.parametrize("name", ["sbn", "dark", "udp"])
@pytest.mark.parametrize("stride,size", [(1, (64, 48)), (4, (128, 96))])
def test_encode_torch_equals_encode(name, stride, size):
    codec = make_codec(name, size, stride, 2.0)
    rng = np.random.default_rng(3)
    kp = rng.uniform(-10, max(size) + 10, (3, 17, 2)).astype(np.float32)
    vis = rng.integers(0, 3, (3, 17))
    heat_t, weight_t = codec.encode_torch(torch.from_numpy(kp), torch.from_numpy(vis))
    for b in range(3):
        heat, weight = codec.encode(kp[b], vis[b])
        np.testing.assert_array_equal(weight_t[b].numpy(), weight)
        np.testing.assert_allclose(heat_t[b].numpy(), heat, atol=1e-6)
    assert 0 < weight_t.sum() < weight_t.numel()


def test_weights_zero_for_invisible_and_off_map_joints():
    codec = make_codec("dark", (64, 48), 1, 2.0)
    # off-map = more than 3σ (6 px) outside: x = -6.5 and x = 54.5 on a 48-wide map
    kp = np.array([[10.0, 10.0], [10.0, 10.0], [-6.5, 20.0], [47.4, 63.4], [54.5, 5.0]], np.float32)
    heat, weight = codec.encode(kp, np.array([2, 0, 2, 1, 2]))
    np.testing.assert_array_equal(weight, [1, 0, 0, 1, 0])
    assert heat[[1, 2, 4]].max() == 0 and heat[0].max() == pytest.approx(1.0)
    # a Gaussian of the stated σ: exp(-1/2) one σ away from an integer centre, 0 beyond 3σ
    assert heat[0, 10, 12] == pytest.approx(np.exp(-0.5), rel=1e-6)
    assert heat[0, 10, 17] == 0 and heat[0, 10, 16] > 0


def test_codec_for_card_follows_the_card():
    fr = codec_for_card(load_card("frpose-r18"))
    assert (fr.name, fr.stride, fr.sigma, fr.heatmap_size) == ("sbn", 1, 8.0, (256, 192))
    assert codec_for_card(load_card("frpose-r18", "384x288")).sigma == 12.0
    sbn = codec_for_card(load_card("sbn-r18"), "udp")
    assert (sbn.name, sbn.stride, sbn.sigma, sbn.heatmap_size, sbn.use_udp) == ("udp", 4, 2.0, (64, 48), True)
    with pytest.raises(FrposeError, match="unknown heatmap codec"):
        make_codec("nope", (64, 48), 1, 2.0)


def test_decode_accepts_tensors_and_reports_maxima():
    codec = make_codec("sbn", (64, 48), 4, 1.0)
    heat = torch.zeros(2, 17, 16, 12)
    heat[1, 3, 5, 7] = 0.8
    heat[1, 3, 5, 8] = 0.4                         # right neighbour higher → +¼ px in x
    kp, scores = codec.decode(heat)
    assert kp.shape == (2, 17, 2) and scores.shape == (2, 17)
    np.testing.assert_allclose(kp[1, 3], [(7 + 0.25) * 4, 5 * 4])
    assert scores[1, 3] == pytest.approx(0.8)


@pytest.mark.parametrize("stride", [1, 4])
def test_joints_just_off_the_map_keep_their_border_gaussian(stride):
    # SBN's rule: weight 1 while the 3σ window reaches the heatmap, 0 once it does not.
    codec = make_codec("sbn", (64, 48), stride, 2.0)
    reach = codec.truncate * codec.sigma * stride          # 3σ in input pixels
    pts = np.array([[-0.5 * reach, 10.0],                   # just left of the crop: window overlaps
                    [-2.0 * reach, 10.0],                   # far left: no overlap
                    [20.0, 64 + 0.5 * reach]], np.float32)  # just below the crop
    heat, weight = codec.encode(pts, np.ones(3))
    assert weight.tolist() == [1.0, 0.0, 1.0]
    assert heat[0, :, 0].max() > 0 and heat[1].max() == 0 and heat[2, -1, :].max() > 0
    heat_t, weight_t = codec.encode_torch(torch.from_numpy(pts)[None], torch.ones(1, 3))
    assert weight_t[0].tolist() == weight.tolist()
    np.testing.assert_allclose(heat_t[0].numpy(), heat, atol=1e-6)
