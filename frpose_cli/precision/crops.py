"""Real person crops for int8 calibration and the accuracy gate.

Sources are COCO-format keypoint roots: the vendored slice in ``tests/data/coco`` of a
checkout (7 images, 28 people) and any root the user names (``--calib-data``).  The
**train** split of each root calibrates, the **val** split gates, and a person used for
the gate is never used to calibrate (ids are excluded), so the gate measures the
quantized network on crops its scales were not fitted to.

A crop is cut exactly as ``frpose eval --gt-boxes`` cuts it (box → centre/scale with the
1.25 padding, the codec's crop transform), so what the gate sees is what evaluation sees.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from frpose_cli.data.annotations import read_keypoint_annotations
from frpose_cli.data.codecs import codec_for_card
from frpose_cli.errors import FrposeError
from frpose_cli.data.geometry import box_to_center_scale, crop_image
from frpose_cli.data.images import ImageReadError, read_image
from frpose_cli.data.normalize import crops_to_input

VENDORED_ROOT = Path(__file__).resolve().parents[2] / "tests" / "data" / "coco"
DEFAULT_LIMIT = 64          # people per source and split: enough for stable medians, quick on a CPU


@dataclass
class CropSet:
    crops: np.ndarray                    # (N, H, W, 3) RGB uint8, what the top-down engine takes
    normalize: dict                      # the card's normalisation (for :attr:`inputs`)
    centers: np.ndarray                  # (N, 2) crop centres, image pixels
    scales: np.ndarray                   # (N, 2) crop sizes, image pixels
    annotations: list                    # the N COCO annotation records
    images: list                         # their COCO image records
    categories: list = field(default_factory=list)
    sources: list = field(default_factory=list)   # "ann_file (n people)"

    def __len__(self) -> int:
        return len(self.annotations)

    @property
    def inputs(self) -> torch.Tensor:
        """(N, 3, H, W) normalised network inputs (int8 calibration feeds these)."""
        return crops_to_input(torch.from_numpy(self.crops), self.normalize)

    @property
    def ann_ids(self) -> set:
        return {a["id"] for a in self.annotations}

    def ground_truth(self) -> dict:
        """A COCO keypoint dataset holding exactly these people (for OKS-AP on the crops)."""
        return {"images": copy.deepcopy(self.images), "annotations": copy.deepcopy(self.annotations),
                "categories": copy.deepcopy(self.categories)}

    def describe(self) -> str:
        return f"{len(self)} real person crops ({'; '.join(self.sources)})"


def vendored_root() -> Path | None:
    """The checkout's vendored COCO slice, or None in an installed wheel (which ships no images)."""
    return VENDORED_ROOT if (VENDORED_ROOT / "annotations").is_dir() else None


def split_paths(root, split: str) -> tuple[Path, Path]:
    root = Path(root)
    return root / "annotations" / f"person_keypoints_{split}.json", root / split


def person_crops(card, ann_file, image_dir, limit: int | None = DEFAULT_LIMIT, exclude_ids=(),
                 codec_name: str | None = None) -> CropSet:
    """Crops of the annotated people (keypoints > 0, not crowd) of one annotation file, in file order."""
    ann_file, image_dir = Path(ann_file), Path(image_dir)
    data, _, _ = read_keypoint_annotations(ann_file)   # checked: ids unique, records well formed
    files = {im["id"]: im for im in data.get("images", [])}
    codec = codec_for_card(card, codec_name)
    h, w = card.input_size
    exclude = set(exclude_ids)
    crops, centers, scales, anns, images, loaded = [], [], [], [], {}, {}
    for a in data.get("annotations", []):
        if limit is not None and len(anns) >= limit:
            break
        if a.get("num_keypoints", 0) == 0 or a.get("iscrowd") or a.get("id") in exclude or a["image_id"] not in files:
            continue
        path = image_dir / files[a["image_id"]]["file_name"]
        if path not in loaded:   # the one decoding policy (frpose_cli.data.images), as eval and predict
            try:
                loaded[path] = read_image(path)[0]
            except ImageReadError:
                loaded[path] = None
        if loaded[path] is None:
            continue   # a missing image: the person is skipped, the count in `sources` shows it
        c, s = box_to_center_scale(a["bbox"], w / h)
        crops.append(crop_image(loaded[path], c, s, 0, (w, h), udp=codec.use_udp))
        centers.append(c)
        scales.append(s)
        anns.append(a)
        images[a["image_id"]] = files[a["image_id"]]
    stacked = np.stack(crops) if crops else np.zeros((0, h, w, 3), np.uint8)
    return CropSet(stacked, dict(card.normalize), np.array(centers, np.float32).reshape(-1, 2), np.array(scales, np.float32).reshape(-1, 2),
                   anns, list(images.values()), data.get("categories", []), [f"{ann_file} ({len(anns)} people)"])


