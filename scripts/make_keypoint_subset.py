"""Write a COCO-format dataset with a chosen subset of COCO's keypoints: the worked example of
training frpose on one's own keypoints (README, docs/keypoints.md).

    python scripts/make_keypoint_subset.py OUT                      # nose, shoulders, hips of tests/data/coco
    python scripts/make_keypoint_subset.py OUT --names head,s1,s2,h1,h2    # the same points, own names
    python scripts/make_keypoint_subset.py OUT --category-sigmas --category-flip-pairs

OUT gets the COCO layout ``frpose train/eval --data OUT`` reads: ``annotations/person_keypoints_
{train,val}2017.json``, ``train2017/``, ``val2017/`` (images copied) and ``person_detection_results/``.
Each annotation keeps only the chosen keypoints (``num_keypoints`` recounted); the category lists
their names and COCO's limbs between them (1-based, as COCO).  ``--names`` renames the points (names
frpose cannot recognise: no side words, no COCO σ), ``--category-sigmas`` writes COCO's σ of the
kept points into the category (mmpose's ``sigmas``), ``--category-flip-pairs`` their left/right pairs
(0-based ``flip_pairs``).  OUT must not exist or be empty: nothing is overwritten.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from frpose_cli.data.keypoints import COCO17, COCO17_NAMES, COCO17_SIGMA_BY_NAME  # noqa: E402

DEFAULT_KEYPOINTS = ("nose", "left_shoulder", "right_shoulder", "left_hip", "right_hip")
SPLITS = ("train2017", "val2017")


def subset_annotations(data: dict, keep, names=None, category_sigmas: bool = False,
                       category_flip_pairs: bool = False) -> dict:
    """A COCO keypoint annotation dict with only the keypoints ``keep`` (COCO names), optionally renamed."""
    keep = list(keep)
    unknown = [k for k in keep if k not in COCO17_NAMES]
    if unknown or not keep or len(set(keep)) != len(keep):
        raise SystemExit(f"--keypoints: distinct COCO keypoint names expected (unknown: {', '.join(unknown)})")
    names = list(names) if names else keep
    if len(names) != len(keep) or len(set(names)) != len(names):
        raise SystemExit(f"--names: {len(keep)} distinct names expected, got {len(names)}")
    index = [COCO17_NAMES.index(k) for k in keep]
    new = {old: i for i, old in enumerate(index)}
    category = dict(next(c for c in data["categories"] if c.get("keypoints")))
    category["keypoints"] = names
    category["skeleton"] = [[new[a] + 1, new[b] + 1] for a, b in COCO17.skeleton if a in new and b in new]
    if category_sigmas:
        category["sigmas"] = [COCO17_SIGMA_BY_NAME[k] for k in keep]
    if category_flip_pairs:
        category["flip_pairs"] = [[new[a], new[b]] for a, b in COCO17.flip_pairs if a in new and b in new]
    annotations = []
    for ann in data["annotations"]:
        kp = ann.get("keypoints") or [0] * 51
        kept = [v for i in index for v in kp[3 * i:3 * i + 3]]
        annotations.append({**ann, "keypoints": kept, "num_keypoints": sum(1 for v in kept[2::3] if v > 0)})
    return {**data, "annotations": annotations, "categories": [category]}


def write_subset(source, out, keep=DEFAULT_KEYPOINTS, names=None, category_sigmas=False,
                 category_flip_pairs=False) -> Path:
    source, out = Path(source), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SystemExit(f"{out} exists and is not an empty folder; choose a new one (nothing is overwritten)")
    for split in SPLITS:
        ann = source / "annotations" / f"person_keypoints_{split}.json"
        if not ann.is_file():
            continue
        data = subset_annotations(json.loads(ann.read_text()), keep, names, category_sigmas, category_flip_pairs)
        (out / "annotations").mkdir(parents=True, exist_ok=True)
        (out / "annotations" / ann.name).write_text(json.dumps(data))
        (out / split).mkdir(parents=True, exist_ok=True)
        for im in data["images"]:
            if (source / split / im["file_name"]).is_file():
                shutil.copy2(source / split / im["file_name"], out / split / im["file_name"])
        people = sum(1 for a in data["annotations"] if a["num_keypoints"] > 0 and not a.get("iscrowd"))
        print(f"{split}: {len(data['images'])} images, {people} persons with keypoints → {out / 'annotations' / ann.name}")
    if not (out / "annotations").is_dir():
        raise SystemExit(f"{source}: no annotations/person_keypoints_{{train,val}}2017.json found")
    if (source / "person_detection_results").is_dir():
        shutil.copytree(source / "person_detection_results", out / "person_detection_results")
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="new folder to write the dataset to")
    p.add_argument("--source", default=str(ROOT / "tests" / "data" / "coco"), help="COCO root (default: the vendored data)")
    p.add_argument("--keypoints", default=",".join(DEFAULT_KEYPOINTS), help="COCO keypoint names to keep, in order")
    p.add_argument("--names", default=None, help="new names for them (comma list)")
    p.add_argument("--category-sigmas", action="store_true", help="write COCO's σ into the category ('sigmas')")
    p.add_argument("--category-flip-pairs", action="store_true", help="write 0-based 'flip_pairs' into the category")
    a = p.parse_args(argv)
    write_subset(a.source, a.out, a.keypoints.split(","), a.names.split(",") if a.names else None,
                 a.category_sigmas, a.category_flip_pairs)


if __name__ == "__main__":
    main()
