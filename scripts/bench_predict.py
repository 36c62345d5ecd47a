"""End-to-end `frpose predict` speed on a folder of images, and where the time goes.

    python scripts/bench_predict.py ../shared/data/coco-mini/val2017 --limit 16

Runs the real pipeline (read → detect → crop → pose → decode → write) on the same images once
per row: ``whole-image`` (the pose network alone: the reference line), then every detector of
``--detectors`` in every set-up of ``--detector-setups`` (fp32, fused, bf16, fp16:
frpose_cli/inference/detector_setups.py; a set-up this machine cannot run natively is skipped
with the reason).  No weights are downloaded and none are needed for timing: the pose model and
the detectors are randomly initialised (their cost does not depend on the weight values).  An
untrained detector finds nobody (its box head is set to be sure of "background", as a trained one
is for almost every proposal: a random head would keep thousands of boxes of 90 classes and time
their NMS instead), so the detector runs in full and its output is then replaced
by the annotated person boxes of the image (from the COCO annotation file next to the folder),
i.e. the pose stage sees as many persons as a good detector would give.

Peer row: when the ``ultralytics`` package is installed (a benchmark input, never a dependency)
and ``--yolo WEIGHTS`` names a local YOLO pose file (e.g. yolo11n-pose.pt), the same images go
through ``YOLO(WEIGHTS).predict`` one at a time in the same run.

Prints images/s and milliseconds per image per stage, each row's ratio to the first detector row
and the machine's ISA; ``--json FILE`` saves the figures.
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

from frpose_cli.weights import zoo
from frpose_cli.cards import load_card, parse_input_size
from frpose_cli.weights.checkpoint import save_checkpoint
from frpose_cli.deploy.bench_detectors import random_detector_file
from frpose_cli.inference.detectors import build_detector, clip_boxes
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

    def __init__(self, detector, boxes: dict):
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
    ap.add_argument("--det-size", type=int, default=None, help="detector input size (default: each detector's own)")
    ap.add_argument("--no-flip", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--annotations", type=Path, default=None)
    ap.add_argument("--detectors", default=",".join(e.name for e in zoo.DETECTORS), help="zoo detector names "
                    "(default: every zoo detector)")
    ap.add_argument("--detector-setups", default="fp32,fused,bf16")
    ap.add_argument("--precision", default="fp32", help="the pose network's --precision in every row (fixed, so the "
                    "rows differ only in the detector; bf16 shows the speed of a gated bf16 choice)")
    ap.add_argument("--yolo", type=Path, default=None, help="a local ultralytics YOLO pose weights file: the peer row")
    ap.add_argument("--no-ceiling", action="store_true", help="skip the detector's arithmetic rate against the measured "
                    "ceiling of its precision (frpose_cli/deploy/ceiling.py)")
    ap.add_argument("--overlap", action="store_true", help="also run each detector row with predict --overlap (the "
                    "detector one image ahead in a helper thread), in the same run")
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
        from frpose_cli import hardware
        from frpose_cli.inference import detector_setups
        hw = hardware.detect("cpu")
        results = {"model": card.name, "input_size": list(card.input_size), "flip": not args.no_flip,
                   "threads": torch.get_num_threads(), "images": len(images), "machine": hw.describe("cpu"),
                   "det_size": args.det_size, "pose_precision": args.precision, "rows": {},
                   "command": " ".join(["python scripts/bench_predict.py", *(sys.argv[1:] if argv is None else argv)]),
                   "date": time.strftime("%Y-%m-%d")}
        print(f"{len(images)} images of {args.folder}, {card.name} {args.input_size}, detector input "
              f"{args.det_size or 'its own'} px, "
              f"pose network in {args.precision}, on {hw.describe('cpu')}", flush=True)
        boxes = annotated_boxes(args.folder, args.annotations)
        rows = [("whole-image", "whole-image", None, None, False)]
        for arch in args.detectors.split(","):
            for setup in args.detector_setups.split(","):
                why = detector_setups.unavailable_reason(setup, "cpu", hw)
                if why:
                    print(f"{arch} {setup}: skipped ({why})", flush=True)
                    continue
                rows.append((f"{arch} {setup}", arch, arch, setup, False))
                if args.overlap:
                    rows.append((f"{arch} {setup} overlap", arch, arch, setup, True))
        for label, mode, arch, setup, overlap in rows:
            detector = None
            if arch is not None:
                det_file = random_detector_file(arch, work)
                real = build_detector(arch, det_file, "cpu", 0.3, args.det_size, setup)
                detector = TimedDetectorWithAnnotatedBoxes(real, boxes)
            opts = PredictOptions(source=str(listing), weights=str(ckpt), detector="auto" if arch else mode,
                                  out=str(work / label.replace(" ", "-")), batch_size=args.batch_size,
                                  flip=not args.no_flip, progress=False, det_size=args.det_size, precision=args.precision,
                                  overlap=overlap)
            start = time.perf_counter()
            summary = run_predict(opts, log=lambda m: None, detector=detector)
            setup_s = time.perf_counter() - start - summary.seconds
            wall = summary.seconds   # the streaming loop; model loading is reported as setup
            n = max(summary.images, 1)
            row = {"images": summary.images, "persons": summary.persons, "wall_s": round(wall, 2),
                   "setup_s": round(setup_s, 2), "images_per_s": round(summary.images / wall, 3),
                   "ms_per_image": {k: round(summary.timings[k] / n * 1000, 1) for k in STAGES},
                   "ms_per_person_pose": round(summary.timings["pose"] / max(summary.persons, 1) * 1000, 1)}
            # the yardstick: the whole time per image against the pose network's own for the same persons
            row["x_pose"] = round(wall / n * 1000 / max(row["ms_per_image"]["pose"], 1e-9), 2)
            results["rows"][label] = row
            _print_row(label, row, results["rows"])
        mark_default(results)
        if not args.no_ceiling:
            _detector_rates(results, rows, work, images, args.det_size, hw)
        if args.yolo is not None:
            row = _yolo_row(args.yolo, images)
            if row is not None:
                results["rows"]["ultralytics " + args.yolo.name] = row
                _print_row("ultralytics " + args.yolo.name, row, results["rows"])
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def mark_default(results: dict) -> None:
    """Apply `--detector auto`'s CPU rule (frpose_cli/inference/detector_choice.py) to this run's own figures:
    each zoo detector's float32 detect time and the pose network's mean time per image over the detector rows
    (their annotated persons: a typical image). The chosen detector's rows get ``"default": true``."""
    import dataclasses

    from frpose_cli.inference.detector_choice import default_detector
    rows = results["rows"]
    poses = [r["ms_per_image"]["pose"] for k, r in rows.items() if k != "whole-image" and " " in k]
    timed = [dataclasses.replace(e, cpu_ms=rows[f"{e.name} fp32"]["ms_per_image"]["detect"])
             for e in zoo.DETECTORS if f"{e.name} fp32" in rows]
    if not poses or not any(e.person_ap is not None for e in timed):
        return
    pose_ms = round(sum(poses) / len(poses), 1)
    chosen, why = default_detector("cpu", timed, pose_ms)
    results["default_rule"] = {"pose_ms": pose_ms, "detector": chosen.name, "why": why}
    for label, row in rows.items():
        row.pop("default", None)
        if label.split(" ")[0] == chosen.name:
            row["default"] = True
    print(f"--detector auto on this CPU by this run's figures: {chosen.name} ({why})", flush=True)


