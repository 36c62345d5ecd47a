"""PoseTrack18 files (frpose_cli/tracking/posetrack.py) and `frpose eval` on them: the writer's
output as poseval reads it, the reader, ignore-region containment, the command line."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from frpose_cli.data.keypoints import COCO17_NAMES
from frpose_cli.errors import FrposeError
from frpose_cli.evaluation.posetrack_match import inside
from frpose_cli.tracking.posetrack import (MIN_SCORE, POSETRACK18_KEYPOINTS, POSEVAL_JOINTS, is_posetrack,
                                           posetrack_sequence, read_sequence, sequence_name, write_sequence)
from helpers import run_cli

DATA = Path(__file__).parent / "data" / "posetrack18"
GT, PRED, POSEVAL = DATA / "gt", DATA / "pred", DATA / "poseval"


def one_line_error(code, err, needle):
    assert code == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("frpose: error:")]
    assert len(lines) == 1 and needle in lines[0], err


@pytest.mark.parametrize("file_name,name", [
    ("clips/a.mp4", "a"), ("a.MOV", "a"), ("images/val/000342_mpii_test/000000.jpg", "000342_mpii_test"),
    ("/abs/frames/x_1/7.png", "x_1"), ("C:\\videos\\run 1\\f.jpg", "run 1")])
def test_sequence_name(file_name, name):
    assert sequence_name(file_name) == name


def test_sequence_name_rejects_what_names_no_sequence():
    with pytest.raises(ValueError, match="outside any folder"):
        sequence_name("000000.jpg")
    with pytest.raises(TypeError, match="file_name"):
        sequence_name(None)


def frpose_frames(names, seq="000342_mpii_test", n_frames=4, seed=0):
    """frpose-style records over ``n_frames`` frames: 3 tracked people each, one untracked."""
    rng = np.random.default_rng(seed)
    frames = []
    for t in range(n_frames):
        records = [{"keypoints": np.c_[rng.uniform(1, 600, (len(names), 2)), rng.uniform(0.01, 1, len(names))]
                    .reshape(-1).round(3).tolist(), "score": 0.9, "bbox": [1.0, 2.0, 30.0, 60.0], "track_id": k}
                   for k in (3, 0, 7)]
        records.append({**records[0], "track_id": -1})   # untracked: left out
        frames.append({"file_name": f"images/val/{seq}/{t:06d}.jpg", "frame": t, "width": 640, "height": 480,
                       "records": records})
    return frames


@pytest.mark.parametrize("names", [COCO17_NAMES, POSETRACK18_KEYPOINTS], ids=["coco", "posetrack"])
def test_writer_round_trip(tmp_path, names):
    frames = frpose_frames(names)
    path = write_sequence(tmp_path / "000342_mpii_test.json", posetrack_sequence("000342_mpii_test", frames, names))
    seq = read_sequence(path)
    assert seq.name == "000342_mpii_test" and len(seq.frames) == len(frames) and seq.scoreless == 0
    for frame, read in zip(frames, seq.frames):
        assert read.file_name == frame["file_name"]
        tracked = [r for r in frame["records"] if r["track_id"] >= 0]
        assert [p.track_id for p in read.people] == [r["track_id"] for r in tracked]
        for r, p in zip(tracked, read.people):
            kp = np.array(r["keypoints"]).reshape(-1, 3)
            for j, joint in enumerate(POSEVAL_JOINTS):
                if joint in names:   # mapped by name, position and score kept
                    assert p.present[j] and p.xy[j] == pytest.approx(kp[names.index(joint), :2], abs=1e-9)
                    assert p.scores[j] == pytest.approx(kp[names.index(joint), 2])
                else:                # a COCO model has no head_bottom / head_top: absent, not invented
                    assert not p.present[j] and joint in ("head_bottom", "head_top")


def test_writer_writes_what_poseval_reads():
    doc = posetrack_sequence("000342_mpii_test", frpose_frames(COCO17_NAMES, n_frames=2), COCO17_NAMES)
    assert doc["categories"][0]["name"] == "person" and doc["categories"][0]["keypoints"] == list(POSETRACK18_KEYPOINTS)
    im = doc["images"][1]   # PoseTrack18's image id: type 1 (mpii) · 10^10 + sequence · 10^4 + frame
    assert im["id"] == im["frame_id"] == 10003420001 and im["vid_id"] == "000342" and im["nframes"] == 2
    assert im["is_labeled"] is True and im["file_name"] == "images/val/000342_mpii_test/000001.jpg"
    ann = doc["annotations"][0]
    assert len(ann["keypoints"]) == 51 and len(ann["scores"]) == 17 and ann["image_id"] == 10003420000
    assert ann["id"] == 10003420000 * 100 and ann["track_id"] == 3 and ann["bbox"] == [1.0, 2.0, 30.0, 60.0]
    head = POSETRACK18_KEYPOINTS.index("head_top")
    assert ann["keypoints"][3 * head:3 * head + 3] == [0.0, 0.0, 0] and ann["scores"][head] == 0.0
    nose = POSETRACK18_KEYPOINTS.index("nose")
    assert ann["keypoints"][3 * nose + 2] == 1   # present: v = 1 whatever its score
    assert len(doc["annotations"]) == 2 * 3      # the untracked record left out
    bonn = posetrack_sequence("000017_bonn_train", [{**frpose_frames(COCO17_NAMES, "000017_bonn_train", 1)[0]}],
                              COCO17_NAMES)
    assert bonn["images"][0]["id"] == 2 * 10**10 + 17 * 10**4
    video = posetrack_sequence("a", [{"file_name": "clips/a.mp4", "frame": f, "width": 8, "height": 8,
                                      "records": []} for f in (12, None)], COCO17_NAMES)
    assert [im["id"] for im in video["images"]] == [12, 1]   # not a PoseTrack name: the frame number (or position)
    assert video["images"][0]["vid_id"] == "a" and not video["annotations"]


def test_writer_track_ids():
    frames = frpose_frames(COCO17_NAMES, n_frames=2)
    for f in frames:
        for r in f["records"]:
            r["track_id"] = r["track_id"] + 20000 if r["track_id"] >= 0 else -1
    doc = posetrack_sequence("s", frames, COCO17_NAMES)   # beyond poseval's 10000: 0, 1, … by first appearance
    assert [a["track_id"] for a in doc["annotations"]] == [0, 1, 2, 0, 1, 2]
    frames[1]["records"][1]["track_id"] = frames[1]["records"][0]["track_id"]
    with pytest.raises(ValueError, match=r"frames\[1\] has two records with one track_id"):
        posetrack_sequence("s", frames, COCO17_NAMES)
    del frames[0]["records"][0]["track_id"]
    with pytest.raises(ValueError, match=r"frames\[0\].records\[0\]"):
        posetrack_sequence("s", frames, COCO17_NAMES)


@pytest.mark.parametrize("args,error,needle", [
    (("", [], COCO17_NAMES), TypeError, "name"),
    (("s", "frames", COCO17_NAMES), TypeError, "frames"),
    (("s", [], ["left_eye", "tail"]), ValueError, "no PoseTrack18 keypoint"),
    (("s", [], ["nose", "nose"]), ValueError, "distinct"),
    (("s", [{"file_name": "a/0.jpg"}], COCO17_NAMES), ValueError, "must be a dict with"),
    (("s", [{"file_name": "a/0.jpg", "frame": 0, "width": 1, "height": 1,
             "records": [{"keypoints": [1.0] * 50, "track_id": 0}]}], COCO17_NAMES), ValueError, "51 finite numbers"),
])
def test_writer_checks_its_arguments(args, error, needle):
    with pytest.raises(error, match=needle):
        posetrack_sequence(*args)


def test_reader_parses_the_fixture():
    seq = read_sequence(GT / "990001_mpii_test.json")
    assert seq.name == "990001_mpii_test" and len(seq.frames) == 8
    assert [len(f.people) for f in seq.frames] == [3, 0, 5, 5, 4, 0, 5, 4]
    assert len(seq.frames[3].ignore_regions) == 1 and seq.frames[3].ignore_regions[0].shape == (4, 2)
    doc = json.loads((GT / "990001_mpii_test.json").read_text())
    ann = [a for a in doc["annotations"] if a["image_id"] == doc["images"][0]["id"]][1]
    kp = np.array(ann["keypoints"]).reshape(17, 3)
    p = seq.frames[0].people[1]
    for j, joint in enumerate(POSEVAL_JOINTS):
        k = POSETRACK18_KEYPOINTS.index(joint)
        assert p.present[j] == kp[k].any() and (not p.present[j] or (p.xy[j] == kp[k, :2]).all())
    x, y, w, h = ann["bbox_head"]
    assert p.head_box == (x, y, x + w, y + h) and p.track_id == ann["track_id"]
    assert (p.scores == MIN_SCORE).all()   # ground truth has no scores
    assert is_posetrack(doc)
    assert is_posetrack({"annolist": []}) and not is_posetrack({"images": [{"id": 1}], "annotations": []})


def test_reader_keeps_an_annotated_joint_flagged_invisible(tmp_path):
    doc = json.loads((GT / "990001_mpii_test.json").read_text())
    ann = next(a for a in doc["annotations"] if a["image_id"] % 100 == 0 and a["track_id"] == 1)
    k = POSETRACK18_KEYPOINTS.index("left_wrist")
    assert ann["keypoints"][3 * k + 2] == 0 and ann["keypoints"][3 * k] != 0   # the fixture's v = 0 joint
    person = next(p for p in read_sequence(GT / "990001_mpii_test.json").frames[0].people if p.track_id == 1)
    assert person.present[POSEVAL_JOINTS.index("left_wrist")]
    ann["keypoints"][3 * k:3 * k + 3] = [0, 0, 0]
    (tmp_path / "s.json").write_text(json.dumps(doc))
    person = next(p for p in read_sequence(tmp_path / "s.json").frames[0].people if p.track_id == 1)
    assert not person.present[POSEVAL_JOINTS.index("left_wrist")]


def _edited(tmp_path, edit):
    doc = json.loads((PRED / "990001_mpii_test.json").read_text())
    edit(doc)
    path = tmp_path / "990001_mpii_test.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("edit,needle", [
    (lambda d: d.pop("categories"), "needs 'images', 'annotations' and 'categories'"),
    (lambda d: d["categories"][0]["keypoints"].remove("head_top"), "PoseTrack's 15 joints"),
    (lambda d: d["annotations"][0]["keypoints"].pop(), "annotation 0 needs 51 keypoint values"),
    (lambda d: d["annotations"][0].update(track_id=10000), "annotation 0 track_id must be an integer"),
    (lambda d: d["annotations"][1].update(track_id="a"), "annotation 1 track_id"),
    (lambda d: d["annotations"][2].update(scores=[0.5] * 3), "annotation 2: 'scores' needs one score"),
    (lambda d: d["annotations"][0]["keypoints"].__setitem__(4, None), "must be a finite number"),
    (lambda d: d["images"][1].update(id=d["images"][0]["id"]), "occurs twice"),
    (lambda d: d["images"][1].update(file_name="images/val/123_mpii_test/000001.jpg"), "frames of 2 sequences"),
    (lambda d: d["images"][0].update(ignore_regions_x=[[1, 2, 3]]), "ignore_regions_x and _y"),
])
def test_reader_errors_are_one_line_naming_the_file(tmp_path, edit, needle):
    path = _edited(tmp_path, edit)
    with pytest.raises(FrposeError, match=needle) as e:
        read_sequence(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_posetrack17_reader_takes_the_first_point_of_an_id(tmp_path):
    points = [{"id": [13], "x": [5], "y": [6], "score": [0.5]}, {"id": [13], "x": [7], "y": [8]},
              {"id": [2], "x": [1], "y": [1]}]
    frame = {"image": [{"name": "s/000000.jpg"}], "annorect": [
        {"track_id": [4], "x1": [0], "y1": [0], "x2": [3], "y2": [4], "annopoints": [{"point": points}]}]}
    (tmp_path / "s.json").write_text(json.dumps({"annolist": [frame]}))
    p = read_sequence(tmp_path / "s.json").frames[0].people[0]
    assert p.xy[13].tolist() == [5, 6] and p.scores[13] == 0.5 and p.scores[2] == MIN_SCORE
    assert p.present.sum() == 2 and p.head_box == (0, 0, 3, 4) and p.track_id == 4


def test_reader_counts_what_poseval_skips_or_falls_back_on(tmp_path):
    def edit(d):
        d["annotations"][0]["image_id"] = 42
        d["annotations"][1]["scores"] = []
    seq = read_sequence(_edited(tmp_path, edit))
    assert seq.unmatched == 1 and seq.scoreless == 1
    assert (seq.frames[0].people[0].scores == MIN_SCORE).all()


# ---- ignore regions: shapely's Polygon.contains without shapely ----

SQUARE = [[0, 0], [10, 0], [10, 10], [0, 10]]
BOWTIE = [[0, 0], [10, 10], [10, 0], [0, 10]]
SPIRAL = [[0, 0], [10, 0], [10, 10], [2, 10], [2, 2], [8, 2], [8, 8], [4, 8], [4, -5], [0, -5]]


@pytest.mark.parametrize("polygon,point,contained", [   # shapely 2.2.0 (GEOS 3.14.1)'s answers
    (SQUARE, (5, 5), True), (SQUARE, (0, 5), False), (SQUARE, (10, 10), False), (SQUARE, (5, 0), False),
    (SQUARE, (11, 5), False), (BOWTIE, (5, 2), False), (BOWTIE, (2, 5), True), (BOWTIE, (8, 5), True),
    (BOWTIE, (5, 8), False), (BOWTIE, (5, 5), False), (SPIRAL, (3, 5), True), (SPIRAL, (6, 5), False),
    (SPIRAL, (9, 5), True), (SPIRAL, (3, -2), True), (SPIRAL, (5, 1), True),
    ([[0, 0], [1, 1], [2, 2]], (1, 1), False), ([[0, 0], [1, 1], [2, 2]], (1, 0), False), ([], (1, 1), False),
    ([[0, 0], [2, 2]], (1, 1), False), ([[1, 1]], (1, 1), False)])   # shapely fails on these two; poseval with it
def test_inside_agrees_with_shapely(polygon, point, contained):
    assert inside(polygon, [point]).tolist() == [contained]


def ray_casting(poly, p):
    """The textbook even-odd test (W. R. Franklin's pnpoly), valid off the boundary."""
    c, n = False, len(poly)
    for i in range(n):
        (xi, yi), (xj, yj) = poly[i], poly[i - 1]
        if (yi > p[1]) != (yj > p[1]) and p[0] < (xj - xi) * (p[1] - yi) / (yj - yi) + xi:
            c = not c
    return c


coords = st.integers(-20, 20)
polygons = st.lists(st.tuples(coords, coords), min_size=3, max_size=9)
quarters = st.integers(-84, 84).map(lambda v: v / 4)   # exact in float64, so the reference is exact too


@settings(max_examples=300, deadline=None)
@given(polygons, st.lists(st.tuples(quarters, quarters), min_size=1, max_size=8))
def test_inside_is_even_odd_off_the_boundary_and_false_on_it(poly, points):
    got = inside(poly, points)
    for p, g in zip(points, got):
        on_boundary = any(
            (b[0] - a[0]) * (p[1] - a[1]) == (b[1] - a[1]) * (p[0] - a[0])
            and min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])
            for a, b in zip(poly, poly[1:] + poly[:1]))
        assert g == (False if on_boundary else ray_casting(poly, p))
    edge_points = [((a[0] + b[0]) / 2, (a[1] + b[1]) / 2) for a, b in zip(poly, poly[1:] + poly[:1])] + list(poly)
    assert not inside(poly, edge_points).any()   # vertices and edge midpoints are on the boundary


