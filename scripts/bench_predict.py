"""End-to-end `frpose predict` speed on a folder of images, and where the time goes.

    python scripts/bench_predict.py ../shared/data/coco-mini/val2017 --limit 16

Runs the real pipeline (read → detect → crop → pose → decode → write) twice on the same
images: with ``--detector whole-image`` and with torchvision's Faster R-CNN ResNet-50 FPN.
No weights are downloaded and none are needed for timing: the pose model and the detector
are randomly initialised (their cost does not depend on the weight values).  An untrained
detector finds nobody, so in the torchvision mode the detector runs in full and its output
is then replaced by the annotated person boxes of the image (from the COCO annotation file
next to the folder), i.e. the pose stage sees as many persons as a good detector would give.

Prints images/s and milliseconds per image per stage; ``--json FILE`` saves the figures.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from frpose_cli.cards import load_card, parse_input_size
from frpose_cli.weights.checkpoint import save_checkpoint
from frpose_cli.inference.detectors import TorchvisionDetector, clip_boxes
from frpose_cli.inference.predict import STAGES, PredictOptions, run_predict


def annotated_boxes(folder: Path, annotations: Path | None) -> dict:
    """file name → (M, 5) person boxes from the COCO keypoint annotations (crowd boxes left out)."""
    if annotations is None:
        guess = folder.parent / "annotations" / f"person_keypoints_{folder.name}.json"
        annotations = guess if guess.is_file() else None
    if annotations is None:
        return {}
    data = json.loads(Path(annotations).read_text())
    names = {img["id"]: img["file_name"] for img in data["images"]}
    boxes: dict = {}
    for a in data["annotations"]:
        if not a.get("iscrowd") and a["bbox"][2] > 1 and a["bbox"][3] > 1:
            boxes.setdefault(names[a["image_id"]], []).append([*a["bbox"], 1.0])
    return {k: np.array(v, np.float32) for k, v in boxes.items()}


class TimedDetectorWithAnnotatedBoxes:
    """Runs the real detector (so its time is measured), then hands on the annotated boxes."""
    name = "torchvision"

    def __init__(self, detector: TorchvisionDetector, boxes: dict):
        self.detector, self.boxes = detector, boxes

    def __call__(self, item):
        found = self.detector(item)
        if not self.boxes:
            return found
        h, w = item.image.shape[:2]
        return clip_boxes(self.boxes.get(Path(item.file_name).name, np.zeros((0, 5), np.float32)), w, h)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--model", default="frpose-r34")
    ap.add_argument("--input-size", default="256x192")
    ap.add_argument("--limit", type=int, default=16, help="first N images of the folder (0: all)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--det-size", type=int, default=800)
    ap.add_argument("--no-flip", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--annotations", type=Path, default=None)
    ap.add_argument("--modes", default="whole-image,torchvision")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    work = Path(tempfile.mkdtemp(prefix="bench_predict_"))
    try:
        images = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if args.limit:
            images = images[:args.limit]
        listing = work / "images.txt"
        listing.write_text("\n".join(str(p.resolve()) for p in images) + "\n")
        card = load_card(args.model, parse_input_size(args.input_size))
        torch.manual_seed(0)
        ckpt = save_checkpoint(work / "pose.pt", card.build_model(), card)
        results = {"model": card.name, "input_size": list(card.input_size), "flip": not args.no_flip,
                   "threads": torch.get_num_threads(), "images": len(images), "modes": {}}
        for mode in args.modes.split(","):
            detector = None
            if mode == "torchvision":
                from torchvision.models.detection import fasterrcnn_resnet50_fpn
                det_file = work / "detector.pth"
                torch.save(fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict(), det_file)
                real = TorchvisionDetector(det_file, score_thr=0.3, min_size=args.det_size,
                                           max_size=round(args.det_size * 1333 / 800))
                detector = TimedDetectorWithAnnotatedBoxes(real, annotated_boxes(args.folder, args.annotations))
            opts = PredictOptions(source=str(listing), weights=str(ckpt), detector=mode, out=str(work / mode),
                                  batch_size=args.batch_size, flip=not args.no_flip, progress=False,
                                  det_size=args.det_size)
            start = time.perf_counter()
            summary = run_predict(opts, log=lambda m: None, detector=detector)
            setup = time.perf_counter() - start - summary.seconds
            wall = summary.seconds   # the streaming loop; model loading is reported as setup
            n = max(summary.images, 1)
            row = {"images": summary.images, "persons": summary.persons, "wall_s": round(wall, 2),
                   "setup_s": round(setup, 2),
                   "images_per_s": round(summary.images / wall, 3),
                   "ms_per_image": {k: round(summary.timings[k] / n * 1000, 1) for k in STAGES},
                   "ms_per_person_pose": round(summary.timings["pose"] / max(summary.persons, 1) * 1000, 1)}
            results["modes"][mode] = row
            split = ", ".join(f"{k} {v:.0f} ms ({v / (wall / n * 1000) * 100:.0f}%)"
                              for k, v in row["ms_per_image"].items())
            print(f"{mode:12s} {row['images']} images, {row['persons']} persons, {wall:.1f} s, "
                  f"{row['images_per_s']:.3f} images/s (+{setup:.1f} s setup) | per image: {split}", flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
