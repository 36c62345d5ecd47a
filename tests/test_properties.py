"""Property-based tests (hypothesis) for the geometry, the codecs and every reader of user JSON:
invariants that must hold for any input, including the hostile ones."""
import json
from collections import Counter
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from frpose_cli.data.annotations import check_annotation_records
from frpose_cli.metrics.cocoeval import GroundTruth, load_ground_truth, validate_results
from frpose_cli.data.codecs import make_codec
from frpose_cli.inference.detectors import BoxFileDetector, clip_boxes
from frpose_cli.errors import FrposeError
from frpose_cli.data.geometry import box_to_center_scale, transform_points, warp_matrix
from frpose_cli.inference.run_folder import safe_relative

ANN = Path(__file__).parent / "data" / "coco" / "annotations" / "person_keypoints_val2017.json"
finite = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)
anything = st.one_of(st.floats(), st.integers(), st.text(max_size=5), st.booleans(), st.none())
json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-10, 10 ** 6), st.floats(),
                                     st.text(max_size=8)),
                           lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=10), inner,
                                                                                        max_size=6),
                           max_leaves=30)


@pytest.fixture(scope="module")
def gt() -> GroundTruth:
    return load_ground_truth(ANN)


# ---------------------------------------------------------------- geometry

@settings(max_examples=200, deadline=None)
@given(cx=finite, cy=finite, w=st.floats(1, 2000), h=st.floats(1, 2000), rot=st.floats(-180, 180),
       udp=st.booleans(), pts=st.lists(st.tuples(finite, finite), min_size=1, max_size=5))
def test_crop_transform_and_its_inverse_are_inverse(cx, cy, w, h, rot, udp, pts):
    center, scale, out = np.array([cx, cy]), np.array([w, h * 4 / 3]), (48, 64)
    fwd = warp_matrix(center, scale, rot, out, udp=udp)
    inv = warp_matrix(center, scale, rot, out, inv=True, udp=udp)
    pts = np.array(pts, np.float64)
    back = transform_points(transform_points(pts, fwd), inv)
    assert np.allclose(back, pts, atol=1e-6 * (1 + np.abs(pts).max() + max(w, h)))


@settings(max_examples=200, deadline=None)
@given(x=finite, y=finite, w=st.floats(0.5, 3000), h=st.floats(0.5, 3000), aspect=st.floats(0.3, 3))
def test_the_crop_region_holds_the_box_at_the_crop_aspect(x, y, w, h, aspect):
    c, s = box_to_center_scale([x, y, w, h], aspect)   # float32, as crops are cut
    assert s[0] >= w * 1.25 * (1 - 1e-6) and s[1] >= h * 1.25 * (1 - 1e-6)   # the box is never cut
    assert s[0] / s[1] == pytest.approx(aspect, rel=1e-6)                     # and keeps the crop's aspect
    assert c == pytest.approx([x + w / 2, y + h / 2], rel=1e-6, abs=1e-3)


# ---------------------------------------------------------------- codecs

@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(["sbn", "dark", "udp", "dark-clip", "udp-clip"]), stride=st.sampled_from([1, 4]),
       fx=st.floats(0, 1), fy=st.floats(0, 1))
def test_a_decoded_encoding_lands_where_the_keypoint_was(name, stride, fx, fy):
    """Away from the border (whose truncated Gaussian biases any sub-pixel estimate, see docs/training.md)."""
    h, w = 128, 96
    sigma = 2.0 if stride == 4 else 3.0
    margin = 3 * sigma * stride + stride   # the whole 3σ window inside the map
    codec = make_codec(name, (h, w), stride, sigma)
    point = np.array([[margin + fx * (w - 1 - 2 * margin), margin + fy * (h - 1 - 2 * margin)]], np.float32)
    heat, weight = codec.encode(point, np.ones(1, np.float32))
    assert weight.ravel()[0] == 1 and heat.max() == pytest.approx(1.0, abs=0.2)
    decoded, score = codec.decode(heat[None])
    err = float(np.linalg.norm(decoded[0, 0] - point[0]))
    # sbn puts the Gaussian on a whole heatmap pixel and steps a quarter pixel: within 3/4 of one heatmap pixel
    bound = stride * 0.75 if name == "sbn" else 0.05
    assert err <= bound, (name, stride, err)
    assert 0 < float(score[0, 0]) <= 1.0 + 1e-6


# ---------------------------------------------------------------- JSON readers

@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=json_values)
def test_any_results_json_is_validated_or_refused_in_one_line(gt, entries):
    try:
        kept = validate_results(entries, gt)
    except FrposeError as e:
        assert "\n" not in str(e)
        return
    for r in kept.results:   # what survives is exactly what COCOeval can use
        assert r["image_id"] in gt.image_ids and len(r["keypoints"]) == 51
        assert all(np.isfinite(r["keypoints"])) and np.isfinite(r["score"])
    assert len(kept.results) + sum(kept.skipped.values()) == len(entries)


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(["id", "image_id", "keypoints", "bbox", "category_id", "area"]), value=json_values,
       which=st.integers(0, 11))
def test_any_broken_annotation_record_is_named_or_accepted(field, value, which):
    data = json.loads(ANN.read_text())
    ann = data["annotations"][which % len(data["annotations"])]
    ann[field] = value
    cat = data["categories"][0]
    try:
        ids = check_annotation_records(data, cat, "annotation file a.json")
    except FrposeError as e:
        assert "\n" not in str(e) and str(e).startswith("annotation file a.json: annotation")
        return
    assert ann["image_id"] in ids   # accepted: it is usable as it stands
    if ann.get("category_id", 1) == 1 and "keypoints" in ann:
        assert len(ann["keypoints"]) == 51 and "num_keypoints" in ann


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=json_values)
def test_any_boxes_file_is_read_or_refused_in_one_line(tmp_path, content):
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(content))
    try:
        det = BoxFileDetector(path)
    except FrposeError as e:
        assert "\n" not in str(e)
        return
    boxes = det.boxes_for("000000000785.jpg")
    assert boxes.ndim == 2 and boxes.shape[1] == 5


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.tuples(st.floats(), st.floats(), st.floats(), st.floats(), st.floats(0, 1)), max_size=8),
       width=st.integers(1, 500), height=st.integers(1, 500))
def test_clipped_boxes_are_inside_the_image_and_every_drop_is_counted(rows, width, height):
    dropped = Counter()
    boxes = np.array(rows, np.float64).reshape(-1, 5)
    kept = clip_boxes(boxes, width, height, dropped=dropped)
    assert len(kept) + sum(dropped.values()) == len(rows)
    assert np.isfinite(kept).all()
    assert (kept[:, 0] >= 0).all() and (kept[:, 1] >= 0).all()
    assert (kept[:, 0] + kept[:, 2] <= width + 1e-3).all() and (kept[:, 1] + kept[:, 3] <= height + 1e-3).all()
    assert (kept[:, 2] >= 1).all() and (kept[:, 3] >= 1).all()


@settings(max_examples=300, deadline=None)
@given(name=st.lists(st.sampled_from(["a", "b", ".", "..", "/", "\\", ":", "C:", "~", " "]), max_size=12).map("".join))
def test_names_written_under_a_run_folder_stay_inside_it(tmp_path_factory, name):
    rel = safe_relative(name)
    assert not rel.is_absolute() and ".." not in rel.parts and str(rel) not in ("", ".")
    root = Path("/tmp/frpose-run")
    assert (root / rel).resolve().is_relative_to(root)
    assert isinstance(rel, PurePosixPath)