# ---- `frpose eval` on PoseTrack files ----

def test_cli_prints_both_tables_and_writes_json(tmp_path, capsys):
    code, out, err = run_cli(["eval", "--ann", GT, "--results", PRED, "--json", tmp_path / "m.json"], capsys)
    assert code == 0, err
    poseval_ap = json.loads((POSEVAL / "total_AP_metrics.json").read_text())
    figures = json.loads((tmp_path / "m.json").read_text())
    assert figures["ap"][15] == pytest.approx(poseval_ap["ap"][15], abs=1e-6)
    assert "Average Precision (AP)" in out and "Multiple Object Tracking (MOT)" in out
    assert f"{poseval_ap['ap'][15]:.1f}" in out.split("Multiple")[0] and "3 sequences" in out
    assert "without keypoint scores" in err   # the fixture's person without scores is reported
    code, _, err = run_cli(["eval", "--ann", GT, "--results", PRED, "--json", tmp_path / "m.json"], capsys)
    one_line_error(code, err, "already exists")


def test_cli_one_file(capsys):
    code, out, err = run_cli(["eval", "--ann", GT / "990002_bonn_test.json", "--results", PRED], capsys)
    assert code == 0, err
    assert "1 sequence," in out


@pytest.fixture()
def copies(tmp_path):
    shutil.copytree(GT, tmp_path / "gt")
    shutil.copytree(PRED, tmp_path / "pred")
    return tmp_path / "gt", tmp_path / "pred"


