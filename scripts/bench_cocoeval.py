"""Time COCO keypoint evaluation of a val2017-sized results file: pycocotools vs faster-coco-eval.

The ground truth is a real COCO keypoint file (default: ../shared/data/coco-mini val) tiled
with fresh image ids up to val2017's 5,000 images; the results are its persons' keypoints
with pixel noise proportional to the person's size, random scores and some extra false
poses, about 6,000 instances like a detector-box run on val2017.  Both implementations evaluate
the same files through ``frpose_cli.metrics.cocoeval.coco_keypoint_eval`` (ground-truth indexing
excluded, results loading included), in one process, so their times compare directly.
faster-coco-eval is offered only if all ten figures equal pycocotools' to 4 decimals.

    python scripts/bench_cocoeval.py [--ann ANN.json] [--images 5000] [--repeat 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from frpose_cli.metrics.cocoeval import METRIC_NAMES, GroundTruth, coco_keypoint_eval, validate_results  # noqa: E402

DEFAULT_ANN = Path(__file__).resolve().parents[2] / "shared/data/coco-mini/annotations/person_keypoints_val2017.json"


def tiled_ground_truth(ann: dict, n_images: int) -> dict:
    images, anns = [], []
    src_imgs = ann["images"]
    by_img = {}
    for a in ann["annotations"]:
        by_img.setdefault(a["image_id"], []).append(a)
    next_ann = 1
    for i in range(n_images):
        src = src_imgs[i % len(src_imgs)]
        img = dict(src, id=i + 1)
        images.append(img)
        for a in by_img.get(src["id"], []):
            anns.append(dict(a, id=next_ann, image_id=i + 1))
            next_ann += 1
    return {"images": images, "annotations": anns, "categories": ann["categories"]}


def synthetic_results(gt: dict, rng, extra_frac: float = 0.15) -> list:
    res = []
    people = [a for a in gt["annotations"] if a["num_keypoints"] > 0 and not a.get("iscrowd")]
    for a in people:
        k = np.asarray(a["keypoints"], np.float64).reshape(-1, 3)
        size = np.sqrt(max(a["area"], 1.0))
        k[:, :2] += rng.normal(0, 0.04 * size, size=(len(k), 2))
        k[:, 2] = rng.uniform(0.2, 1.0, len(k))
        res.append({"image_id": a["image_id"], "category_id": 1, "keypoints": k.reshape(-1).tolist(),
                    "score": float(rng.uniform(0.3, 1.0))})
    for j in rng.choice(len(people), int(extra_frac * len(people))):   # false poses: another person's, moved
        a = people[j]
        k = np.asarray(a["keypoints"], np.float64).reshape(-1, 3)
        k[:, :2] += rng.normal(0, 40.0, size=2)
        k[:, 2] = rng.uniform(0.0, 0.5, len(k))
        res.append({"image_id": int(rng.integers(1, len(gt["images"]) + 1)), "category_id": 1,
                    "keypoints": k.reshape(-1).tolist(), "score": float(rng.uniform(0.0, 0.5))})
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ann", type=Path, default=DEFAULT_ANN)
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)

    src = json.loads(args.ann.read_text())
    dataset = tiled_ground_truth(src, args.images)
    cat = next(c for c in dataset["categories"] if c.get("keypoints"))
    gt = GroundTruth(str(args.ann), dataset, int(cat["id"]), len(cat["keypoints"]),
                     frozenset(im["id"] for im in dataset["images"]))
    results = validate_results(synthetic_results(dataset, np.random.default_rng(args.seed)), gt).results
    n_people = sum(1 for a in dataset["annotations"] if a["num_keypoints"] > 0)
    print(f"ground truth: {len(dataset['images'])} images, {n_people} persons with keypoints; "
          f"results: {len(results)} poses")

    cocoevals = ["pycocotools"]
    try:
        import faster_coco_eval  # noqa: F401
        cocoevals.append("faster")
    except ImportError:
        print("faster-coco-eval not installed: timing pycocotools only")
    report = {"images": len(dataset["images"]), "results": len(results), "cocoevals": {}}
    for cocoeval in cocoevals:
        gt.coco(cocoeval)                      # index the ground truth once, outside the timing
        times, metrics = [], None
        for _ in range(args.repeat):
            t = time.perf_counter()
            metrics = coco_keypoint_eval(gt, results, cocoeval)
            times.append(time.perf_counter() - t)
        report["cocoevals"][cocoeval] = {"seconds_min": min(times), "seconds_all": times, "metrics": metrics}
        print(f"{cocoeval:12s} {min(times):7.2f} s (best of {args.repeat})  AP {metrics['AP']:.4f}")
    if "faster" in report["cocoevals"]:
        ref, fast = (report["cocoevals"][b]["metrics"] for b in ("pycocotools", "faster"))
        diff = max(abs(ref[n] - fast[n]) for n in METRIC_NAMES)
        same = all(round(ref[n], 4) == round(fast[n], 4) for n in METRIC_NAMES)
        ratio = report["cocoevals"]["pycocotools"]["seconds_min"] / report["cocoevals"]["faster"]["seconds_min"]
        report.update(max_abs_difference=diff, equal_to_4_decimals=same, speedup=ratio)
        print(f"faster-coco-eval: {ratio:.1f}× faster; max |difference| {diff:.2e}; "
              f"equal to 4 decimals: {'yes' if same else 'NO (do not offer it)'}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
