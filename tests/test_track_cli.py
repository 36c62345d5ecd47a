"""`frpose predict` on videos with tracking, end to end: ids, --det-every, per-frame box files (frpose's
JSON, MOT det.txt), smoothing, resume, frame folders, the Python generator, bad options.

The video is a real COCO image seen by a camera panning 4 px a frame; the people's boxes follow the
pan (ground truth).  The pose network's keypoints are replaced by an oracle (:func:`template_poses`):
a fixed standing pose laid out in the true box of the person a crop shows (the person whose box
overlaps the crop's most, in the frame being run), so what is tested is the loop, not a random
network: the poses follow the people as a trained network's would, and a crop that shows nobody
gives no confident keypoint."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from frpose_cli.cards import load_card
from frpose_cli.inference import predict as predict_core
from frpose_cli.inference.predict import PredictOptions, predict_stream, run_predict
from frpose_cli.tracking.tracker import iou_matrix
from helpers import run_cli

DATA = Path(__file__).parent / "data" / "coco"
IMAGE = DATA / "val2017" / "000000197388.jpg"
ANN = DATA / "annotations" / "person_keypoints_val2017.json"
SIZE, ASPECT = (128, 96), 96 / 128
FRAMES, STEP, WINDOW = 12, 4, (490, 388)   # frames, px per frame, (w, h)
# a standing person in [0.1, 0.9]² of its box: its keypoint box × 1.25 is the box again
TEMPLATE = np.array([[.5, .1], [.45, .12], [.55, .12], [.4, .14], [.6, .14], [.3, .3], [.7, .3], [.25, .45],
                     [.75, .45], [.2, .6], [.8, .6], [.38, .6], [.62, .6], [.38, .75], [.62, .75], [.38, .9],
                     [.62, .9]])
TEMPLATE = (TEMPLATE - TEMPLATE.min(0)) / (TEMPLATE.max(0) - TEMPLATE.min(0)) * 0.8 + 0.1


@pytest.fixture(scope="module")
def ckpt(frpose_r18_checkpoint):
    return frpose_r18_checkpoint


def people_boxes():
    """The image's people with ≥ 10 keypoints as boxes of the network's aspect ratio (same centre and height)."""
    data = json.loads(ANN.read_text())
    anns = [a for a in data["annotations"] if a["image_id"] == 197388 and a["num_keypoints"] >= 10]
    boxes = []
    for a in anns:
        x, y, w, h = a["bbox"]
        boxes.append([x + w / 2 - h * ASPECT / 2, y, h * ASPECT, h])
    return np.array(boxes)


@pytest.fixture(scope="module")
def panned(tmp_path_factory):
    """(video path, per-frame ground-truth boxes): the window starts at x0 and moves STEP px a frame."""
    folder = tmp_path_factory.mktemp("video")
    image = cv2.imread(str(IMAGE))
    boxes = people_boxes()
    x0, y0 = 100, 2
    inside = [(b[0] >= x0 + STEP * (FRAMES - 1) + 1 and b[0] + b[2] <= x0 + WINDOW[0] - 1 and b[1] >= y0
               and b[1] + b[3] <= y0 + WINDOW[1]) for b in boxes]
    boxes = boxes[np.array(inside)]
    assert len(boxes) == 3
    video = folder / "pan.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, WINDOW)
    truth = []
    for f in range(FRAMES):
        x = x0 + STEP * f
        writer.write(np.ascontiguousarray(image[y0:y0 + WINDOW[1], x:x + WINDOW[0]]))
        truth.append(boxes - [x, y0, 0, 0])
    writer.release()
    cap = cv2.VideoCapture(str(video))   # the frames as decoded: the oracle recognises them by their bytes
    decoded = {}
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        decoded[cv2.cvtColor(frame, cv2.COLOR_BGR2RGB).tobytes()] = len(decoded)
    cap.release()
    assert len(decoded) == FRAMES
    return video, truth, decoded


@pytest.fixture
def template_poses(monkeypatch, panned):
    """The network's poses: TEMPLATE in the true box of the person each crop shows, score 0.9, optionally
    jittered by ``state["jitter"]`` px; a crop overlapping no person by IoU 0.3 gives scores 0.01."""
    _, truth, decoded = panned
    state = {"jitter": 0.0, "frame": None}
    crops = predict_core.PosePredictor.crops

    def crops_of_frame(self, image, boxes):
        state["frame"] = decoded.get(np.ascontiguousarray(image).tobytes())
        return crops(self, image, boxes)

    def heatmaps(self, crops, batch_size=16):
        return torch.zeros((len(crops), 17, 1, 1))

    def decode(self, heatmaps, centers, scales):
        out = []
        for c, s in zip(centers, scales):
            w, h = s / 1.25
            w, h = (h * ASPECT, h) if w / h < ASPECT else (w, w / ASPECT)
            box = np.array([[c[0] - w / 2, c[1] - h / 2, w, h]])
            iou = iou_matrix(truth[state["frame"]], box)[:, 0] if state["frame"] is not None else np.zeros(1)
            person = truth[state["frame"]][iou.argmax()] if iou.max() >= 0.3 else box[0]
            # jitter drawn from the frame and the person: the same pose whichever run or order asks for it
            rng = np.random.default_rng([state["frame"] or 0, int(round(person[1])) % 10**6])
            xy = person[:2] + TEMPLATE * person[2:4] + rng.normal(0, state["jitter"], (17, 2))
            out.append(np.concatenate([xy, np.full((17, 1), 0.9 if iou.max() >= 0.3 else 0.01)], 1))
        return np.array(out, np.float32).reshape(-1, 17, 3)

    monkeypatch.setattr(predict_core.PosePredictor, "crops", crops_of_frame)
    monkeypatch.setattr(predict_core.PosePredictor, "heatmaps", heatmaps)
    monkeypatch.setattr(predict_core.PosePredictor, "decode", decode)
    return state


def frame_boxes_json(path, truth, every=1):
    frames = {str(f): [[*b, 0.9] for b in boxes] for f, boxes in enumerate(truth) if f % every == 0}
    path.write_text(json.dumps({"frames": frames}))
    return path


def by_frame(records):
    out = {}
    for r in records:
        out.setdefault(r["frame"], []).append(r)
    return out


def ids_follow_truth(records, truth, min_iou=0.9):
    """Each ground-truth person keeps one track id, different from the others'; returns the ids."""
    ids = {}
    for f, recs in by_frame(records).items():
        got = np.array([r["bbox"] for r in recs])
        iou = iou_matrix(truth[f], got)
        for person, row in enumerate(iou):
            best = int(row.argmax())
            assert row[best] >= min_iou, (f, person, row)
            ids.setdefault(person, set()).add(recs[best]["track_id"])
    assert all(len(v) == 1 for v in ids.values()), ids
    assert len({next(iter(v)) for v in ids.values()}) == len(truth[0])
    return ids


