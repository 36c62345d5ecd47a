"""Makes the PoseTrack18 fixture of tests/test_posetrack*.py: ground truth for three short
sequences built from the vendored COCO annotations, and predictions that reach every branch of
poseval's AP and MOT code (PROVENANCE.md says how poseval's figures were then produced).

Run from the repository root:  python tests/data/posetrack18/generators/make_fixture.py OUT_DIR
(writes OUT_DIR/gt/*.json and OUT_DIR/pred/*.json; deterministic).

Each sequence pans a window over one COCO image: in frame t the window's top-left corner is at
OFFSETS[t] (× the sequence's step), so every keypoint moves by a known integer offset; a keypoint
outside the window is not annotated. Head boxes (PoseTrack's bbox_head, PCKh's reference) are made
from the face keypoints: a square of side max(1.6 × the face points' larger extent, 12 px) centred
0.1 side above their mean; with fewer than two face points, from the shoulders (side 0.6 × their
distance, centred one side above their midpoint). head_top / head_bottom, which COCO lacks, are the
top and bottom centres of that box.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from frpose_cli.data.keypoints import COCO17_NAMES
from frpose_cli.tracking.posetrack import POSETRACK18_KEYPOINTS, SKELETON, posetrack_sequence, write_sequence

COCO = Path(__file__).resolve().parents[2] / "coco" / "annotations"
OFFSETS = [(0, 0), (1, 1), (2, 1), (3, 2), (4, 2), (3, 3), (2, 3), (1, 2)]   # the pan, in steps
# name, COCO file, image id, step (px), unlabeled frames, prediction model's keypoint names
SEQUENCES = [
    ("990001_mpii_test", "person_keypoints_val2017.json", 197388, (22, 9), {1, 5}, POSETRACK18_KEYPOINTS),
    ("990002_bonn_test", "person_keypoints_val2017.json", 196141, (-15, 10), {2}, POSETRACK18_KEYPOINTS),
    ("990003_mpiinew_test", "person_keypoints_train2017.json", 293802, (12, -18), {6}, COCO17_NAMES),
]
FACE = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")


def head_box(kp: dict):
    face = np.array([kp[n] for n in FACE if n in kp], dtype=float)
    if len(face) >= 2:
        side = max(1.6 * float(np.ptp(face, axis=0).max()), 12.0)
        cx, cy = face.mean(axis=0)
        cy -= 0.1 * side
    elif "left_shoulder" in kp and "right_shoulder" in kp:
        a, b = np.array(kp["left_shoulder"], float), np.array(kp["right_shoulder"], float)
        side = max(0.6 * float(np.linalg.norm(a - b)), 12.0)
        cx, cy = (a + b) / 2 - (0, side)
    else:
        return None
    return [round(cx - side / 2, 1), round(cy - side / 2, 1), round(side, 1), round(side, 1)]


def true_people(coco_file, image_id):
    """The image's people: COCO keypoints by name (labelled ones) and a head box."""
    data = json.loads((COCO / coco_file).read_text())
    image = next(i for i in data["images"] if i["id"] == image_id)
    people = []
    for a in data["annotations"]:
        if a["image_id"] != image_id or a["iscrowd"] or a["num_keypoints"] < 4:
            continue
        kp = {n: (a["keypoints"][3 * k], a["keypoints"][3 * k + 1])
              for k, n in enumerate(COCO17_NAMES) if a["keypoints"][3 * k + 2] > 0}
        box = head_box(kp)
        if box is not None:
            x, y, w, h = box
            kp["head_top"], kp["head_bottom"] = (x + w / 2, y), (x + w / 2, y + h)
            people.append({"kp": kp, "head": box})
    return image, people


def frame_people(people, off, size):
    """People as seen through the window at ``off``: keypoints shifted, those outside dropped."""
    out = []
    for track, p in enumerate(people):
        kp = {n: (x - off[0], y - off[1]) for n, (x, y) in p["kp"].items()
              if 0 <= x - off[0] < size[0] and 0 <= y - off[1] < size[1]}
        if len(kp) >= 2:
            hx, hy, hw, hh = p["head"]
            out.append({"track": track, "kp": kp, "head": [round(hx - off[0], 1), round(hy - off[1], 1), hw, hh]})
    return out


