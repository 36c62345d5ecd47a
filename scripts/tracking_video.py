"""Ground-truth videos for the tracking benchmark (scripts/bench_tracking.py): real COCO people seen by a
panning camera, and the oracle that stands in for trained networks.

``make_video`` writes the mp4 and gives every frame's true keypoints and boxes (and the decoded frames'
bytes, by which the oracle knows which frame a crop was cut from).  ``Oracle`` lets the pose network run
(its time is the real one) and then replaces its keypoints by the truth of the person each crop shows,
with Gaussian jitter; ``TruthDetector`` does the same for the detector's boxes.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from frpose_cli.inference import predict as predict_core
from frpose_cli.inference.detectors import clip_boxes
from frpose_cli.tracking.tracker import iou_matrix

SIZE, FPS = (640, 400), 25


def people_images(data: Path, count: int, min_people: int = 2):
    """The ``count`` COCO images (val, then train) with the most people of ≥ 10 labelled keypoints."""
    found = []
    for split in ("val2017", "train2017"):
        coco = json.loads((data / "annotations" / f"person_keypoints_{split}.json").read_text())
        by_image = {}
        for a in coco["annotations"]:
            if not a.get("iscrowd") and a["num_keypoints"] >= 10:
                by_image.setdefault(a["image_id"], []).append(a)
        for img in coco["images"]:
            people = by_image.get(img["id"], [])
            if len(people) >= min_people and img["width"] >= SIZE[0] * 0.9:
                found.append((len(people), data / split / img["file_name"], people))
    found.sort(key=lambda t: -t[0])
    return [(path, people) for _, path, people in found[:count]]


def make_video(path: Path, image_path: Path, people, frames: int, speed: float, jump_at=None, jump=0.0, hide=None):
    """A window of SIZE panning ``speed`` px a frame across the image (a jump of ``jump`` px at frame
    ``jump_at``): the mp4, the per-frame truth [(keypoints (P, 17, 3), boxes (P, 4))], and the decoded
    frames' bytes → frame index.  ``hide``: (person, first, last): in those frames the person is absent
    (as if behind something: no box, no keypoint seen; the pixels stay)."""
    image = cv2.imread(str(image_path))
    kps = np.array([a["keypoints"] for a in people], np.float64).reshape(-1, 17, 3)
    boxes = np.array([a["bbox"] for a in people], np.float64)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
    truth = []
    # the people's middle is the window's middle halfway through (outside the image: black)
    x0 = (boxes[:, 0].min() + (boxes[:, 0] + boxes[:, 2]).max()) / 2 - SIZE[0] / 2 - speed * frames / 2
    for f in range(frames):
        x = x0 + speed * f + (jump if jump_at is not None and f >= jump_at else 0.0)
        m = np.float32([[1, 0, -x], [0, 1, 0]])
        writer.write(cv2.warpAffine(image, m, SIZE, flags=cv2.INTER_LINEAR))
        k = kps.copy()
        k[..., 0] -= x
        b = boxes.copy()
        b[:, 0] -= x
        if hide and hide[1] <= f <= hide[2]:
            k[hide[0], :, 2] = 0
            b[hide[0]] = [-1e4, -1e4, 1, 1]   # out of view
        truth.append((k, b))
    writer.release()
    cap, decoded = cv2.VideoCapture(str(path)), {}
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        decoded[cv2.cvtColor(frame, cv2.COLOR_BGR2RGB).tobytes()] = len(decoded)
    cap.release()
    return truth, decoded


class Oracle:
    """Replaces the pose network's keypoints (after it ran) by the truth of the person each crop shows."""

    def __init__(self, truth, decoded, jitter: float, seed: int = 0):
        self.truth, self.decoded, self.jitter = truth, decoded, jitter
        self.rng, self.frame = np.random.default_rng(seed), None
        self.crops, self.decode = predict_core.PosePredictor.crops, predict_core.PosePredictor.decode

    def __enter__(self):
        oracle = self

        def crops(pred, image, boxes):
            oracle.frame = oracle.decoded.get(np.ascontiguousarray(image).tobytes())
            return oracle.crops(pred, image, boxes)

        def decode(pred, heatmaps, centers, scales):
            out = oracle.decode(pred, heatmaps, centers, scales)   # the real decoding, timed as usual
            if oracle.frame is None:   # a frame it does not know: the network's own output
                return out
            return oracle.poses(centers, scales, pred.card.input_size).astype(out.dtype)
        predict_core.PosePredictor.crops, predict_core.PosePredictor.decode = crops, decode
        return self

    def __exit__(self, *exc):
        predict_core.PosePredictor.crops, predict_core.PosePredictor.decode = self.crops, self.decode

    def poses(self, centers, scales, input_size):
        kps, boxes = self.truth[self.frame]
        regions = crop_regions(boxes, input_size[1] / input_size[0])
        out = []
        for c, s in zip(centers, scales):
            w, h = s / 1.25
            crop = np.array([[c[0] - w / 2, c[1] - h / 2, w, h]])
            iou = iou_matrix(regions, crop)[:, 0] if len(boxes) else np.zeros(0)
            if len(iou) == 0 or iou.max() < 0.3:
                out.append(np.concatenate([np.tile(c, (17, 1)), np.full((17, 1), 0.01)], 1))
                continue
            p = int(iou.argmax())
            k = kps[p].copy()
            seen = (k[:, 2] > 0) & (k[:, 0] >= 0) & (k[:, 0] < SIZE[0]) & (k[:, 1] >= 0) & (k[:, 1] < SIZE[1])
            k[~seen, :2] = boxes[p, :2] + boxes[p, 2:4] / 2
            k[:, :2] += self.rng.normal(0, self.jitter * boxes[p, 3], (17, 2))
            k[:, 2] = np.where(seen, 0.9, 0.05)
            out.append(k)
        return np.array(out).reshape(-1, 17, 3)