def predict_args(ckpt, source, out, *extra):
    # torch backend: no ONNX export at start-up (the network's output is the oracle's anyway)
    return ["predict", source, "-w", ckpt, "--out", out, "--no-progress", "--no-flip", "--workers", "0",
            "--backend", "torch", *extra]


def test_a_video_is_tracked_by_default_with_frames_and_timestamps(ckpt, panned, template_poses, tmp_path, capsys):
    video, truth, _ = panned
    out = tmp_path / "run"
    boxes = frame_boxes_json(tmp_path / "boxes.json", truth)
    code, stdout, err = run_cli(predict_args(ckpt, video, out, "--boxes", boxes), capsys)
    assert code == 0, stdout + err
    records = json.loads((out / "predictions.json").read_text())
    assert len(records) == FRAMES * len(truth[0])
    assert sorted(by_frame(records)) == list(range(FRAMES))
    for r in records:
        assert r["timestamp"] == pytest.approx(r["frame"] / 10, abs=1e-3)   # the container's clock, 10 fps
    ids_follow_truth(records, truth)
    assert f"tracking: {len(truth[0])} tracks over {FRAMES} frames, the detector on {FRAMES} of them" in stdout
    cap = cv2.VideoCapture(str(out / "vis" / "pan.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    cap.release()


def test_det_every_propagates_boxes_between_detections(ckpt, panned, template_poses, tmp_path, capsys):
    video, truth, _ = panned
    out = tmp_path / "run"
    boxes = frame_boxes_json(tmp_path / "boxes.json", truth)
    code, stdout, err = run_cli(predict_args(ckpt, video, out, "--boxes", boxes, "--det-every", "4"), capsys)
    assert code == 0, stdout + err
    records = json.loads((out / "predictions.json").read_text())
    assert len(records) == FRAMES * len(truth[0])
    ids_follow_truth(records, truth)
    assert f"the detector on {len(range(0, FRAMES, 4))} of them" in stdout


def test_mot_det_txt_drives_the_tracker_like_the_json(ckpt, panned, template_poses, tmp_path, capsys):
    video, truth, _ = panned
    lines = [f"{f + 1},-1,{b[0]:.3f},{b[1]:.3f},{b[2]:.3f},{b[3]:.3f},0.9,-1,-1,-1"
             for f, boxes in enumerate(truth) for b in boxes]
    (tmp_path / "det.txt").write_text("\n".join(lines) + "\n")
    for name, boxes in (("mot", tmp_path / "det.txt"), ("json", frame_boxes_json(tmp_path / "b.json", truth))):
        code, stdout, err = run_cli(predict_args(ckpt, video, tmp_path / name, "--boxes", boxes, "--no-vis"), capsys)
        assert code == 0, stdout + err
    mot = json.loads((tmp_path / "mot" / "predictions.json").read_text())
    js = json.loads((tmp_path / "json" / "predictions.json").read_text())
    assert [(r["frame"], r["track_id"], r["bbox"]) for r in mot] == [(r["frame"], r["track_id"], r["bbox"]) for r in js]


def test_no_track_gives_per_frame_records_and_images_are_untouched(ckpt, panned, template_poses, tmp_path, capsys):
    video, truth, _ = panned
    boxes = frame_boxes_json(tmp_path / "boxes.json", truth)
    code, _, _ = run_cli(predict_args(ckpt, video, tmp_path / "v", "--boxes", boxes, "--no-track", "--no-vis"), capsys)
    assert code == 0
    for r in json.loads((tmp_path / "v" / "predictions.json").read_text()):
        assert "track_id" not in r and "timestamp" not in r and "frame" in r
    images = DATA / "val2017"
    for name, extra in (("default", []), ("no-track", ["--no-track"])):
        code, _, _ = run_cli(predict_args(ckpt, images, tmp_path / name, "--detector", "whole-image", "--no-vis",
                                          *extra), capsys)
        assert code == 0
    default = (tmp_path / "default" / "predictions.json").read_bytes()
    assert default == (tmp_path / "no-track" / "predictions.json").read_bytes()
    for r in json.loads(default):
        assert set(r) == {"image_id", "file_name", "category_id", "keypoints", "score", "bbox", "box_score"}
    info = json.loads((tmp_path / "default" / "images.json").read_text())
    assert "tracking" not in info and all("sequence" not in im for im in info["images"])


def test_smooth_keeps_the_raw_keypoints_beside_the_smoothed_ones(ckpt, panned, template_poses, tmp_path, capsys):
    video, truth, _ = panned
    boxes = frame_boxes_json(tmp_path / "boxes.json", truth)
    template_poses["jitter"] = 3.0
    code, stdout, err = run_cli(predict_args(ckpt, video, tmp_path / "s", "--boxes", boxes, "--smooth", "--no-vis"),
                                capsys)
    assert code == 0, stdout + err
    records = json.loads((tmp_path / "s" / "predictions.json").read_text())
    raw = np.array([r["keypoints_raw"] for r in records]).reshape(len(records), 17, 3)
    smooth = np.array([r["keypoints"] for r in records]).reshape(len(records), 17, 3)
    assert np.array_equal(raw[..., 2], smooth[..., 2])
    first = [r["frame"] == 0 for r in records]
    assert np.allclose(raw[first], smooth[first])          # a track's first frame is its raw pose
    assert not np.allclose(raw[~np.array(first)], smooth[~np.array(first)])

    def accel(kp_by_track):
        return np.mean([np.abs(np.diff(k[..., :2], 2, axis=0)).mean() for k in kp_by_track])
    tracks = sorted({r["track_id"] for r in records})
    per = lambda values: [values[[r["track_id"] == t for r in records]] for t in tracks]   # noqa: E731
    assert accel(per(smooth)) < 0.6 * accel(per(raw))


@pytest.mark.parametrize("smoothing, logged", [({}, 7), ({"smooth": True}, 7), ({"smooth_offline": True}, 3)])
def test_an_interrupted_tracked_video_resumes_with_the_same_tracks(ckpt, panned, template_poses, tmp_path,
                                                                    monkeypatch, capsys, smoothing, logged):
    """Stopped while running frame 7 (between detections), then resumed: the same ids, boxes and (smoothed)
    keypoints as an uninterrupted run, to the logged values' rounding; --smooth-offline had logged only the
    frames it no longer held back (0-2), and its window reaches back into them."""
    video, truth, _ = panned
    template_poses["jitter"] = 2.0
    boxes = frame_boxes_json(tmp_path / "boxes.json", truth)
    whole = tmp_path / "whole"
    flags = [f"--{k.replace('_', '-')}" for k in smoothing]
    assert run_cli(predict_args(ckpt, video, whole, "--boxes", boxes, "--det-every", "3", "--no-vis", *flags),
                   capsys)[0] == 0
    out = tmp_path / "cut"
    opts = PredictOptions(source=str(video), weights=str(ckpt), boxes=str(boxes), det_every=3, out=str(out),
                          save_every=1, progress=False, flip=False, save_vis=False, workers=0, backend="torch",
                          **smoothing)
    decode = predict_core.PosePredictor.decode
    calls = []

    def decode_then_stop(self, *args):
        calls.append(1)
        if len(calls) == 8:   # frame 7: between detections, so the resumed run needs the tracks of frame 6
            raise KeyboardInterrupt
        return decode(self, *args)
    monkeypatch.setattr(predict_core.PosePredictor, "decode", decode_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_predict(opts)
    monkeypatch.setattr(predict_core.PosePredictor, "decode", decode)
    assert len(by_frame(json.loads((out / "predictions.json").read_text()))) == logged
    opts.resume = True
    summary = run_predict(opts)
    assert summary.resumed == logged and summary.images == FRAMES - logged
    # the same people with the same ids; what is carried over from a logged frame differs by its rounding (0.01 px)
    cut, ref = (json.loads((d / "predictions.json").read_text()) for d in (out, whole))
    assert [(r["frame"], r["track_id"]) for r in cut] == [(r["frame"], r["track_id"]) for r in ref]
    assert np.allclose([r["bbox"] for r in cut], [r["bbox"] for r in ref], atol=0.03)
    assert np.allclose([r["keypoints"] for r in cut], [r["keypoints"] for r in ref], atol=0.05)


def test_the_python_generator_yields_tracked_results(ckpt, panned, template_poses, tmp_path, monkeypatch):
    video, truth, _ = panned
    monkeypatch.chdir(tmp_path)
    boxes = frame_boxes_json(tmp_path / "boxes.json", truth)
    results = list(predict_stream(video, ckpt, boxes=str(boxes), det_every=2, flip=False, workers=0, backend="torch"))
    assert [r.frame for r in results] == list(range(FRAMES))
    assert all(len(r) == len(truth[0]) and sorted(r.track_ids) == list(range(len(truth[0]))) for r in results)
    assert results[3][0].track_id in range(len(truth[0])) and results[3].image.shape == (WINDOW[1], WINDOW[0], 3)
    assert not (tmp_path / "runs").exists()   # without save=True nothing is written
    gen = predict_stream(video, ckpt, boxes=str(boxes), flip=False, workers=0, backend="torch")
    assert next(gen).frame == 0
    gen.close()   # leaving early closes the video cleanly


@pytest.mark.parametrize("args, message", [
    (["--det-every", "0"], "--det-every 0: must be a whole number from 1 to 10000"),
    (["--det-every", "3", "--no-track"], "--det-every N > 1"),
    (["--det-thr", "-0.5"], "--det-thr -0.5: must be a number from 0 to 1"),
    (["--nms-thr", "1.5"], "--nms-thr 1.5: must be a number from 0 to 1"),
    (["--track-lifetime", "-1"], "--track-lifetime -1: must be a whole number from 0"),
    (["--smooth", "--no-track"], "--smooth filters each track"),
    (["--smooth-params", "1,2"], "--smooth-params '1,2': expected MIN_CUTOFF,BETA,D_CUTOFF"),
])
def test_bad_tracking_options_are_one_line(ckpt, panned, tmp_path, capsys, args, message):
    video, _, _ = panned
    code, _, err = run_cli(predict_args(ckpt, video, tmp_path / "never", *args), capsys)
    assert code == 2 and message in err.strip().splitlines()[-1] and "Traceback" not in err, err
    assert not (tmp_path / "never").exists()


def test_bad_box_files_for_videos_are_one_line(ckpt, panned, tmp_path, capsys):
    video, _, _ = panned
    cases = [("frames.json", '{"frames": {"x": []}}', "frame 'x' is not a frame number"),
             ("frames2.json", '{"frames": {"0": [[1, 2, 3]]}}', "a box is [x, y, w, h]"),
             ("det.txt", "1,-1,10,10,5\n", "line 1 is not a MOT detection")]
    for name, text, message in cases:
        (tmp_path / name).write_text(text)
        code, _, err = run_cli(predict_args(ckpt, video, tmp_path / "never", "--boxes", tmp_path / name), capsys)
        assert code == 2 and message in err and "Traceback" not in err, err


def test_track_makes_a_folder_of_frames_a_sequence_with_its_posetrack_file(ckpt, panned, template_poses, tmp_path,
                                                                            capsys):
    """`frpose track ROOT`: each folder of images is a sequence (PoseTrack's layout), written as COCO records with
    track ids and as one PoseTrack18 file per folder; without --track the same images are stills."""
    video, truth, decoded = panned
    seq = tmp_path / "images" / "000042_mpii_test"
    seq.mkdir(parents=True)
    boxes = {}
    for rgb, f in decoded.items():
        frame = np.frombuffer(rgb, np.uint8).reshape(WINDOW[1], WINDOW[0], 3)
        cv2.imwrite(str(seq / f"{f:06d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        boxes[f"000042_mpii_test/{f:06d}.png"] = [{"bbox": list(b), "score": 0.9} for b in truth[f]]
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    out = tmp_path / "run"
    args = predict_args(ckpt, tmp_path / "images", out, "--boxes", tmp_path / "boxes.json", "--det-every", "2")
    code, stdout, err = run_cli(["track", *args[1:]], capsys)
    assert code == 0, stdout + err
    records = json.loads((out / "predictions.json").read_text())
    frames = [int(Path(r["file_name"]).stem) for r in records]
    for r, f in zip(records, frames):
        r["frame"] = f
        assert r["timestamp"] == pytest.approx(f / 30, abs=1e-3)   # a folder of frames runs at 30 frames/s
    ids_follow_truth(records, truth)
    data = json.loads((out / "posetrack" / "000042_mpii_test.json").read_text())
    assert len(data["images"]) == FRAMES and data["images"][0]["id"] == 10000420000
    assert len(data["annotations"]) == FRAMES * len(truth[0])
    assert {a["track_id"] for a in data["annotations"]} == {r["track_id"] for r in records}
    assert "PoseTrack files: 1 in" in stdout
    # PoseTrack ground truth of the same people (the oracle's poses, their own track ids, head boxes around the
    # nose and ears): `frpose eval` scores the run's file as poseval does, every joint found and followed.
    frames = [{"file_name": f"images/000042_mpii_test/{f:06d}.png", "frame": f, "width": WINDOW[0],
               "height": WINDOW[1], "records": [{"keypoints": np.c_[b[:2] + TEMPLATE * b[2:], np.ones(17)].ravel().tolist(),
                                                 "track_id": p} for p, b in enumerate(truth[f])]} for f in range(FRAMES)]
    from frpose_cli.tracking.posetrack import posetrack_sequence
    gt = posetrack_sequence("000042_mpii_test", frames, [n for n in load_card("frpose-r18", SIZE).keypoints.names])
    for a in gt["annotations"]:
        xs, ys = a["keypoints"][0::3][:5], a["keypoints"][1::3][:5]   # nose, head slots, ears
        xs, ys = [x for x in xs if x], [y for y in ys if y]
        a["bbox_head"] = [min(xs) - 5, min(ys) - 10, max(xs) - min(xs) + 10, max(ys) - min(ys) + 20]
        del a["scores"]
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "000042_mpii_test.json").write_text(json.dumps(gt))
    code, stdout, err = run_cli(["eval", "--ann", tmp_path / "gt", "--results", out / "posetrack",
                                 "--json", tmp_path / "pt.json"], capsys)
    assert code == 0, stdout + err
    figures = json.loads((tmp_path / "pt.json").read_text())
    coco_joints = [j for j, name in enumerate(figures["joints"][:-1]) if name not in ("head_bottom", "head_top")]
    assert [figures["ap"][j] for j in coco_joints] == pytest.approx([100] * 13)
    assert figures["mota"][-1] == pytest.approx(100)   # a COCO model has no head joints: poseval leaves them out
    code, _, _ = run_cli(predict_args(ckpt, tmp_path / "images", tmp_path / "stills", "--boxes",
                                      tmp_path / "boxes.json", "--no-vis"), capsys)
    assert code == 0 and not (tmp_path / "stills" / "posetrack").exists()
    # a note among the frames waits behind the frames --smooth-offline holds back: the log stays in stream order
    (seq / "000005.txt").write_text("not a frame")
    off = tmp_path / "offline"
    code, stdout, err = run_cli(["track", *predict_args(ckpt, tmp_path / "images", off, "--boxes", tmp_path / "boxes.json",
                                                        "--smooth-offline", "--no-vis")[1:]], capsys)
    assert code == 0 and "ignored 000042_mpii_test/000005.txt" in stdout, stdout + err
    lines = [json.loads(x) for x in (off / "parts" / "session1-shard0-of1.jsonl").read_text().splitlines()[1:-1]]
    assert [tuple(x["o"]) for x in lines] == sorted(tuple(x["o"]) for x in lines) and len(lines) == FRAMES + 1
    assert len(json.loads((off / "predictions.json").read_text())) == FRAMES * len(truth[0])
    assert all("track_id" not in r for r in json.loads((tmp_path / "stills" / "predictions.json").read_text()))


def test_det_every_with_the_detect_ahead_thread_runs_the_detector_on_schedule_only(ckpt, panned, template_poses,
                                                                                   tmp_path):
    """A detector network in the detect-ahead thread (--overlap) is called on frames 0, N, 2N, … only, in order,
    and the records are the same bytes as with the detector in the main thread."""
    import threading
    video, truth, decoded = panned

    class TruthDetector:
        overlap_safe = True

        def __init__(self):
            self.calls = []

        def __call__(self, item):
            frame = decoded[np.ascontiguousarray(item.image).tobytes()]
            self.calls.append((frame, threading.current_thread().name))
            return np.concatenate([truth[frame], np.full((len(truth[frame]), 1), 0.9)], 1).astype(np.float32)
    outs = {}
    for overlap in (True, False):
        det = TruthDetector()
        out = tmp_path / f"overlap-{overlap}"
        run_predict(PredictOptions(source=str(video), weights=str(ckpt), det_every=3, overlap=overlap, out=str(out),
                                   progress=False, flip=False, save_vis=False, workers=0, backend="torch"), detector=det)
        assert [f for f, _ in det.calls] == list(range(0, FRAMES, 3))
        assert all(name.startswith("frpose-detect") == overlap for _, name in det.calls[1:])
        outs[overlap] = (out / "predictions.json").read_bytes()
    assert outs[True] == outs[False]
    ids_follow_truth(json.loads(outs[True]), truth)


def test_smooth_offline_holds_frames_back_and_writes_them_in_order(ckpt, panned, template_poses, tmp_path, capsys):
    """Jittered poses of people moving steadily: the offline smoother's keypoints are closer to the truth than the
    raw ones, every frame is there once and in order, the video's note comes after its frames."""
    video, truth, _ = panned
    boxes = frame_boxes_json(tmp_path / "boxes.json", truth)
    template_poses["jitter"] = 3.0
    out = tmp_path / "off"
    code, stdout, err = run_cli(predict_args(ckpt, video, out, "--boxes", boxes, "--smooth-offline"), capsys)
    assert code == 0, stdout + err
    records = json.loads((out / "predictions.json").read_text())
    assert sorted(by_frame(records)) == list(range(FRAMES)) and len(records) == FRAMES * len(truth[0])
    lines = [json.loads(x) for x in (out / "parts" / "session1-shard0-of1.jsonl").read_text().splitlines()[1:-1]]
    assert [tuple(x["o"]) for x in lines] == sorted(tuple(x["o"]) for x in lines)   # the log in stream order
    err_of = lambda key: np.mean([np.abs(np.array(r[key]).reshape(17, 3)[:, :2] - (b[:2] + TEMPLATE * b[2:])).mean()   # noqa: E731
                                  for r in records for b in truth[r["frame"]][iou_matrix(truth[r["frame"]], [r["bbox"]])[:, 0].argmax()][None]])
    assert err_of("keypoints") < 0.7 * err_of("keypoints_raw")
    assert overlay_count(out / "vis" / "pan.mp4") == FRAMES
    code, _, err = run_cli(predict_args(ckpt, video, tmp_path / "never", "--smooth", "--smooth-offline"), capsys)
    assert code == 2 and "choose one" in err


def overlay_count(path):
    cap, n = cv2.VideoCapture(str(path)), 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_unnamed_frame_boxes_for_a_folder_of_two_videos_is_one_line(ckpt, panned, tmp_path, capsys):
    video, truth, _ = panned
    folder = tmp_path / "clips"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (folder / name).write_bytes(video.read_bytes())
    boxes = frame_boxes_json(tmp_path / "boxes.json", truth)
    code, _, err = run_cli(predict_args(ckpt, folder, tmp_path / "never", "--boxes", boxes), capsys)
    assert code == 2 and "gives the boxes of one video, and the source holds 2 (a.mp4, b.mp4" in err, err
    named = {"videos": {"a.mp4": json.loads(boxes.read_text())["frames"]}}   # b.mp4: no boxes, no persons
    (tmp_path / "named.json").write_text(json.dumps(named))
    code, stdout, err = run_cli(predict_args(ckpt, folder, tmp_path / "run", "--boxes", tmp_path / "named.json",
                                             "--no-vis"), capsys)
    assert code == 0, stdout + err
    records = json.loads((tmp_path / "run" / "predictions.json").read_text())
    assert {r["file_name"] for r in records} == {"a.mp4"} and len(records) == FRAMES * len(truth[0])
    assert f"{FRAMES} of {2 * FRAMES} images matched no box" in stdout
