"""COCO keypoint annotation files, read and checked before anything else uses them.

One reader for evaluation's ground truth (:mod:`frpose_cli.metrics.cocoeval`), training's
data (:mod:`frpose_cli.data.dataset`) and test-dev image lists: unreadable files and malformed
records give one :class:`FrposeError` naming the first bad record, never a pycocotools assert
after the network has run.
"""
from __future__ import annotations

import json
import math
import numbers
from pathlib import Path

import numpy as np

from frpose_cli.data.keypoints import keypoint_category
from frpose_cli.errors import FrposeError


def read_json(path, what: str):
    path = Path(path)
    if path.is_dir():
        raise FrposeError(f"{what} {path} is a folder, not a JSON file")
    if not path.is_file():
        raise FrposeError(f"{what} not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise FrposeError(f"{what} {path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise FrposeError(f"{what} {path} cannot be read ({type(e).__name__}: {e})") from None


def read_keypoint_annotations(ann_file, data=None) -> tuple[dict, dict, frozenset]:
    """A COCO keypoint annotation file as JSON, checked: its keypoint category and image ids.

    The one reader behind evaluation's ground truth and training's data (``dataset.load_coco``).
    ``data``: the file's JSON when the caller has read it already (eval reads it once to tell a
    test split's image-info file apart); it is checked here as if just read, and filled in."""
    data = read_json(ann_file, "annotation file") if data is None else data
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise FrposeError(f"annotation file {ann_file} is not COCO format (needs 'images' and 'annotations' lists)")
    cat = keypoint_category(data.get("categories"))
    if cat is None:
        raise FrposeError(f"annotation file {ann_file} has no keypoint category (is it a person_keypoints_*.json?)")
    return data, cat, check_annotation_records(data, cat, f"annotation file {ann_file}")


def _int_id(value) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, numbers.Real, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return int(number) if math.isfinite(number) and number.is_integer() else None


def check_annotation_records(data: dict, category: dict, source: str) -> frozenset:
    """Check every image and keypoint annotation record before pycocotools sees it (its failures are
    bare asserts and IndexErrors, after the network has run); one error names the first bad record.
    ``num_keypoints`` and ``area``, which COCOeval reads but some exporters omit, are filled in from
    the keypoints and the box.  Returns the image ids."""
    ids = []
    for i, im in enumerate(data["images"]):
        image_id = _int_id(im.get("id")) if isinstance(im, dict) else None
        if image_id is None:
            raise FrposeError(f"{source}: an image record has no integer 'id' (images[{i}])")
        ids.append(image_id)
    check_unique_ids(source, "image", ids, [im.get("file_name", "?") for im in data["images"]])
    image_ids = frozenset(ids)
    k, cat_id = len(category["keypoints"]), category.get("id")
    check_unique_ids(source, "annotation", [_int_id(a.get("id")) for a in data["annotations"] if isinstance(a, dict)
                                            and _int_id(a.get("id")) is not None])
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise FrposeError(f"{source}: annotations[{i}] is not an object")
        if ann.get("category_id", cat_id) != cat_id:
            continue
        name = f"annotation {ann.get('id', f'#{i}')}"
        if _int_id(ann.get("id")) is None:
            raise FrposeError(f"{source}: {name} (annotations[{i}]) has no integer 'id'")
        if _int_id(ann.get("image_id")) not in image_ids:
            raise FrposeError(f"{source}: {name} refers to image {ann.get('image_id')!r}, which the file does not list")
        kps = ann.get("keypoints")
        if not isinstance(kps, list) or len(kps) != 3 * k:
            got = len(kps) if isinstance(kps, list) else ("no" if kps is None else type(kps).__name__)
            raise FrposeError(f"{source}: {name} (image {ann['image_id']}) has {got} keypoint values, "
                              f"expected {3 * k} ({k} keypoints × x, y, v)")
        if not all(finite_number(v) for v in kps):
            raise FrposeError(f"{source}: {name} (image {ann['image_id']}) has non-numeric or non-finite "
                              "keypoint values")
        ann.setdefault("num_keypoints", sum(1 for v in kps[2::3] if v > 0))
        box = ann.get("bbox")
        if box is not None and (not isinstance(box, list) or len(box) != 4 or not all(finite_number(v) for v in box)):
            raise FrposeError(f"{source}: {name} (image {ann['image_id']}) has a bbox that is not 4 finite numbers")
        if "area" not in ann and box is not None:
            ann["area"] = float(box[2]) * float(box[3])
    return image_ids


def check_unique_ids(source: str, what: str, ids: list, names: list | None = None) -> None:
    """One line naming the ids that appear more than once: files merged by hand without renumbering
    would otherwise crop one image's people from another (pycocotools keeps the last record)."""
    seen, dup = {}, {}
    for i, value in enumerate(ids):
        if value in seen:
            dup.setdefault(value, [seen[value]]).append(i)
        else:
            seen[value] = i
    if not dup:
        return
    def show(value):
        where = f" ({', '.join(str(names[i]) for i in dup[value][:3])})" if names else ""
        return f"{value}{where}"
    shown = "; ".join(show(v) for v in list(dup)[:3]) + (f"; +{len(dup) - 3} more" if len(dup) > 3 else "")
    raise FrposeError(f"{source}: {len(dup)} {what} id{'s' if len(dup) > 1 else ''} used more than once: {shown} "
                      f"(renumber the {what}s of merged files so that each id is unique)")


def finite_number(v) -> bool:
    """A real, finite number (not a bool, not NaN or inf)."""
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) and math.isfinite(v)
