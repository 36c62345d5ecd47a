"""Flip test: mirrored inputs give mirrored keypoints, and the heatmap shift is the right one per stride."""
import numpy as np
import pytest
import torch

from frpose_cli.data.codecs import make_codec
from frpose_cli.runtime.topdown import (decode_to_image, flip_back, flip_shift, flip_shift_for_codec,
                                        run_heatmaps, shift_heatmaps_x)

SIZE = (128, 96)


def test_shift_derivation_per_codec_and_stride():
    # Sub-pixel codec: exactly 1 - 1/stride.
    assert flip_shift_for_codec(make_codec("dark", SIZE, 4, 2.0)) == pytest.approx(0.75)
    assert flip_shift_for_codec(make_codec("dark", SIZE, 2, 4.0)) == pytest.approx(0.5)
    assert flip_shift_for_codec(make_codec("dark", SIZE, 1, 8.0)) == 0.0
    # SBN's integer-centred targets: rounded half up (SBN's one pixel at stride 4; none at stride 1).
    assert flip_shift_for_codec(make_codec("sbn", SIZE, 4, 2.0)) == 1.0
    assert flip_shift_for_codec(make_codec("sbn", SIZE, 1, 8.0)) == 0.0
    for stride in (1, 2, 4):
        assert flip_shift_for_codec(make_codec("udp", SIZE, stride, 2.0)) == 0.0
        assert flip_shift(stride) == flip_shift_for_codec(make_codec("dark", SIZE, stride, 2.0))


def test_integer_shift_is_simple_baselines_column_copy():
    h = torch.rand(2, 3, 5, 7)
    ref = h.clone()
    ref[..., 1:] = h[..., :-1]          # SBN: output_flipped[:, :, :, 1:] = output_flipped[:, :, :, :-1]
    assert torch.equal(shift_heatmaps_x(h, 1.0), ref)
    half = shift_heatmaps_x(h, 0.5)
    assert torch.allclose(half[..., 1:], 0.5 * (h[..., 1:] + h[..., :-1]))
    assert torch.equal(shift_heatmaps_x(h, 0.0), h)


class DotFinder(torch.nn.Module):
    """A stand-in network that is exactly right: it finds two bright dots in channel 0 and
    renders the codec's target heatmaps for them (keypoint 0 = the left dot, 1 = the right one)."""

    def __init__(self, codec):
        super().__init__()
        self.codec = codec
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        kpts = []
        for img in x[:, 0]:
            ys, xs = torch.nonzero(img > 0.5, as_tuple=True)
            order = torch.argsort(xs)
            kpts.append(torch.stack([xs[order], ys[order]], -1).float())
        heat, _ = self.codec.encode_torch(torch.stack(kpts), torch.ones(len(kpts), 2))
        return heat


def _dot_images(n, size, rng):
    h, w = size
    images = torch.zeros(n, 3, h, w)
    truth = np.zeros((n, 2, 2), np.float32)
    for i in range(n):
        xl, xr = rng.integers(12, w // 2 - 4), rng.integers(w // 2 + 4, w - 12)
        yl, yr = rng.integers(12, h - 12, size=2)
        images[i, 0, yl, xl] = images[i, 0, yr, xr] = 1.0
        truth[i] = [[xl, yl], [xr, yr]]
    return images, truth


@pytest.mark.parametrize("codec_name,stride,sigma,bound", [("dark", 4, 2.0, 0.1), ("dark", 1, 8.0, 0.1),
                                                             ("udp", 4, 2.0, 0.1), ("sbn", 4, 2.0, 1.0),
                                                             ("sbn", 1, 8.0, 0.01)])
def test_flip_test_with_derived_shift_recovers_positions(codec_name, stride, sigma, bound):
    """A network that is exactly right, flip-tested: the derived shift is the best of every shift on a
    quarter-pixel grid, and SBN's one pixel (or none) and half a pixel more are clearly worse. (sbn's
    own error at stride 4 is its whole-pixel quantisation, which the flip test cannot remove.)"""
    codec = make_codec(codec_name, SIZE, stride, sigma)
    model = DotFinder(codec)
    images, truth = _dot_images(24, SIZE, np.random.default_rng(1))

    def x_error(shift):
        heat = run_heatmaps(model, images, flip=True, flip_index=[1, 0], codec=codec, shift=shift)
        kpts, _ = codec.decode(heat)
        return float(np.abs(kpts[..., 0] - truth[..., 0]).mean())

    derived = flip_shift_for_codec(codec)
    err = x_error(derived)
    assert err < bound, f"flip test with the derived shift {derived} is off by {err:.3f} px"
    assert err <= min(x_error(s) for s in np.arange(0.0, 2.01, 0.25)) + 1e-6
    for wrong in (1.0 if derived != 1.0 else 0.0, derived + 0.5):
        assert x_error(wrong) > err + 0.2, wrong


def test_decode_to_image_inverts_the_crop():
    from frpose_cli.data.geometry import box_to_center_scale, transform_points, warp_matrix
    for name in ("sbn", "dark", "udp"):
        codec = make_codec(name, SIZE, 4, 2.0)
        center, scale = box_to_center_scale([100, 50, 80, 200], SIZE[1] / SIZE[0])
        pts_img = np.array([[120.0, 90.0], [150.0, 200.0]])
        M = warp_matrix(center, scale, 0, (SIZE[1], SIZE[0]), udp=codec.use_udp)
        heat, _ = codec.encode(transform_points(pts_img, M), np.ones(2))
        kpts, scores = decode_to_image(codec, heat[None], center[None], scale[None])
        # SBN rounds to a heatmap pixel (4 crop px = 4·scale/W image px): off by up to half of it
        tol = 0.5 * 4 * scale[0] / SIZE[1] + 1e-3 if name == "sbn" else 0.5
        np.testing.assert_allclose(kpts[0], pts_img, atol=tol)
        assert scores.min() > 0.9


def test_flip_back_swaps_joints_and_mirrors():
    h = torch.zeros(1, 3, 4, 6)
    h[0, 1, 2, 1] = 1.0   # joint 1 near the left edge
    out = flip_back(h, [0, 2, 1], shift=0.0)
    assert out[0, 2, 2, 4] == 1.0 and out.sum() == 1.0


def test_sbn_codec_rounded_shift_aligns_integer_centred_targets():
    """SBN's targets sit on whole heatmap pixels: with the rounded shift (1 at stride 4) the
    mirrored-back peak lands on the unflipped one, so the flip test decodes exactly as no flip."""
    codec = make_codec("sbn", SIZE, 4, 2.0)
    model = DotFinder(codec)
    images, truth = _dot_images(48, SIZE, np.random.default_rng(2))
    plain, _ = codec.decode(run_heatmaps(model, images, flip=False))

    def decoded(shift):
        return codec.decode(run_heatmaps(model, images, flip=True, flip_index=[1, 0], codec=codec, shift=shift))[0]

    assert flip_shift_for_codec(codec) == 1.0
    np.testing.assert_array_equal(decoded(None), plain)
    err = {s: np.abs(decoded(s)[..., 0] - truth[..., 0]).mean() for s in (0.0, 1.0)}
    assert err[1.0] + 1.0 < err[0.0]          # no shift: off by about a stride
