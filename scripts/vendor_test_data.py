"""Copy the few real COCO images and their annotation records that the tests use into tests/data.

    python scripts/vendor_test_data.py ../shared/data/coco-mini

tests/data/coco mirrors the COCO layout (annotations/, train2017/, val2017/) so
`--data tests/data/coco` works like a real COCO root. Records are copied unchanged.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

SPLITS = {"train2017": [293802, 554625, 113588],       # 7, 5 and 4 annotated persons
          "val2017": [785, 40083, 196141, 197388]}      # the 4 images with real detector boxes
DET_FILE = "person_detection_results/COCO_val2017_detections_AP_H_56_person_subset.json"


def main(src: str, dst: str = "tests/data") -> None:
    src_root, out = Path(src), Path(dst)
    for split, ids in SPLITS.items():
        ann = json.loads((src_root / f"annotations/person_keypoints_{split}.json").read_text())
        keep = set(ids)
        subset = {
            "info": ann.get("info", {}), "licenses": ann.get("licenses", []),
            "images": [im for im in ann["images"] if im["id"] in keep],
            "annotations": [a for a in ann["annotations"] if a["image_id"] in keep],
            "categories": ann["categories"],
        }
        (out / "coco/annotations").mkdir(parents=True, exist_ok=True)
        (out / f"coco/annotations/person_keypoints_{split}.json").write_text(json.dumps(subset))
        (out / f"coco/{split}").mkdir(parents=True, exist_ok=True)
        for im in subset["images"]:
            shutil.copy2(src_root / split / im["file_name"], out / f"coco/{split}" / im["file_name"])
        print(split, len(subset["images"]), "images", len(subset["annotations"]), "annotations")
    (out / "coco/person_detection_results").mkdir(parents=True, exist_ok=True)
    shutil.copy2(src_root / DET_FILE, out / "coco" / DET_FILE)


if __name__ == "__main__":
    main(*sys.argv[1:])
