"""COCO test-dev (the paper's Table 3): results for the evaluation server, scored there, not here.

test-dev's annotations are not public.  COCO ships ``image_info_test-dev2017.json`` (images,
no ``annotations``); the person detections of Simple Baselines/HRNet/mmpose cover it too.
``frpose eval --split test-dev2017`` (or ``--ann`` of any image-info file) runs the full
protocol (detector boxes, flip test, rescoring, OKS-NMS) and writes the server's files:

* ``person_keypoints_<split>_<alg>_results.json``: the COCO keypoint results list (the
  server's naming: ``[type]_[testset]_[alg]_results.json``);
* the same name with ``.zip``: an archive holding only that JSON, which is what the
  server's upload form takes.

``<alg>`` is ``--alg`` (default: the card name); it may hold letters, digits and ``-`` (the
``_`` separates the name's fields).  The keypoint names of an image-info file come from the
model (its category has none).
"""
from __future__ import annotations

import re
import zipfile
from collections import Counter
from pathlib import Path

from frpose_cli import run_folders
from frpose_cli.data.annotations import check_unique_ids, read_json
from frpose_cli.metrics.cocoeval import GroundTruth
from frpose_cli.errors import FrposeError
from frpose_cli.outputs import check_writable_dir
from frpose_cli.fileio import atomic_write_binary, atomic_write_json
from frpose_cli.data.keypoints import KeypointSpec
from frpose_cli.data.oks_sigmas import resolve_sigmas


def is_image_info(path=None, data=None) -> bool:
    """True for an image-info file (images, no ``annotations``), as COCO ships test-dev's
    (``data``: the file's JSON, read already)."""
    data = read_json(path, "annotation file") if data is None else data
    return isinstance(data, dict) and isinstance(data.get("images"), list) and "annotations" not in data


def load_image_info(path, keypoints: KeypointSpec, data=None) -> GroundTruth:
    """An image-info file as a :class:`GroundTruth` without persons, whose person category
    carries the model's keypoint names, so boxes, crops and results work as for val2017
    (``data``: the file's JSON, read already)."""
    data = read_json(path, "image-info file") if data is None else data
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not data["images"]:
        raise FrposeError(f"image-info file {path} has no 'images' list")
    try:
        images = [{"id": int(im["id"]), "file_name": str(im["file_name"]), "width": int(im["width"]),
                   "height": int(im["height"])} for im in data["images"]]
    except (KeyError, TypeError, ValueError):
        raise FrposeError(f"image-info file {path}: every image needs id, file_name, width and height") from None
    check_unique_ids(f"image-info file {path}", "image", [im["id"] for im in images], [im["file_name"] for im in images])
    person = next((c for c in data.get("categories") or [] if c.get("name") == "person"), {"id": 1})
    category = {"id": int(person.get("id", 1)), "name": "person", "supercategory": "person",
                "keypoints": list(keypoints.names), "skeleton": [[a + 1, b + 1] for a, b in keypoints.skeleton]}
    dataset = {"info": data.get("info", {}), "images": images, "annotations": [], "categories": [category]}
    return GroundTruth(str(path), dataset, category["id"], keypoints.num_keypoints,
                       frozenset(im["id"] for im in images), resolve_sigmas(keypoints))   # the model's σ, for OKS-NMS


def results_name(split: str, alg: str) -> str:
    """The evaluation server's file name for keypoint results."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", alg):
        raise FrposeError(f"--alg {alg!r}: use letters, digits and '-' only (the server's file name "
                          "separates its fields with '_')")
    return f"person_keypoints_{split}_{alg}_results.json"


def default_alg(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9-]+", "-", name).strip("-") or "frpose"


def check_submission_paths(json_path: Path) -> Path:
    """Refuse existing outputs and unwritable folders before any inference is done."""
    zip_path = json_path.with_suffix(".zip")
    for p in (json_path, zip_path):
        if p.exists():
            raise FrposeError(f"{p} exists; choose another --out or --alg (results of another run are "
                              "never overwritten)")
    check_writable_dir(json_path.parent, "--out")
    return zip_path


def write_submission(results: list, json_path: Path, member: str) -> Path:
    """The results JSON at ``json_path`` and ``json_path.zip`` holding it as ``member``."""
    atomic_write_json(json_path, results)
    zip_path = json_path.with_suffix(".zip")

    def write(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.write(json_path, arcname=member)

    atomic_write_binary(zip_path, write)
    return zip_path


def summary(results: list, gt: GroundTruth, skipped: dict, json_path: Path, zip_path: Path, split: str) -> str:
    covered = len({r["image_id"] for r in results})
    lines = [f"{split}: {len(results)} poses for {covered} of {len(gt.image_ids)} images (no annotations: "
             "nothing is scored here)",
             f"results: {json_path}",
             f"upload:  {zip_path} to the COCO keypoint evaluation server; AP comes from the server"]
    if skipped:
        lines.append("skipped: " + "; ".join(f"{n} {why}" for why, n in Counter(skipped).most_common()))
    return "\n".join(lines)


def run_test_dev(model, card, info_file, image_dir, split: str, alg: str | None, out, info_data=None,
                 **protocol) -> dict | None:
    """The protocol on an image-info file → the server's JSON and zip; prints where they are.

    ``protocol``: the keyword arguments of :func:`frpose_cli.evaluation.evaluate.evaluate_model`."""
    from frpose_cli.evaluation.evaluate import evaluate_model

    member = results_name(split, alg or default_alg(card.name))
    json_path = Path(out) if out is not None else run_folders.verb_dir("eval") / member   # the server's name
    zip_path = check_submission_paths(json_path)
    gt = load_image_info(info_file, card.keypoints, info_data)
    report = evaluate_model(model, card, info_file, image_dir, gt=gt, score=False, **protocol)
    if report is None:   # a shard whose part another process merges
        return None
    write_submission(report["results"], json_path, member)
    print(summary(report["results"], gt, report["skipped"], json_path, zip_path, split))
    return report