def gt_annotation(person, image_id, n):
    kps = []
    for name in POSETRACK18_KEYPOINTS:
        kps += [*person["kp"][name], 1] if name in person["kp"] else [0, 0, 0]
    xy = np.array(list(person["kp"].values()), float)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    return {"image_id": image_id, "id": image_id * 100 + n, "category_id": 1, "track_id": person["track"],
            "keypoints": kps, "scores": [], "bbox_head": person["head"],
            "bbox": [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])]}


def record(person, names, rng, noise, track, score_range=(0.3, 1.0)):
    """A prediction of ``person``: every model keypoint, labelled ones with Gaussian noise of
    ``noise`` head sizes, the others guessed near the pose's centre with a low score."""
    head = 0.6 * float(np.hypot(person["head"][2], person["head"][3]))
    centre = np.mean(list(person["kp"].values()), axis=0)
    kps = []
    for name in names:
        if name in person["kp"]:
            x, y = np.array(person["kp"][name]) + rng.normal(0, noise * head, 2)
            s = rng.uniform(*score_range)
        else:
            x, y = centre + rng.normal(0, 2 * head, 2)
            s = rng.uniform(0.0, 0.2)
        kps += [round(float(x), 3), round(float(y), 3), round(float(s), 6)]
    return {"keypoints": kps, "score": 1.0, "track_id": track, "bbox": [0, 0, 1, 1]}


def make(out: Path):
    rng = np.random.default_rng(20240518)
    for seq, coco_file, image_id, step, unlabeled, names in SEQUENCES:
        image, people = true_people(coco_file, image_id)
        size = (int(image["width"] * 0.8), int(image["height"] * 0.8))
        start = (max(0, -step[0] * 4), max(0, -step[1] * 3))     # keep the window inside the image
        gt = {"images": [], "annotations": [], "categories": [
            {"supercategory": "person", "id": 1, "name": "person", "keypoints": list(POSETRACK18_KEYPOINTS),
             "skeleton": SKELETON}]}
        frames = []
        for t, (a, b) in enumerate(OFFSETS):
            off = (start[0] + a * step[0], start[1] + b * step[1])
            file_name = f"images/val/{seq}/{t:06d}.jpg"
            image_id_t = int(seq[:6]) * 10**4 + {"mpii": 1, "bonn": 2, "mpiinew": 3}[seq.split("_")[1]] * 10**10 + t
            seen = frame_people(people, off, size)
            if seq.startswith("990002") and t in (3, 4):       # person 2 leaves (occluded), returns at 5
                seen = [p for p in seen if p["track"] != 2]
            labeled = t not in unlabeled
            im = {"file_name": file_name, "id": image_id_t, "frame_id": image_id_t, "vid_id": seq[:6],
                  "nframes": len(OFFSETS), "is_labeled": labeled, "has_no_densepose": True,
                  "width": size[0], "height": size[1]}
            gt_people = list(seen)
            if seq.startswith("990001") and t == 3:
                # a region over person 0's legs whose left edge passes exactly through its right knee
                # (on the boundary: not contained, as shapely's Polygon.contains)
                kx, ky = gt_people[0]["kp"]["right_knee"]
                im["ignore_regions_x"] = [[kx, kx + 300, kx + 300, kx]]
                im["ignore_regions_y"] = [[ky - 10, ky - 10, ky + 400, ky + 400]]
            if seq.startswith("990002") and t == 5:
                # a region over every annotated person: the frame's ground truth empties (poseval's
                # "no GT" branch), a prediction outside it is a false positive
                im["ignore_regions_x"] = [[-1, size[0] - 40, size[0] - 40, -1], []]
                im["ignore_regions_y"] = [[-1, -1, size[1] + 1, size[1] + 1], []]
            if seq.startswith("990001") and t == 0:
                p = gt_people[1]   # an annotated joint flagged invisible (v = 0): poseval scores it
                p["v0"] = "left_wrist" if "left_wrist" in p["kp"] else next(iter(p["kp"]))
            gt["images"].append(im)
            if labeled:
                for n, p in enumerate(gt_people):
                    ann = gt_annotation(p, image_id_t, n)
                    if "v0" in p:
                        ann["keypoints"][3 * POSETRACK18_KEYPOINTS.index(p["v0"]) + 2] = 0
                    if seq.startswith("990002"):   # no left ankle annotated in the whole sequence
                        k = 3 * POSETRACK18_KEYPOINTS.index("left_ankle")
                        ann["keypoints"][k:k + 3] = [0, 0, 0]
                    gt["annotations"].append(ann)
                if seq.startswith("990003") and t == 4:      # a person annotated without keypoints
                    gt["annotations"].append({"image_id": image_id_t, "id": image_id_t * 100 + 99, "category_id": 1,
                                              "track_id": 99, "keypoints": [0] * 51, "scores": [],
                                              "bbox_head": [10, 10, 20, 20], "bbox": [0, 0, 40, 80]})
            frames.append({"file_name": file_name, "frame": t, "width": size[0], "height": size[1],
                           "records": predictions(seq, t, seen, names, rng, size)})
        (out / "gt").mkdir(parents=True, exist_ok=True)
        (out / "gt" / f"{seq}.json").write_text(json.dumps(gt))
        pred = posetrack_sequence(seq, frames, names)
        edit_predictions(seq, pred)
        write_sequence(out / "pred" / f"{seq}.json", pred)


