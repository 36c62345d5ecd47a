"""Crop geometry: box → centre/scale, affine matrices, crops and flips."""
import numpy as np
import pytest

from frpose_cli.data.geometry import (box_to_center_scale, crop_image, flip_points_in_crop, transform_points,
                                      warp_matrix)


def test_box_to_center_scale_keeps_aspect_and_pads():
    c, s = box_to_center_scale([10, 20, 30, 100], aspect_ratio=0.75)
    np.testing.assert_allclose(c, [25, 70])
    np.testing.assert_allclose(s, [75 * 1.25, 100 * 1.25])          # width grown to 0.75·h
    c, s = box_to_center_scale([0, 0, 200, 50], aspect_ratio=0.75, padding=1.0)
    np.testing.assert_allclose(s, [200, 200 / 0.75])                 # height grown, box never cut


@pytest.mark.parametrize("udp", [False, True])
def test_warp_matrix_centre_size_and_inverse(udp):
    center, scale, out = np.array([300.0, 200.0]), np.array([150.0, 200.0]), (48, 64)
    M = warp_matrix(center, scale, 0, out, udp=udp)
    mid = [(48 - 1) / 2, (64 - 1) / 2] if udp else [24, 32]
    np.testing.assert_allclose(transform_points(center, M), mid, atol=1e-9)
    # the region's left and right edges land on the crop's edges
    left, right = transform_points([[225.0, 200.0], [375.0, 200.0]], M)[:, 0]
    np.testing.assert_allclose(right - left, 47 if udp else 48, atol=1e-9)
    Minv = warp_matrix(center, scale, 17.0, out, inv=True, udp=udp)
    M17 = warp_matrix(center, scale, 17.0, out, udp=udp)
    pts = np.random.default_rng(0).uniform(0, 400, (10, 2))
    np.testing.assert_allclose(transform_points(transform_points(pts, M17), Minv), pts, atol=1e-9)


def test_positive_rotation_turns_content_counter_clockwise():
    center, scale = np.array([100.0, 100.0]), np.array([64.0, 64.0])
    M = warp_matrix(center, scale, 90, (64, 64))
    right_of_centre = transform_points([[120.0, 100.0]], M)[0]
    np.testing.assert_allclose(right_of_centre, [32, 32 - 20], atol=1e-9)  # now above the centre


@pytest.mark.parametrize("udp", [False, True])
def test_crop_puts_a_marked_pixel_where_transform_points_says(udp):
    img = np.zeros((240, 320, 3), np.uint8)
    img[101:104, 201:204] = 255                   # a 3×3 blob centred on pixel (202, 102)
    center, scale = np.array([180.0, 120.0]), np.array([120.0, 160.0])
    crop = crop_image(img, center, scale, 0, (120, 160), udp=udp)   # about 1:1
    ys, xs = np.nonzero(crop[..., 0].astype(float) > 0)
    w = crop[ys, xs, 0].astype(float)
    found = [np.average(xs, weights=w), np.average(ys, weights=w)]
    expect = transform_points([[202.0, 102.0]], warp_matrix(center, scale, 0, (120, 160), udp=udp))[0]
    np.testing.assert_allclose(found, expect, atol=0.05)
    assert crop.dtype == np.uint8 and crop.shape == (160, 120, 3)


def test_udp_crop_of_mirrored_image_is_mirrored_crop():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (90, 130, 3), dtype=np.uint8)
    center, scale = np.array([61.3, 40.7]), np.array([72.0, 96.0])
    crop = crop_image(img, center, scale, 0, (48, 64), udp=True)
    mirrored = crop_image(img[:, ::-1].copy(), np.array([130 - 1 - 61.3, 40.7]), scale, 0, (48, 64), udp=True)
    assert np.abs(mirrored[:, ::-1].astype(int) - crop.astype(int)).max() <= 1
    pts = np.array([[3.0, 5.0], [40.5, 7.0]])
    np.testing.assert_allclose(flip_points_in_crop(flip_points_in_crop(pts, 48), 48), pts)
    np.testing.assert_allclose(flip_points_in_crop(pts, 48)[:, 0], [44, 6.5])