def test_cli_missing_prediction_file(copies, capsys):
    gt, pred = copies
    (pred / "990002_bonn_test.json").unlink()
    code, _, err = run_cli(["eval", "--ann", gt, "--results", pred], capsys)
    one_line_error(code, err, "no prediction file")


def test_cli_malformed_json(copies, capsys):
    gt, pred = copies
    (pred / "990003_mpiinew_test.json").write_text('{"images": [')
    code, _, err = run_cli(["eval", "--ann", gt, "--results", pred], capsys)
    one_line_error(code, err, "is not valid JSON")


def test_cli_frame_count_mismatch(copies, capsys):
    gt, pred = copies
    doc = json.loads((pred / "990001_mpii_test.json").read_text())
    doc["images"].pop()
    (pred / "990001_mpii_test.json").write_text(json.dumps(doc))
    code, _, err = run_cli(["eval", "--ann", gt, "--results", pred], capsys)
    one_line_error(code, err, "7 frames, but")


def test_cli_one_track_id_twice_in_a_frame(copies, capsys):
    gt, pred = copies
    doc = json.loads((pred / "990001_mpii_test.json").read_text())
    doc["annotations"][1]["track_id"] = doc["annotations"][0]["track_id"]   # both in frame 0
    (pred / "990001_mpii_test.json").write_text(json.dumps(doc))
    code, _, err = run_cli(["eval", "--ann", gt, "--results", pred], capsys)
    one_line_error(code, err, "gives one track id to two people")


@pytest.mark.parametrize("args,needle", [
    (["--results", "missing-folder"], "no such file or folder"),
    ([], "give --results PRED"),
    (["--results", PRED / "990001_mpii_test.json"], "--results must be a folder"),
    (["--results", PRED, "--oracle"], "takes no MODEL"),
])
def test_cli_bad_arguments(capsys, args, needle):
    code, _, err = run_cli(["eval", "--ann", GT, *args], capsys)
    one_line_error(code, err, needle)