def crop_regions(boxes, aspect: float) -> np.ndarray:
    """Boxes widened or heightened to the network's aspect ratio about their centre, as crops are cut
    (geometry.box_to_center_scale before its padding): a crop is compared with these."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    w = np.maximum(boxes[:, 2], boxes[:, 3] * aspect)
    h = np.maximum(boxes[:, 3], boxes[:, 2] / aspect)
    return np.stack([boxes[:, 0] + boxes[:, 2] / 2 - w / 2, boxes[:, 1] + boxes[:, 3] / 2 - h / 2, w, h], 1)


def in_view(boxes, size=SIZE, share: float = 0.5) -> np.ndarray:
    """Which boxes have at least ``share`` of their area inside the frame (the people a camera shows)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    inside = clip_boxes(np.concatenate([boxes, np.arange(len(boxes))[:, None]], 1), *size)
    keep = np.zeros(len(boxes), bool)
    for b in inside:
        i = int(b[4])
        keep[i] = b[2] * b[3] >= share * boxes[i, 2] * boxes[i, 3]
    return keep


class TruthDetector:
    """The real detector runs (its time is measured), then the frame's true boxes are handed on.  Like the
    Faster R-CNN it wraps, it may run in predict's detect-ahead thread (--overlap, on by default for it)."""
    name, in_worker, overlap_safe = "torchvision", False, True

    def __init__(self, real, oracle: Oracle):
        self.real, self.oracle = real, oracle

    def __call__(self, item):
        if self.real is not None:
            self.real(item)
        frame = self.oracle.decoded.get(np.ascontiguousarray(item.image).tobytes())
        _, boxes = self.oracle.truth[frame]
        boxes = boxes[in_view(boxes)]
        h, w = item.image.shape[:2]
        return clip_boxes(np.concatenate([boxes, np.full((len(boxes), 1), 0.95)], 1), w, h)
