"""`frpose predict` end to end: outputs, bad inputs, --boxes, resume, video, overlays, detector."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from frpose_cli.inference import predict as predict_core
from frpose_cli.cards import load_card
from frpose_cli.weights.checkpoint import save_checkpoint
from frpose_cli.data.codecs import codec_for_card
from frpose_cli.inference.draw import LEFT_COLOR, RIGHT_COLOR, CENTER_COLOR
from frpose_cli.data.geometry import box_to_center_scale, transform_points, warp_matrix
from frpose_cli.inference.predict import PredictOptions, run_predict
from helpers import run_cli

DATA = Path(__file__).parent / "data" / "coco"
VAL = DATA / "val2017"
ANN = DATA / "annotations" / "person_keypoints_val2017.json"
DET_JSON = DATA / "person_detection_results" / "COCO_val2017_detections_AP_H_56_person_subset.json"
SIZE = (128, 96)


@pytest.fixture(scope="module")
def ckpt(frpose_r18_checkpoint):
    return frpose_r18_checkpoint


def small_copies(folder: Path, names, width=160):
    """Downscaled copies of the real val images (the pipeline's cost is per person, not per pixel,
    but overlays and reads are cheaper)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        img = cv2.imread(str(VAL / name))
        h, w = img.shape[:2]
        cv2.imwrite(str(folder / name), cv2.resize(img, (width, round(h * width / w))))
    return folder


