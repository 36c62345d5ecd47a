"""`frpose eval --detector NAME`: person boxes from a zoo detector instead of a detection-results file.

The paper's protocol evaluates with a fixed detection file (the 56-person-AP boxes of Simple Baselines), and
``eval`` keeps doing so by default; naming a detector measures the pipeline ``predict`` runs.  The
detector's boxes are written first, as a COCO detection-results file beside the keypoint results
(``detections.json``: reusable with ``--boxes``), then evaluated exactly as a given file would be.
"""
from __future__ import annotations

from pathlib import Path

from frpose_cli.data.annotations import read_json
from frpose_cli.errors import FrposeError
from frpose_cli.fileio import atomic_write_json
from frpose_cli.outputs import check_output_file


def detections_path(results: Path) -> Path:
    """Where the detector's boxes go: beside the results file, never over an existing file."""
    return check_output_file(Path(results).with_name(Path(results).stem + "-detections.json"), "detections",
                             overwrite=False)


def detect_annotated_images(detector, ann_file: Path, image_dir: Path, out: Path, log=print, progress=True,
                            images: list | None = None) -> Path:
    """Run ``detector`` on every image the annotation file lists (``images``: its ``images`` list, when the
    caller has read it already); write COCO detection results to ``out``.
    Unreadable images are skipped and counted (their persons are then missed, as with a detector that saw none)."""
    from tqdm import tqdm

    from frpose_cli.data.images import ImageReadError, read_image
    from frpose_cli.data.sources import SourceItem
    if not callable(detector):
        raise TypeError("detector must be callable on a SourceItem")
    if images is None:
        images = read_json(ann_file, "annotation file").get("images", [])
    records, skipped = [], []
    for info in tqdm(images, desc="detect", disable=not progress, leave=False):
        path = Path(image_dir) / info["file_name"]
        try:
            image = read_image(path)[0]
        except (ImageReadError, OSError) as e:
            skipped.append(f"{info['file_name']} ({e})")
            continue
        item = SourceItem(len(records), path, info["file_name"], image=image)
        for x, y, w, h, score in detector(item).tolist():
            records.append({"image_id": info["id"], "category_id": 1, "bbox": [round(v, 2) for v in (x, y, w, h)],
                            "score": round(float(score), 5)})
    if skipped:
        log(f"detector: {len(skipped)} image(s) could not be read and have no boxes: {', '.join(skipped[:5])}"
            + (" …" if len(skipped) > 5 else ""))
    if not images:
        raise FrposeError(f"{ann_file}: no images listed")
    atomic_write_json(out, records)
    log(f"detector: {len(records)} person boxes on {len(images) - len(skipped)} images → {out}")
    return out