def _print_row(label: str, row: dict, rows: dict) -> None:
    first = next((r for k, r in rows.items() if k != "whole-image"), None)
    ratio = f", {row['images_per_s'] / first['images_per_s']:.2f}x the first detector row" \
        if first is not None and first is not row and first["images_per_s"] else ""
    n = row["wall_s"] / max(row["images"], 1) * 1000
    split = ", ".join(f"{k} {v:.0f} ms ({v / n * 100:.0f}%)" for k, v in row.get("ms_per_image", {}).items())
    print(f"{label:32s} {row['images']} images, {row['persons']} persons, {row['wall_s']:.1f} s, "
          f"{row['images_per_s']:.3f} images/s{ratio} (+{row['setup_s']:.1f} s setup) | per image: {split}", flush=True)


def _detector_rates(results: dict, rows: list, work: Path, images: list, det_size: int | None, hw) -> None:
    """Each detector row's GFLOP/s and share of the measured ceiling of its precision: in the detect stage of
    the row, and of the set-up alone (the images in the main thread, warm, nothing else running: no reader thread,
    no decode workers), whose share of the network's roofline (frpose_cli/deploy/roofline.py) is reported too."""
    from frpose_cli.data.images import read_image
    from frpose_cli.deploy.bench_detectors import ceiling_shares, network_costs, time_detector
    from frpose_cli.runtime.optimize import SETUP_PRECISION
    flops, costs, ceilings = {}, {}, {}
    arrays = [read_image(p)[0] for p in images]
    for label, _, arch, setup, overlap in rows:
        if arch is None or overlap:   # overlapped, the detect stage is the wait, not the detector's time
            continue
        if arch not in flops:
            flops[arch], costs[arch] = network_costs(build_detector(arch, work / f"{arch}.pth", "cpu", 0.3, det_size,
                                                                    "fp32"), arrays)
        precision = SETUP_PRECISION.get(setup, setup)
        row = results["rows"][label]
        seconds = row["ms_per_image"]["detect"] * row["images"] / 1000
        alone = len(images) * time_detector(build_detector(arch, work / f"{arch}.pth", "cpu", 0.3, det_size, setup),
                                            arrays, rounds=1, warmup=1)
        staged = ceiling_shares(ceilings, precision, flops[arch], costs[arch], max(seconds, 1e-9), "cpu", hw)
        by_itself = ceiling_shares(ceilings, precision, flops[arch], costs[arch], alone, "cpu", hw)
        rate, ceiling = staged["gflops_per_s"], ceilings[precision]
        row.update({"detect_gflop_per_image": round(flops[arch] / len(images) / 1e9, 1),
                    "detect_gflops_per_s": rate, "ceiling_precision": precision,
                    "ceiling_gflops": round(ceiling, 1), "pct_ceiling": staged["pct_ceiling"],
                    "alone_ms_per_image": round(alone / len(images) * 1000, 1),
                    "alone_gflops_per_s": by_itself["gflops_per_s"], "pct_ceiling_alone": by_itself["pct_ceiling"],
                    "pct_roofline_alone": by_itself["pct_roofline"]})
        print(f"{label:32s} detect: {row['detect_gflop_per_image']} GFLOP an image, {rate:.0f} GFLOP/s, "
              f"{row['pct_ceiling']:.0f} % of the {precision} ceiling ({ceiling:.0f} GFLOP/s); the set-up "
              f"alone: {row['alone_ms_per_image']:.0f} ms an image, {row['alone_gflops_per_s']:.0f} GFLOP/s, "
              f"{row['pct_ceiling_alone']:.0f} % ({row['pct_roofline_alone']:.0f} % of its roofline)", flush=True)
    results["bandwidth_gb_s"] = {str(k): round(v, 1) for k, v in ceilings.get("bandwidth_gb_s", {}).items()}


def _yolo_row(weights: Path, images: list) -> dict | None:
    """The peer: ultralytics' own end-to-end predict (detection and pose in one network), one image at a time."""
    try:
        from ultralytics import YOLO
    except ImportError:
        print("ultralytics: not installed, no peer row (pip install ultralytics in a scratch venv)", flush=True)
        return None
    if not weights.is_file():
        print(f"ultralytics: {weights} not found, no peer row", flush=True)
        return None
    start = time.perf_counter()
    model = YOLO(str(weights))
    model.predict(str(images[0]), verbose=False, device="cpu")     # warm-up, as the rows' setup
    setup_s = time.perf_counter() - start
    start, persons = time.perf_counter(), 0
    for path in images:
        persons += sum(len(r.boxes) for r in model.predict(str(path), verbose=False, device="cpu"))
    wall = time.perf_counter() - start
    return {"images": len(images), "persons": persons, "wall_s": round(wall, 2), "setup_s": round(setup_s, 2),
            "images_per_s": round(len(images) / wall, 3)}


if __name__ == "__main__":
    sys.exit(main())
