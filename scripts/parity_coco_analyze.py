"""frpose's error diagnosis side by side with the public coco-analyze (Ronchi & Perona's code).

    python scripts/parity_coco_analyze.py ANN.json --reference DIR [--seeds 0 1 2] [--areas coco|analyze]

``ANN.json``: a COCO keypoint annotation file (e.g. coco-mini's val2017).  Synthetic results
with every error type (jitter, inversions, swaps with neighbours, misses, duplicates,
background poses, missed persons) are made from it per seed, and both tools diagnose them.
``DIR`` holds coco-analyze's ``pycocotools/cocoanalyze.py`` and ``cocoeval.py`` as a package
named ``ca`` (``DIR/ca/__init__.py``).  That code predates numpy 2 and imports matplotlib,
colour and skimage for its plots: to run it here, replace ``np.float`` by ``float``, make the
``np.linspace`` counts ints, point ``from . import mask`` at ``pycocotools.mask`` and drop the
plotting imports (nothing of its analysis changes).  Prints, per step and area range, the
largest AP difference over the ten OKS thresholds, and the keypoint class counts of both.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import sys

import numpy as np

from frpose_cli.evaluation.diagnosis import COCO_AREAS, diagnose
from frpose_cli.metrics.cocoeval import load_ground_truth, validate_results
from frpose_cli.data.keypoints import COCO17, COCO17_OKS_SIGMAS

SIGMAS = np.asarray(COCO17_OKS_SIGMAS)
FLIP = COCO17.flip_index()
NAMES = {"baseline": "original", "miss": "miss", "swap": "swap", "inversion": "inversion", "jitter": "jitter",
         "score": "score", "bckgd_false_pos": "background_fp", "false_neg": "false_negatives"}


def synthetic_results(data: dict, seed: int) -> list:
    rng = np.random.default_rng(seed)
    by_img, out = {}, []
    for a in data["annotations"]:
        by_img.setdefault(a["image_id"], []).append(a)
    sizes = {i["id"]: (i["width"], i["height"]) for i in data["images"]}
    for img_id, anns in by_img.items():
        people = [a for a in anns if a["num_keypoints"] > 0 and not a["iscrowd"]]
        for a in people:
            if rng.random() < 0.1:
                continue                                               # a false negative
            k = np.array(a["keypoints"], float).reshape(17, 3)
            lab, xy, scale = k[:, 2] > 0, k[:, :2].copy(), np.sqrt(a["area"])
            if not lab.all():
                xy[~lab] = xy[lab].mean(0) + rng.normal(0, scale * 0.3, ((~lab).sum(), 2))
            xy += rng.normal(0, 1, (17, 2)) * 2 * SIGMAS[:, None] * scale * rng.uniform(0.1, 1.2)
            if rng.random() < 0.3:                                     # inversion
                j = rng.integers(1, 17)
                xy[[j, FLIP[j]]] = xy[[FLIP[j], j]]
            others = [b for b in people if b is not a]
            if others and rng.random() < 0.3:                          # swap with a neighbour
                b = np.array(others[rng.integers(len(others))]["keypoints"], float).reshape(17, 3)
                j = rng.integers(17)
                if b[j, 2] > 0:
                    xy[j] = b[j, :2]
            if rng.random() < 0.3:                                     # miss
                xy[rng.integers(17)] += rng.normal(0, 1, 2) * scale
            kp = np.concatenate([xy, rng.uniform(0.1, 1, (17, 1))], 1)
            s = float(rng.uniform(0.2, 1))
            out.append({"image_id": img_id, "category_id": 1, "keypoints": kp.reshape(-1).tolist(), "score": s})
            if rng.random() < 0.2:                                     # a duplicate
                kp2 = kp.copy()
                kp2[:, :2] += rng.normal(0, 4, (17, 2))
                out.append({"image_id": img_id, "category_id": 1, "keypoints": kp2.reshape(-1).tolist(),
                            "score": s * 0.5})
        for _ in range(rng.integers(0, 3)):                            # background poses
            c = rng.uniform([0, 0], sizes[img_id])
            kp = np.concatenate([c + rng.normal(0, 20, (17, 2)), rng.uniform(0, 1, (17, 1))], 1)
            out.append({"image_id": img_id, "category_id": 1, "keypoints": kp.reshape(-1).tolist(),
                        "score": float(rng.uniform(0, 1))})
    return out


def reference(ann: str, results: list, areas: dict):
    from pycocotools.coco import COCO
    from ca.cocoanalyze import COCOanalyze
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(ann)
        ca = COCOanalyze(gt, gt.loadRes(copy.deepcopy(results)), "keypoints")
        ca.params.areaRng, ca.params.areaRngLbl = [list(v) for v in areas.values()], list(areas)
        ca.cocoEval.params.useGtIgnore, ca.cocoEval.params.gtIgnoreIds = 0, []
        ca.params.err_types = ["miss", "swap", "inversion", "jitter"]
        ca.analyze(check_kpts=True, check_scores=True, check_bckgd=True)
        ca.summarize(makeplots=False)
    ap = {}
    for s in ca.stats:
        ap.setdefault((NAMES[s["err"]], s["areaRngLbl"]), {})[round(s["oks"], 2)] = s["auc"]
    counts = {c: 0 for c in ("good", "jitter", "inversion", "swap", "miss")}
    with contextlib.redirect_stdout(io.StringIO()):
        ca.analyze(check_kpts=True, check_scores=False, check_bckgd=False)
    for cdt in ca.corrected_dts["all"]:
        if "good" in cdt:
            for c in counts:
                counts[c] += int(sum(cdt[c]))
    return ap, counts


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("ann")
    p.add_argument("--reference", required=True, help="folder holding coco-analyze's code as package 'ca'")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--areas", choices=("coco", "analyze"), default="analyze",
                   help="area ranges: COCOeval's (all from 0) or coco-analyze's (all from 32²)")
    args = p.parse_args()
    sys.path.insert(0, args.reference)
    areas = dict(COCO_AREAS)
    if args.areas == "analyze":
        areas["all"] = (32.0 ** 2, 1e10)
    data = json.load(open(args.ann))
    gt = load_ground_truth(args.ann)
    for seed in args.seeds:
        res = synthetic_results(data, seed)
        ref_ap, ref_counts = reference(args.ann, res, areas)
        ours = diagnose(gt, validate_results(res, gt).results, area_ranges=areas)
        print(f"seed {seed}: {len(res)} results")
        for (step, area), per in sorted(ref_ap.items()):
            theirs = np.array([per[t] for t in ours["oks_thresholds"]])
            diff = np.abs(np.array(ours["ap"][area][step]) - theirs).max()
            print(f"  {step:16s} {area:7s} AP coco-analyze {theirs.mean():.4f}  frpose "
                  f"{np.mean(ours['ap'][area][step]):.4f}  max |diff| over OKS {diff:.1e}")
        print(f"  keypoint classes coco-analyze {ref_counts}")
        print(f"  keypoint classes frpose       { {c: sum(v) for c, v in ours['keypoint_errors'].items()} }")


if __name__ == "__main__":
    main()
