"""A corpus of bad and unusual inputs for every verb, generated (no binary blobs): each case builds its
files under a folder and says what `frpose` must answer (exit code, a message) and which files must
come out of the run byte-identical (the inputs, and earlier runs' outputs).

Used by tests/test_bad_inputs.py; `python scripts/make_bad_inputs.py DIR` writes the same corpus
to DIR and prints each case's command, to try by hand.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

DATA = Path(__file__).resolve().parent / "data" / "coco"
VAL, TRAIN = DATA / "val2017", DATA / "train2017"
ANN_VAL = DATA / "annotations" / "person_keypoints_val2017.json"
ANN_TRAIN = DATA / "annotations" / "person_keypoints_train2017.json"
DETS = DATA / "person_detection_results" / "COCO_val2017_detections_AP_H_56_person_subset.json"


@dataclass
class Ctx:
    """What a case may use: a fresh folder, a small trained-format checkpoint, special folders."""
    root: Path
    ckpt: Path                      # frpose checkpoint (sbn-r18, 64x64)
    read_only: Path | None = None   # a folder on a read-only mount (or None when none can be made)
    full: Path | None = None        # a folder on a tiny, nearly full file system
    train_run: Path | None = None   # a finished 1-epoch training run (copied per case)

    def path(self, name: str) -> Path:
        p = self.root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p


@dataclass
class Case:
    name: str
    build: Callable[[Ctx], tuple[list, list]]   # → (argv after "frpose", files that must not change)
    code: int
    text: str                                    # must appear in stderr + stdout
    needs: tuple = ()                            # "read_only", "full", "train_run"
    absent: tuple = field(default=())            # paths (relative to root) that must not exist afterwards


# --------------------------------------------------------------------------- file makers

def small_image(path: Path, name="000000000785.jpg", width=96) -> Path:
    img = cv2.imread(str(VAL / name))
    h, w = img.shape[:2]
    cv2.imwrite(str(path), cv2.resize(img, (width, round(h * width / w))))
    return path


def image_folder(ctx: Ctx, name="imgs", count=2) -> Path:
    folder = ctx.path(f"{name}/x").parent
    for n in sorted(p.name for p in VAL.glob("*.jpg"))[:count]:
        small_image(folder / n, n)
    return folder


def corrupt_entropy_jpeg(path: Path) -> Path:
    data = bytearray((VAL / "000000000785.jpg").read_bytes())
    scan = data.rfind(b"\xff\xda")
    data[scan + 400:scan + 430] = bytes(30)
    path.write_bytes(bytes(data))
    return path


def truncated(path: Path, source=VAL / "000000040083.jpg", fraction=0.5) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def truncated_avi(path: Path, frames=12) -> Path:
    full = path.with_name("full.avi")
    writer = cv2.VideoWriter(str(full), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 64))
    base = cv2.resize(cv2.imread(str(VAL / "000000040083.jpg")), (96, 64))
    for i in range(frames):
        writer.write(np.roll(base, 3 * i, axis=1))
    writer.release()
    truncated(path, full, 0.6)
    full.unlink()
    return path


def annotations_with(ctx: Ctx, name: str, edit) -> Path:
    data = json.loads(ANN_VAL.read_text())
    edit(data)
    path = ctx.path(name)
    path.write_text(json.dumps(data))
    return path


def coco_root(ctx: Ctx, edit=None, name="coco") -> Path:
    root = ctx.path(f"{name}/annotations/x").parent.parent
    shutil.copytree(VAL, root / "val2017")
    shutil.copytree(TRAIN, root / "train2017")
    for src in (ANN_VAL, ANN_TRAIN):
        data = json.loads(src.read_text())
        if edit is not None:
            edit(data)
        (root / "annotations" / src.name).write_text(json.dumps(data))
    return root


def results_file(ctx: Ctx, name: str, entries) -> Path:
    path = ctx.path(name)
    path.write_text(json.dumps(entries))
    return path


def gt_results(transform=None) -> list:
    out = []
    for a in json.loads(ANN_VAL.read_text())["annotations"]:
        if a["num_keypoints"] == 0:
            continue
        kp = list(map(float, a["keypoints"]))
        if transform is not None:
            kp = transform(kp)
        out.append({"image_id": a["image_id"], "category_id": 1, "keypoints": kp, "score": 0.9})
    return out


def drop_keypoint(data):
    a = next(a for a in data["annotations"] if a["num_keypoints"] > 0)
    a["keypoints"] = a["keypoints"][:-3]


def nan_keypoints(kp):
    kp[0] = float("nan")
    return kp


def evil_checkpoint(path: Path, marker: Path) -> Path:
    import os

    import torch

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    torch.save({"state_dict": {}, "x": Payload()}, path)
    return path


# --------------------------------------------------------------------------- cases

def _predict(ctx, source, *extra, out="run"):
    return ["predict", source, "-w", ctx.ckpt, "--detector", "whole-image", "--no-progress", "--no-flip",
            "--out", ctx.root / out, *extra]


def _copy_run(ctx) -> Path:
    dst = ctx.root / "trainrun"
    shutil.copytree(ctx.train_run, dst)
    return dst


def _frozen(folder: Path) -> list:
    return sorted(p for p in folder.rglob("*") if p.is_file())


CASES = [
    # ---- predict: images
    Case("predict-corrupt-entropy-jpeg", lambda c: (
        _predict(c, corrupt_entropy_jpeg(c.path("in/damaged.jpg"))), [c.root / "in/damaged.jpg"]),
        1, "warning damaged.jpg: damaged JPEG data, decoded anyway (libjpeg: Corrupt JPEG data"),
    Case("predict-truncated-jpeg", lambda c: (_predict(c, truncated(c.path("in/cut.jpg"))), []),
         1, "skipped cut.jpg: truncated JPEG"),
    Case("predict-empty-file", lambda c: (_predict(c, (c.path("in/e.jpg").write_bytes(b""), c.path("in/e.jpg"))[1]), []),
         1, "skipped e.jpg: empty file"),
    Case("predict-text-named-jpg", lambda c: (_predict(c, (c.path("in/t.jpg").write_text("hello"), c.path("in/t.jpg"))[1]), []),
         1, "skipped t.jpg: not an image OpenCV can decode"),
    Case("predict-notes-beside-images", lambda c: (
        _predict(c, (c.path("in/notes.txt").write_text("x"), image_folder(c, "in"))[1]), _frozen(c.root / "in")),
        0, "ignored notes.txt: not an image or video file"),
    Case("predict-only-non-images", lambda c: (
        _predict(c, (c.path("in/notes.txt").write_text("x"), c.root / "in")[1]), []),
        2, "no images or videos found in source"),
    Case("predict-list-of-absolute-paths", lambda c: (
        _predict(c, (c.path("list.txt").write_text("\n".join(str(p) for p in _frozen(image_folder(c, "in")))),
                     c.path("list.txt"))[1]),
        _frozen(c.root / "in")),
        0, "2 images, 2 persons"),
    Case("predict-list-not-utf8", lambda c: (_predict(c, (c.path("l.txt").write_bytes(b"\xff\xfe\x00bad"), c.path("l.txt"))[1]), []),
         2, "must be UTF-8"),
    Case("predict-truncated-video", lambda c: (_predict(c, truncated_avi(c.path("in/clip.avi")), "--no-vis"), []),
         1, "video ended after"),
    Case("predict-missing-source", lambda c: (_predict(c, c.root / "nope"), []), 2, "source not found",
         absent=("run",)),
    # ---- predict: where results go
    Case("predict-out-is-a-file", lambda c: (
        _predict(c, image_folder(c), out="taken"), [(c.path("taken").write_text("mine"), c.path("taken"))[1]]),
        2, "is an existing file, not a folder"),
    Case("predict-out-inside-source", lambda c: (
        _predict(c, image_folder(c, "in"), out="in/results"), _frozen(c.root / "in")),
        2, "is inside the input folder", absent=("in/results",)),
    Case("predict-out-read-only", lambda c: (
        ["predict", image_folder(c), "-w", c.ckpt, "--detector", "whole-image", "--out", c.read_only / "run"], []),
        2, "read-only file system", needs=("read_only",)),
    Case("predict-out-full-disk", lambda c: (
        ["predict", image_folder(c), "-w", c.ckpt, "--detector", "whole-image", "--out", c.full / "run"], []),
        2, "needed", needs=("full",)),
    Case("predict-existing-run-without-resume", lambda c: (
        _predict(c, image_folder(c)), [(c.path("run/predictions.json").write_text("[]"), c.path("run/predictions.json"))[1]]),
        2, "already holds predictions.json"),
    Case("predict-resume-with-other-options", lambda c: (
        _predict(c, image_folder(c), "--resume", "--nms-thr", "0.5"),
        [(c.path("run/predictions.json").write_text("[]"), c.path("run/predictions.json"))[1],
         (c.path("run/images.json").write_text(json.dumps({"options": {"flip": False}, "images": []})),
          c.path("run/images.json"))[1]]),
        2, "was made with other options"),
    # ---- predict: boxes
    Case("predict-boxes-not-json", lambda c: (
        _predict(c, image_folder(c), "--boxes", (c.path("b.json").write_text("[{"), c.path("b.json"))[1]), []),
        2, "not a readable JSON"),
    Case("predict-boxes-match-no-image", lambda c: (
        _predict(c, image_folder(c), "--boxes", results_file(c, "b.json", [
            {"image_id": 999999, "bbox": [1, 1, 20, 40], "score": 0.9, "category_id": 1}])), []),
        0, "2 of 2 images matched no box of --boxes (none matched"),
    Case("predict-boxes-nan-negative-outside", lambda c: (
        _predict(c, small_image(c.path("in/000000000785.jpg")), "--boxes", results_file(c, "b.json", [
            {"image_id": 785, "bbox": [float("nan"), 1, 20, 40], "score": 0.9, "category_id": 1},
            {"image_id": 785, "bbox": [5, 5, -3, 40], "score": 0.9, "category_id": 1},
            {"image_id": 785, "bbox": [5000, 5000, 30, 30], "score": 0.9, "category_id": 1},
            {"image_id": 785, "bbox": [5, 5, 30, 40], "score": 0.9, "category_id": 1}])), []),
        0, "boxes dropped: 1 non-finite values (NaN or inf), 1 outside the image, 1 zero or negative width/height"),
    # ---- predict: weights and options
    Case("predict-weights-missing", lambda c: (["predict", image_folder(c), "-w", c.root / "none.pt"], []),
         2, "weights not found"),
    Case("predict-weights-garbage", lambda c: (
        ["predict", image_folder(c), "-w", (c.path("w.pt").write_bytes(b"garbage" * 10), c.path("w.pt"))[1]], []),
        2, "not a readable PyTorch checkpoint"),
    Case("predict-weights-pickled-code", lambda c: (
        ["predict", image_folder(c), "-w", evil_checkpoint(c.path("evil.pt"), c.root / "pwned")], []),
        2, "refused to load: it needs the Python global", absent=("pwned",)),
    Case("predict-weights-of-another-model", lambda c: (
        ["predict", image_folder(c), "-w", c.ckpt, "--model", "frpose-r34"], []), 2, "not frpose-r34"),
    Case("predict-batch-size-zero", lambda c: (_predict(c, image_folder(c), "--batch-size", "0"), []),
         2, "--batch-size 0: must be a whole number from 1 to 65536"),
    # ---- eval
    Case("eval-annotations-not-json", lambda c: (
        ["eval", "--results", results_file(c, "r.json", gt_results()), "--ann",
         (c.path("a.json").write_text("{"), c.path("a.json"))[1]], []), 2, "is not valid JSON"),
    Case("eval-annotation-with-wrong-keypoint-count", lambda c: (
        ["eval", "--weights", c.ckpt, "--ann", annotations_with(c, "a.json", drop_keypoint), "--images", VAL,
         "--gt-boxes", "--no-progress", "--workers", "0", "--out", c.root / "r.json"], []),
        2, "has 48 keypoint values, expected 51", absent=("r.json",)),
    Case("eval-annotation-image-id-not-int", lambda c: (
        ["eval", "--results", results_file(c, "r.json", gt_results()), "--ann",
         annotations_with(c, "a.json", lambda d: d["images"][0].__setitem__("id", "x"))], []),
        2, "an image record has no integer 'id'"),
    Case("eval-results-with-nan", lambda c: (
        ["eval", "--results", results_file(c, "r.json", gt_results(nan_keypoints)), "--ann", ANN_VAL], []),
        2, "non-numeric or non-finite keypoint values"),
    Case("eval-results-not-a-list", lambda c: (
        ["eval", "--results", results_file(c, "r.json", {"image_id": 1}), "--ann", ANN_VAL], []),
        2, "must be a JSON list"),
    Case("eval-results-empty", lambda c: (["eval", "--results", results_file(c, "r.json", []), "--ann", ANN_VAL], []),
         2, "holds no results"),
    Case("eval-out-exists", lambda c: (
        ["eval", "--weights", c.ckpt, "--data", DATA, "--gt-boxes", "--out",
         (c.path("r.json").write_text("[]"), c.path("r.json"))[1]], [c.root / "r.json"]),
        2, "already exists"),
    Case("eval-json-read-only", lambda c: (
        ["eval", "--results", results_file(c, "r.json", gt_results()), "--ann", ANN_VAL, "--json",
         c.read_only / "m.json"], []), 2, "read-only file system", needs=("read_only",)),
    Case("eval-oracle-twice-keeps-both", lambda c: (
        ["eval", "sbn-r18", "--oracle", "--ann", ANN_VAL, "--out",
         (c.path("r.json").write_text("[]"), c.path("r.json"))[1]], [c.root / "r.json"]),
        2, "already exists"),
    Case("eval-data-missing", lambda c: (["eval", "--weights", c.ckpt, "--data", c.root / "nodata"], []),
         2, "no such folder"),
    # ---- train
    Case("train-data-missing", lambda c: (["train", "sbn-r18", "--data", c.root / "nodata"], []), 2, "no such folder"),
    Case("train-out-is-a-file", lambda c: (
        ["train", "sbn-r18", "--data", coco_root(c), "--out", (c.path("f").write_text("x"), c.path("f"))[1]],
        [c.root / "f"]), 2, "is an existing file"),
    Case("train-out-read-only", lambda c: (
        ["train", "sbn-r18", "--data", coco_root(c), "--input-size", "64x64", "--out", c.read_only / "r"], []),
        2, "read-only file system", needs=("read_only",)),
    Case("train-out-full-disk", lambda c: (
        ["train", "sbn-r18", "--data", coco_root(c), "--input-size", "64x64", "--out", c.full / "r"], []),
        2, "needed", needs=("full",)),
    Case("train-annotation-wrong-keypoint-count", lambda c: (
        ["train", "sbn-r18", "--data", coco_root(c, drop_keypoint), "--input-size", "64x64", "--out", c.root / "r"], []),
        2, "has 48 keypoint values, expected 51", absent=("r",)),
    Case("train-bad-lr-steps", lambda c: (["train", "sbn-r18", "--data", DATA, "--lr-steps", "a,b"], []),
         2, "--lr-steps takes comma-separated epochs"),
    Case("train-resume-finished-run", lambda c: (
        ["train", "--resume", _copy_run(c), "--no-progress"], _frozen(c.root / "trainrun")),
        0, "--epochs", needs=("train_run",)),
    Case("train-resume-nothing", lambda c: (["train", "--resume", c.root / "norun"], []), 2, "no checkpoint there"),
    Case("train-resume-best-pt", lambda c: (
        ["train", "--resume", _copy_run(c) / "best.pt"], _frozen(c.root / "trainrun")),
        2, "holds weights only", needs=("train_run",)),
    # ---- bench
    Case("bench-absurd-input-size", lambda c: (["bench", "sbn-r18", "--input-size", "100000x100000"], []),
         2, "at most 2048 pixels a side"),
    Case("bench-unknown-model", lambda c: (["bench", "resnet-9000"], []), 2, "unknown model"),
    Case("bench-json-read-only", lambda c: (
        ["bench", "sbn-r18", "--input-size", "64x64", "--json", c.read_only / "b.json"], []),
        2, "read-only file system", needs=("read_only",)),
    # ---- export
    Case("export-out-exists", lambda c: (
        ["export", "--weights", c.ckpt, "--out", (c.path("m.onnx").write_text("old"), c.path("m.onnx"))[1]],
        [c.root / "m.onnx"]), 2, "already exists"),
    Case("export-out-is-a-folder", lambda c: (["export", "--weights", c.ckpt, "--out", c.path("d/x").parent], []),
         2, "is a folder"),
    Case("export-out-read-only", lambda c: (["export", "--weights", c.ckpt, "--out", c.read_only / "m.onnx"], []),
         2, "read-only file system", needs=("read_only",)),
    Case("export-an-export", lambda c: (["export", "--weights", (c.path("m.onnx").write_bytes(b"\x08\x07"), c.path("m.onnx"))[1]], []),
         2, "already an exported onnx file"),
]