def merge(sets: list[CropSet]) -> CropSet:
    """One set of every person in ``sets``; a person found in two sources (the vendored slice is
    cut from COCO, so a user's COCO root holds the same people) is kept once."""
    seen, parts, sources = set(), [], []
    for s in sets:
        keep = [i for i, a in enumerate(s.annotations) if a["id"] not in seen]
        seen.update(s.annotations[i]["id"] for i in keep)
        if keep:
            parts.append((s, keep))
            dup = len(s) - len(keep)
            sources += [d.replace(f"({len(s)} people)", f"({len(keep)} more people)") if dup else d
                        for d in s.sources]
    if not parts:
        raise FrposeError("no real person crops found")
    images = {im["id"]: im for s, _ in parts for im in s.images}
    return CropSet(np.concatenate([s.crops[keep] for s, keep in parts]), parts[0][0].normalize,
                   np.concatenate([s.centers[keep] for s, keep in parts]),
                   np.concatenate([s.scales[keep] for s, keep in parts]),
                   [s.annotations[i] for s, keep in parts for i in keep],
                   [im for im in images.values() if any(im["id"] == s.annotations[i]["image_id"]
                                                        for s, keep in parts for i in keep)],
                   parts[0][0].categories, sources)


def _roots(extra_root) -> list[Path]:
    roots = [r for r in (vendored_root(), Path(extra_root) if extra_root else None) if r is not None]
    if extra_root and not Path(extra_root).is_dir():
        raise FrposeError(f"--calib-data {extra_root}: no such folder (expected a COCO root with annotations/)")
    return roots


def _from_roots(card, roots, split, limit, exclude_ids=(), codec_name=None) -> list[CropSet]:
    out = []
    for root in roots:
        ann, images = split_paths(root, split)
        if ann.is_file():
            out.append(person_crops(card, ann, images, limit, exclude_ids, codec_name))
    return out


def gate_crops(card, extra_root=None, limit: int | None = DEFAULT_LIMIT, codec_name=None) -> CropSet:
    """The accuracy gate's crops: the val split of the vendored slice and of ``extra_root``."""
    sets = _from_roots(card, _roots(extra_root), "val2017", limit, codec_name=codec_name)
    if not any(len(s) for s in sets):
        raise FrposeError("the accuracy gate needs real person crops: give --calib-data COCO_ROOT "
                          "(its val2017 people are used)")
    return merge(sets)


def calibration_crops(card, extra_root=None, limit: int | None = DEFAULT_LIMIT, exclude_ids=(),
                      codec_name=None) -> CropSet:
    """int8 calibration crops: the train split of the vendored slice and of ``extra_root``,
    without the people in ``exclude_ids`` (the gate's)."""
    sets = _from_roots(card, _roots(extra_root), "train2017", limit, exclude_ids, codec_name)
    if not any(len(s) for s in sets):
        raise FrposeError("int8 calibration needs real person crops: give --calib-data COCO_ROOT "
                          "(its train2017 people are used)")
    return merge(sets)