def predictions(seq, t, seen, names, rng, size):
    if seq.startswith("990003") and t == 3:
        return []                                               # a frame without predictions
    records = []
    for p in seen:
        track = 100 + p["track"]
        if seq.startswith("990001") and t >= 4 and p["track"] in (0, 1):
            track = 101 - p["track"]                           # identity switch of tracks 0 and 1
        if seq.startswith("990002") and t >= 5 and p["track"] == 2:
            track = 142                                         # back after leaving: a new track id
        if seq.startswith("990001") and t in (2, 3) and p["track"] == 2:
            continue                                            # a missed person
        noise = 0.35 if p["track"] == 3 else 0.12               # track 3: many joints beyond PCKh 0.5
        low = (0.01, 0.05) if seq.startswith("990003") and p["track"] == 3 else (0.3, 1.0)
        records.append(record(p, names, rng, noise, track, low))
        if seq.startswith("990003") and t == 1 and p["track"] == 0:
            records.append(record(p, names, rng, 0.05, 150))   # a double detection
    if seq.startswith("990001") and t == 2 or seq.startswith("990002") and t == 5:
        fp = {"track": 0, "kp": {n: (size[0] - 20 + rng.uniform(0, 15), rng.uniform(0, size[1])) for n in names},
              "head": [0, 0, 20, 20]}
        records.append(record(fp, names, rng, 0.0, 900))        # a false positive
    if t == 0:
        records.append({**record(seen[0], names, rng, 0.1, -1)})   # untracked: left out of the file
    return records


def edit_predictions(seq, pred):
    """What a writer of frpose records cannot produce: joints missing from a prediction, and a
    person without keypoint scores (poseval's fallback score -9999)."""
    for a in pred["annotations"]:
        if seq.startswith("990002") and a["track_id"] == 101:        # wrists never predicted
            for name in ("left_wrist", "right_wrist"):
                k = POSETRACK18_KEYPOINTS.index(name)
                a["keypoints"][3 * k:3 * k + 3], a["scores"][k] = [0, 0, 0], 0.0
        if seq.startswith("990003") and a["track_id"] == 104 and a["image_id"] % 100 == 2:
            del a["scores"]


if __name__ == "__main__":
    make(Path(sys.argv[1]))