def test_whole_image_writes_coco_results_and_one_overlay_per_image(ckpt, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run_cli(["predict", VAL, "--model", "frpose-r18", "--weights", ckpt,
                               "--detector", "whole-image", "--out", out, "--no-progress"], capsys)
    assert code == 0, stdout
    assert "4 images, 4 persons, 0 skipped" in stdout and "ms/image" in stdout
    records = json.loads((out / "predictions.json").read_text())
    assert len(records) == 4
    for r in records:
        assert len(r["keypoints"]) == 17 * 3 and r["category_id"] == 1 and "file_name" in r
        assert len(r["bbox"]) == 4 and 0 <= r["box_score"] <= 1 and np.isfinite(r["score"])
    # pycocotools accepts it once file names are mapped to the annotation file's image ids.
    from pycocotools.coco import COCO
    gt = COCO(str(ANN))
    ids = {img["file_name"]: img["id"] for img in gt.dataset["images"]}
    for r in records:
        r["image_id"] = ids[r["file_name"]]
    dt = gt.loadRes(records)
    assert sorted(dt.getImgIds()) == sorted(ids.values())
    overlays = sorted(p.name for p in (out / "vis").iterdir())
    assert overlays == sorted(p.name for p in VAL.glob("*.jpg"))
    for name in overlays:
        assert cv2.imread(str(out / "vis" / name)).shape == cv2.imread(str(VAL / name)).shape


def test_bad_files_are_reported_and_skipped_and_exit_code_is_1(ckpt, tmp_path, capsys):
    folder = small_copies(tmp_path / "imgs", ["000000000785.jpg", "000000040083.jpg"])
    good = (VAL / "000000196141.jpg").read_bytes()
    (folder / "corrupt.jpg").write_bytes(good[: len(good) // 3])
    (folder / "notes.txt").write_text("not an image\n")
    out = tmp_path / "run"
    code, stdout, _ = run_cli(["predict", folder, "-w", ckpt, "--detector", "whole-image", "--out", out,
                               "--no-progress"], capsys)
    assert code == 1
    assert "2 images, 2 persons, 1 skipped, 0 with warnings, 1 ignored" in stdout
    assert "skipped corrupt.jpg: truncated JPEG" in stdout and "ignored notes.txt: not an image" in stdout
    records = json.loads((out / "predictions.json").read_text())
    assert sorted(r["file_name"] for r in records) == ["000000000785.jpg", "000000040083.jpg"]
    info = json.loads((out / "images.json").read_text())
    assert [s["file_name"] for s in info["skipped"]] == ["corrupt.jpg"]
    assert [s["file_name"] for s in info["ignored"]] == ["notes.txt"]


def test_gray_rgba_and_16bit_images_work(ckpt, tmp_path, capsys):
    img = cv2.resize(cv2.imread(str(VAL / "000000000785.jpg")), (96, 64))
    folder = tmp_path / "kinds"
    folder.mkdir()
    cv2.imwrite(str(folder / "gray.png"), cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(folder / "rgba.png"), cv2.cvtColor(img, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(folder / "deep.png"), img.astype(np.uint16) * 257)
    out = tmp_path / "run"
    code, stdout, _ = run_cli(["predict", folder, "-w", ckpt, "--detector", "whole-image", "--out", out,
                               "--no-progress", "--no-flip"], capsys)
    assert code == 0 and "3 images, 3 persons, 0 skipped, 0 with warnings, 0 ignored" in stdout
    assert sorted(p.name for p in (out / "vis").iterdir()) == ["deep.png", "gray.png", "rgba.png"]


def test_usage_errors_exit_2_with_one_line(ckpt, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    cases = [(["predict", VAL], "pose weights sbn-r50 td-hm_res50"),   # the zoo default, not cached, offline
             (["predict", tmp_path / "empty", "-w", ckpt], "no images or videos found"),
             (["predict", tmp_path / "missing", "-w", ckpt], "source not found"),
             (["predict", VAL, "-w", ckpt, "--model", "sbn-r18"], "not sbn-r18"),
             (["predict", VAL, "-w", ckpt, "--input-size", "256x192"], "not 256x192"),
             (["predict", VAL, "-w", ckpt, "--detector", "torchvision", "--detector-weights",
               tmp_path / "none.pth"], "not found")]
    for args, message in cases:
        code, _, err = run_cli([*args, "--out", tmp_path / "never", "--no-progress"], capsys)
        last = err.strip().splitlines()[-1]
        assert code == 2 and last.startswith("frpose: error:") and message in last, (args, err)
        assert "Traceback" not in err
    assert not (tmp_path / "never").exists()   # no half-made run folder


def test_boxes_file_gives_the_persons(ckpt, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run_cli(["predict", VAL, "-w", ckpt, "--boxes", DET_JSON, "--det-thr", "0.5",
                               "--nms-thr", "1", "--out", out, "--no-progress", "--no-vis", "--no-flip"], capsys)
    assert code == 0, stdout
    dets = [d for d in json.loads(DET_JSON.read_text()) if d["score"] >= 0.5]
    records = json.loads((out / "predictions.json").read_text())
    assert len(records) == len(dets)
    for image_id in {d["image_id"] for d in dets}:
        got = sorted(tuple(r["bbox"]) for r in records if r["image_id"] == image_id)
        want = sorted(tuple(round(v, 2) for v in d["bbox"]) for d in dets if d["image_id"] == image_id)
        assert np.allclose(got, want, atol=0.02)
    assert sorted(r["box_score"] for r in records) == pytest.approx(sorted(d["score"] for d in dets), abs=1e-4)


def test_interrupted_run_keeps_its_results_and_resume_finishes(ckpt, tmp_path, monkeypatch, capsys):
    names = ["000000000785.jpg", "000000040083.jpg", "000000196141.jpg", "000000197388.jpg"]
    folder = small_copies(tmp_path / "imgs", names)
    out = tmp_path / "run"
    opts = PredictOptions(source=str(folder), weights=str(ckpt), detector="whole-image", out=str(out),
                          batch_size=1, save_every=1, progress=False, flip=False, save_vis=False)
    real_heatmaps = predict_core.PosePredictor.heatmaps
    calls = []

    def heatmaps_then_interrupt(self, crops, batch_size=16):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_heatmaps(self, crops, batch_size)

    monkeypatch.setattr(predict_core.PosePredictor, "heatmaps", heatmaps_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_predict(opts)
    monkeypatch.undo()
    done = json.loads((out / "predictions.json").read_text())
    assert [r["file_name"] for r in done] == names[:2]
    assert not list(out.glob(".*.tmp"))   # atomic writes leave no temp files behind

    # --resume continues only a run made with the same options (here the flip test differs)
    code, _, err = run_cli(["predict", folder, "-w", ckpt, "--detector", "whole-image", "--out", out,
                            "--resume", "--no-progress", "--no-vis"], capsys)
    assert code == 2 and "was made with other options (flip False ≠ True)" in err
    assert json.loads((out / "predictions.json").read_text()) == done
    code, stdout, _ = run_cli(["predict", folder, "-w", ckpt, "--detector", "whole-image", "--out", out,
                               "--resume", "--no-progress", "--no-vis", "--no-flip"], capsys)
    assert code == 0 and "2 images" in stdout and "2 already done" in stdout
    records = json.loads((out / "predictions.json").read_text())
    assert sorted(r["file_name"] for r in records) == sorted(names)   # each image once
    assert records[:2] == done                                         # earlier results untouched
    # Without --resume an existing run is not overwritten.
    code, _, err = run_cli(["predict", folder, "-w", ckpt, "--detector", "whole-image", "--out", out,
                            "--no-progress"], capsys)
    assert code == 2 and "--resume" in err


def test_default_out_is_a_new_numbered_run_folder(ckpt, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    image = small_copies(tmp_path / "one", ["000000040083.jpg"]) / "000000040083.jpg"
    for expected in ("run1", "run2"):
        code, stdout, _ = run_cli(["predict", image, "-w", ckpt, "--detector", "whole-image", "--no-progress",
                                   "--no-flip"], capsys)
        assert code == 0 and (tmp_path / "runs" / "predict" / expected / "predictions.json").is_file()


def test_video_every_other_frame_with_overlay_video(ckpt, tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    base = cv2.resize(cv2.imread(str(VAL / "000000040083.jpg")), (96, 64))
    for i in range(5):
        writer.write(np.roll(base, 4 * i, axis=1))
    writer.release()
    out = tmp_path / "run"
    code, stdout, _ = run_cli(["predict", video, "-w", ckpt, "--detector", "whole-image", "--vid-stride", "2",
                               "--out", out, "--no-progress", "--no-flip", "--heatmaps"], capsys)
    assert code == 0, stdout
    records = json.loads((out / "predictions.json").read_text())
    assert [(r["file_name"], r["frame"]) for r in records] == [("clip.mp4", 0), ("clip.mp4", 2), ("clip.mp4", 4)]
    assert len({r["image_id"] for r in records}) == 3
    cap = cv2.VideoCapture(str(out / "vis" / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()
    assert sorted(p.name for p in (out / "heatmaps" / "clip").iterdir()) == \
        ["000000.jpg", "000002.jpg", "000004.jpg"]
    # Resuming a finished video runs nothing but keeps the whole overlay video (frames redrawn).
    code, stdout, _ = run_cli(["predict", video, "-w", ckpt, "--detector", "whole-image", "--vid-stride", "2",
                               "--out", out, "--resume", "--no-progress", "--no-flip"], capsys)
    assert code == 0 and "0 images" in stdout and "3 already done" in stdout
    assert json.loads((out / "predictions.json").read_text()) == records
    cap = cv2.VideoCapture(str(out / "vis" / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()


class OracleModel(torch.nn.Module):
    """Stands in for a trained network: returns the heatmaps of known keypoints for its one
    crop, and their mirror image for the flipped crop (so the flip test is exercised)."""

    def __init__(self, heatmaps, flip_index):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.heat = torch.from_numpy(heatmaps)[None]
        self.flipped = self.heat[:, flip_index].flip(-1)

    def forward(self, x):
        n = x.shape[0]
        return torch.cat([self.heat, self.flipped])[:n] if n == 2 else self.heat.expand(n, -1, -1, -1)


def test_overlay_of_a_known_pose_lands_on_the_person(ckpt, tmp_path, monkeypatch, capsys):
    """A network that 'knows' image 785's annotated pose: predictions must match it, and the
    overlay's skeleton pixels must sit on those keypoints."""
    gt = next(a for a in json.loads(ANN.read_text())["annotations"] if a["image_id"] == 785)
    kpts = np.array(gt["keypoints"], np.float32).reshape(17, 3)
    card = load_card("frpose-r18", SIZE)
    codec = codec_for_card(card)
    box = [280.79, 44.73, 218.7, 346.68]
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([{"image_id": 785, "bbox": box, "score": 0.99, "category_id": 1}]))
    center, scale = box_to_center_scale(box, SIZE[1] / SIZE[0])
    in_crop = transform_points(kpts[:, :2], warp_matrix(center, scale, 0, (SIZE[1], SIZE[0])))
    heatmaps, _ = codec.encode(in_crop, kpts[:, 2])
    oracle = OracleModel(heatmaps, card.keypoints.flip_index())
    monkeypatch.setattr("frpose_cli.precision.formats.prepare_for_inference", lambda model, device, setup, *a: oracle)
    out = tmp_path / "run"
    code, stdout, _ = run_cli(["predict", VAL / "000000000785.jpg", "-w", ckpt, "--boxes", boxes,
                               "--out", out, "--no-progress", "--backend", "torch"], capsys)
    assert code == 0, stdout
    [record] = json.loads((out / "predictions.json").read_text())
    pred = np.array(record["keypoints"]).reshape(17, 3)
    px_per_heatmap_px = scale[0] / SIZE[1]
    assert np.abs(pred[:, :2] - kpts[:, :2]).max() <= px_per_heatmap_px   # within one heatmap pixel
    assert pred[:, 2].min() > 0.9

    overlay = cv2.imread(str(out / "vis" / "000000000785.jpg"))[:, :, ::-1].astype(int)   # RGB
    original = cv2.imread(str(VAL / "000000000785.jpg"))[:, :, ::-1].astype(int)
    names = card.keypoints.names

    def close_to(pixel, colour, tol=70):
        return np.abs(pixel - np.array(colour)).max() <= tol

    for k, (x, y, _) in enumerate(pred):
        colour = {"left": LEFT_COLOR, "right": RIGHT_COLOR}.get(names[k].split("_")[0], CENTER_COLOR)
        assert close_to(overlay[round(y), round(x)], colour), names[k]
    for a, b in card.keypoints.skeleton:
        if np.linalg.norm(pred[a, :2] - pred[b, :2]) > 20:
            mx, my = np.round((pred[a, :2] + pred[b, :2]) / 2).astype(int)
            assert np.abs(overlay[my, mx] - original[my, mx]).max() > 60, (names[a], names[b])
    # Far from the person the picture is untouched (up to JPEG noise).
    assert np.abs(overlay[:, :200] - original[:, :200]).mean() < 3


@pytest.fixture(scope="module")
def detector_weights(tmp_path_factory):
    from torchvision.models.detection import fasterrcnn_resnet50_fpn
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("det") / "fasterrcnn.pth"
    torch.save(fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict(), path)
    return path


def test_torchvision_detector_end_to_end(ckpt, detector_weights, tmp_path, capsys):
    folder = small_copies(tmp_path / "imgs", ["000000040083.jpg"], width=96)
    out = tmp_path / "run"
    code, stdout, _ = run_cli(["predict", folder, "-w", ckpt, "--detector", "torchvision",
                               "--detector-weights", detector_weights, "--det-thr", "0", "--det-size", "64",
                               "--out", out, "--no-progress", "--no-flip"], capsys)
    assert code == 0, stdout
    assert "detector torchvision" in stdout
    info = json.loads((out / "images.json").read_text())
    assert info["detector"] == "torchvision" and len(info["images"]) == 1
    records = json.loads((out / "predictions.json").read_text())
    assert len(records) == info["images"][0]["persons"]
    for r in records:
        x, y, w, h = r["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 96.01 and y + h <= info["images"][0]["height"] + 0.01


def test_sbn_stride4_checkpoint_runs_and_resume_refuses_another_model(ckpt, tmp_path, capsys):
    card = load_card("sbn-r18", SIZE)
    torch.manual_seed(0)
    sbn = save_checkpoint(tmp_path / "sbn-r18.pt", card.build_model(), card)
    image = small_copies(tmp_path / "one", ["000000000785.jpg"]) / "000000000785.jpg"
    out = tmp_path / "run"
    code, stdout, _ = run_cli(["predict", image, "-w", sbn, "--detector", "whole-image", "--out", out,
                               "--no-progress"], capsys)
    assert code == 0 and "1 images, 1 persons" in stdout
    [record] = json.loads((out / "predictions.json").read_text())
    assert len(record["keypoints"]) == 51 and json.loads((out / "images.json").read_text())["model"] == "sbn-r18"
    code, _, err = run_cli(["predict", image, "-w", ckpt, "--detector", "whole-image", "--out", out,
                            "--resume", "--no-progress"], capsys)
    assert code == 2 and f"was made with other options (weights '{sbn}' ≠ '{ckpt}')" in err
