"""The `dark` and `udp` decoders against an independent reimplementation of the reference
algorithms (DARK: Zhang et al. 2020, eq. 2-4; UDP: Huang et al. 2020; finite differences and
blur as mmpose takes them), written here from the formulas in float64 over the whole map."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frpose_cli.data.codecs import make_codec
from frpose_cli.data.subpixel import blur_kernel_size, opencv_sigma, quarter_offset


def gaussian_kernel(taps):
    """OpenCV's kernel for σ = 0: σ from the tap count, normalised (taps > 7)."""
    s = 0.3 * ((taps - 1) * 0.5 - 1) + 0.8
    t = np.arange(taps) - taps // 2
    g = np.exp(-t * t / (2 * s * s))
    return g / g.sum()


def blur_zero_border(m, taps):
    """Separable 2-D convolution with zeros outside the map, rescaled to the map's maximum."""
    g, r = gaussian_kernel(taps), taps // 2
    p = np.pad(m.astype(np.float64), r)
    rows = np.array([np.convolve(row, g, "valid") for row in p])
    out = np.array([np.convolve(col, g, "valid") for col in rows.T]).T
    return out * (m.max() / out.max())


def reference_offset(m, taps, kind):
    """Newton step -H⁻¹∇ of the log of the blurred map at its argmax (heatmap pixels)."""
    h, w = m.shape
    y, x = np.unravel_index(np.argmax(m), m.shape)
    b = blur_zero_border(m, taps)
    if kind == "dark":
        if not (1 < x < w - 2 and 1 < y < h - 2):
            return np.array([x, y], float)
        L = np.log(np.maximum(b, 1e-10))
        f = lambda dx, dy: L[y + dy, x + dx]                                   # noqa: E731
        grad = np.array([f(1, 0) - f(-1, 0), f(0, 1) - f(0, -1)]) / 2
        hxx = (f(2, 0) - 2 * f(0, 0) + f(-2, 0)) / 4                            # step-2 second difference
        hyy = (f(0, 2) - 2 * f(0, 0) + f(0, -2)) / 4
        hxy = (f(1, 1) - f(1, -1) - f(-1, 1) + f(-1, -1)) / 4
        hess = np.array([[hxx, hxy], [hxy, hyy]])
    else:
        L = np.pad(np.log(np.clip(b, 1e-3, 50)), 1, mode="edge")
        f = lambda dx, dy: L[y + 1 + dy, x + 1 + dx]                           # noqa: E731
        grad = np.array([f(1, 0) - f(-1, 0), f(0, 1) - f(0, -1)]) / 2
        hxx = f(1, 0) - 2 * f(0, 0) + f(-1, 0)
        hyy = f(0, 1) - 2 * f(0, 0) + f(0, -1)
        hxy = (f(1, 1) - f(1, 0) - f(0, 1) + 2 * f(0, 0) - f(-1, 0) - f(0, -1) + f(-1, -1)) / 2
        hess = np.array([[hxx, hxy], [hxy, hyy]]) + np.finfo(np.float32).eps * np.eye(2)
    return np.array([x, y], float) - np.linalg.solve(hess, grad)


def blob_map(hw, centres, sigmas, weights, noise, rng):
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    m = sum(a * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
            for (cx, cy), s, a in zip(centres, sigmas, weights))
    return (m + noise * rng.standard_normal((h, w))).astype(np.float32)


CASES = [  # (codec, input size, stride, σ): SBN's stride 4, full resolution, 384x288 at stride 4
    ("dark", (64, 48), 4, 2.0), ("udp", (64, 48), 4, 2.0), ("dark", (96, 72), 4, 3.0),
    ("udp", (96, 72), 4, 3.0), ("dark", (64, 48), 1, 8.0), ("udp", (64, 48), 1, 8.0)]


