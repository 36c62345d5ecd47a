"""Learnability check (not a test): a small card trained for a few CPU minutes must fit.

    python scripts/learnability.py ../shared/data/coco-mini --epochs 15

Trains ``--model`` (frpose-r18 at 128x96 by default; Adam 1e-3 as in the recipe, ImageNet
encoder if cached) on the first ``--people`` people of the training split, without
augmentation unless ``--augment`` (a fitting check), prints the training loss of the first
and the last epoch and their ratio, and, when ``frpose eval`` is available, the train-set AP with ground-truth boxes.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from frpose_cli.training.train import TrainConfig, run


def fit(data, model, input_size, epochs, people, batch_size, workers=1, pretrained="auto", out="runs/learnability",
        seed=0, augment=False):
    """Train ``model`` on the first ``people`` people of DATA's train split (0: all); returns the
    annotation file and image folder it trained on (a subset file is written next to the run)."""
    out = Path(out)
    h, w = (int(v) for v in str(input_size).lower().split("x"))
    ann = Path(data) / "annotations" / "person_keypoints_train2017.json"
    if people:   # a fixed subset, written next to the run so eval scores the same people
        coco = json.loads(ann.read_text())
        usable = [a for a in coco["annotations"] if a.get("num_keypoints", 0) > 0 and not a.get("iscrowd")]
        coco["annotations"] = usable[:people]
        coco["images"] = [i for i in coco["images"] if i["id"] in {a["image_id"] for a in coco["annotations"]}]
        out.mkdir(parents=True, exist_ok=True)
        ann = out / "train_subset.json"
        ann.write_text(json.dumps(coco))
    images = str(Path(data) / "train2017")
    run(TrainConfig(model=model, train_ann=str(ann), train_images=images, input_size=[h, w], epochs=epochs,
                    batch_size=batch_size, workers=workers, pretrained=pretrained, seed=seed,
                    out=str(out), val_every=0, log_every=1, quiet=True, augment=augment))
    return ann, images


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="COCO root, e.g. ../shared/data/coco-mini")
    ap.add_argument("--model", default="frpose-r18")
    ap.add_argument("--input-size", default="128x96")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--people", type=int, default=16, help="train on the first N people of the split (0: all)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--pretrained", default="auto")
    ap.add_argument("--out", default="runs/learnability")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--augment", action="store_true", help="use the card's augmentation (default: none, to fit fast)")
    args = ap.parse_args()
    out = Path(args.out)
    if (out / "last.pt").exists():
        sys.exit(f"{out} already holds a run; pass another --out")
    t0 = time.perf_counter()
    ann, images = fit(args.data, args.model, args.input_size, args.epochs, args.people, args.batch_size, args.workers,
                      args.pretrained, out, args.seed, args.augment)
    minutes = (time.perf_counter() - t0) / 60
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["kind"] == "epoch"]
    steps = [r for r in records if r["kind"] == "step"]
    first, last = epochs[0]["train_loss"], epochs[-1]["train_loss"]
    print(f"{args.model} {args.input_size}, {args.epochs} epochs of {args.people or 'all'} people of {args.data} train, batch {args.batch_size}: "
          f"{minutes:.1f} min on this machine")
    print(f"train loss: first epoch {first:.3g} → last epoch {last:.3g} ({first / last:.1f}× lower); "
          f"first step {steps[0]['loss']:.3g} → last step {steps[-1]['loss']:.3g}")
    print(f"curve: {out / 'training_curve.png'}, records: {out / 'metrics.jsonl'}")
    cmd = [sys.executable, "-m", "frpose_cli.cli.app", "eval", "--weights", str(out / "last.pt"), "--ann", str(ann),
           "--images", images, "--gt-boxes"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode == 0:
        print("train-set AP with ground-truth boxes (`" + " ".join(cmd[3:]) + "`):")
        print(res.stdout.strip())
    else:
        print(f"(train-set AP not measured: `frpose eval` said: {res.stderr.strip().splitlines()[-1:]})")


if __name__ == "__main__":
    main()