@pytest.mark.parametrize("name,size,stride,sigma", CASES)
def test_reference_decoders_equal_the_formulas(name, size, stride, sigma):
    codec = make_codec(name, size, stride, sigma)
    hh, wh = codec.heatmap_size
    rng = np.random.default_rng(7)
    maps, expected = [], []
    for i in range(24):
        peak = 10 ** rng.uniform(-2.5, 0)            # low peaks: the clip floor of udp applies
        c1 = rng.uniform([-1, -1], [wh, hh])           # anywhere, border included
        c2 = rng.uniform([0, 0], [wh - 1, hh - 1])
        m = blob_map((hh, wh), [c1, c2], [sigma * rng.uniform(0.7, 1.4), sigma], [peak, 0.4 * peak],
                     0.003 * peak * (i % 2), rng)
        maps.append(m)
        expected.append(reference_offset(m, codec.blur_kernel, name))
    decoded, scores = codec.decode(np.stack(maps)[:, None])
    per_px = codec.from_heatmap(np.ones((1, 2)))[0]     # input px per heatmap px
    err = np.abs(decoded[:, 0] - np.stack(expected) * per_px).max()
    assert err < 1e-4, f"{name} stride {stride}: max |decoded - reference| = {err:.2e} px"
    np.testing.assert_array_equal(scores[:, 0], np.stack(maps).reshape(24, -1).max(1))


def test_blur_kernel_follows_the_opencv_rule():
    assert [blur_kernel_size(s) for s in (2, 3, 8, 12)] == [11, 17, 51, 77]   # mmpose: 11 (σ 2), 17 (σ 3)
    for s in (1.5, 2.0, 5.0, 12.0):
        k = blur_kernel_size(s)
        assert k % 2 == 1 and abs(opencv_sigma(k) - s) <= 0.15 + 1e-9


def test_clip_variant_bounds_the_step_where_the_reference_does_not():
    # two close blobs: the argmax sits on the weaker shoulder's saddle side, where the
    # unbounded Newton step jumps far; frpose's variant moves at most one pixel per axis
    size = (64, 48)
    m = blob_map((16, 12), [(5.0, 8.0), (7.6, 8.0)], [1.2, 1.2], [1.0, 0.97], 0, np.random.default_rng(0))
    heat = m[None, None]
    ref, _ = make_codec("dark", size, 4, 2.0).decode(heat)
    clip, _ = make_codec("dark-clip", size, 4, 2.0).decode(heat)
    argmax = np.array(np.unravel_index(np.argmax(m), m.shape)[::-1], float) * 4
    assert np.abs(clip[0, 0] - argmax).max() <= 4 + 1e-6
    assert not np.allclose(ref[0, 0], clip[0, 0], atol=1e-3)


@settings(max_examples=40, deadline=None)
@given(cx=st.floats(10.0, 14.0), cy=st.floats(10.0, 22.0), s=st.floats(1.5, 2.5))
def test_reference_dark_recovers_an_isolated_gaussian_centre(cx, cy, s):
    # a Gaussian blurred by a Gaussian stays Gaussian: its log is a quadratic, and the
    # step-2 Hessian of a quadratic is exact, so one Newton step lands on the centre
    # (up to the 11-tap truncation of the blur kernel); the centre is ≥ 3σ from the border
    m = blob_map((32, 24), [(cx, cy)], [s], [1.0], 0, np.random.default_rng(0))
    kp, _ = make_codec("dark", (128, 96), 4, 2.0).decode(m[None, None])
    np.testing.assert_allclose(kp[0, 0] / 4, [cx, cy], atol=0.01)


def test_quarter_offset_uses_simple_baselines_border_rule():
    hm = np.zeros((1, 4, 8, 8), np.float32)
    # maxima at x = 1 (not refined: SBN needs 1 < x), x = 2 (refined), y = 7 (last row, not refined)
    for k, (x, y) in enumerate([(1, 4), (2, 4), (4, 7), (4, 4)]):
        hm[0, k, y, x] = 1.0
        hm[0, k, y, min(x + 1, 7)] = 0.5
        hm[0, k, max(y - 1, 0), x] = 0.5
    coords = np.array([[[1, 4], [2, 4], [4, 7], [4, 4]]], np.float32)
    out = quarter_offset(hm, coords)
    np.testing.assert_array_equal(out[0], [[1, 4], [2.25, 3.75], [4, 7], [4.25, 3.75]])
    assert math.isclose(float(out.sum() - coords.sum()), 0.0)
