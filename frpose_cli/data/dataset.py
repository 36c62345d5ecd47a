"""COCO-format top-down keypoint data: person instances → affine crops + heatmap targets.

Instances come from ground-truth boxes (training, validation) or from a detector's
results file (``frpose eval``); both go through the same crop pipeline.  Keypoint
names, flip pairs and skeleton come from the annotation file's category, so any
COCO-style keypoint set works.

Bad data never crashes a run: annotations without keypoints, crowd boxes and boxes
with no area inside the image are dropped up front (``skipped`` counts them), so are
instances whose image file is missing; an image that cannot be decoded yields a sample
with ``valid = False`` and zero target weights, which the trainer counts and ignores.

Augmentation (training only, see docs/training.md) draws from a generator seeded by
``(seed, epoch, index)``, so a sample is the same whichever worker, rank or resumed run
makes it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pycocotools.coco import COCO

from frpose_cli.data.codecs import HeatmapCodec
from frpose_cli.data.annotations import read_json, read_keypoint_annotations
from frpose_cli.errors import FrposeError
from frpose_cli.data.images import ImageReadError, read_image
from frpose_cli.data.geometry import box_to_center_scale, crop_image, flip_points_in_crop, transform_points, warp_matrix
from frpose_cli.data.keypoints import KeypointSpec, keypoint_category, spec_from_category
from frpose_cli.data.normalize import crops_to_input

LOWER_BODY_WORDS = ("hip", "knee", "ankle", "foot", "heel", "toe")


@dataclass(frozen=True)
class PoseInstance:
    """One person to crop: box ``(x, y, w, h)`` clipped to the image, ``keypoints`` (K, 3)
    in image pixels with COCO visibility (zeros for detections)."""
    image_id: int
    file_name: str
    box: tuple[float, float, float, float]
    keypoints: np.ndarray
    score: float = 1.0
    ann_id: int = -1


class InstanceList(list):
    """A list of :class:`PoseInstance` with ``skipped``: reason → count."""

    def __init__(self, items=(), skipped=None):
        super().__init__(items)
        self.skipped = Counter(skipped or {})


@dataclass(frozen=True)
class Augment:
    """Training augmentation, every number from the card's ``train`` recipe (scripts/make_cards.py
    writes it); the distributions are documented in docs/training.md."""
    flip: bool
    flip_prob: float
    rotation: float                 # rotation ~ U(-r, r) degrees, applied with rotation_prob
    rotation_prob: float
    scale: tuple[float, float]      # crop-size factor ~ U(lo, hi)
    half_body: bool
    half_body_prob: float
    half_body_min_joints: int
    # "uniform": s ~ U(lo, hi), r ~ U(-R, R) (the paper's stated ranges); "clipped-normal":
    # Simple Baselines' s = clip(N(1, sf), 1-sf, 1+sf), r = clip(N(0, R), -2R, 2R)
    distribution: str

    @classmethod
    def from_card(cls, card) -> "Augment":
        dist = str(card.recipe("distribution"))
        if dist not in DISTRIBUTIONS:
            raise FrposeError(f"card {card.name}: train.distribution {dist!r} is not one of {', '.join(DISTRIBUTIONS)}")
        return cls(flip=bool(card.recipe("flip")), flip_prob=float(card.recipe("flip_prob")),
                   rotation=float(card.recipe("rotation")), rotation_prob=float(card.recipe("rotation_prob")),
                   scale=tuple(float(v) for v in card.recipe("scale")), half_body=bool(card.recipe("half_body")),
                   half_body_prob=float(card.recipe("half_body_prob")),
                   half_body_min_joints=int(card.recipe("half_body_min_joints")), distribution=dist)


DISTRIBUTIONS = ("uniform", "clipped-normal")


NO_AUGMENT = Augment(flip=False, flip_prob=0.0, rotation=0.0, rotation_prob=0.0, scale=(1.0, 1.0), half_body=False,
                     half_body_prob=0.0, half_body_min_joints=0, distribution="uniform")


def load_coco(ann_file) -> COCO:
    """A COCO keypoint annotation file, read and checked by :func:`frpose_cli.data.annotations.read_keypoint_annotations`."""
    path = Path(ann_file)
    data, _, _ = read_keypoint_annotations(path)
    try:
        with contextlib.redirect_stdout(io.StringIO()):   # pycocotools prints progress
            coco = COCO()
            coco.dataset = data
            coco.createIndex()
        return coco
    except (ValueError, KeyError, TypeError, AssertionError) as e:
        raise FrposeError(f"{path}: not a COCO annotation file ({type(e).__name__}: {e})") from None


def keypoint_spec(coco: COCO, source: str = "annotation file") -> KeypointSpec:
    """Keypoint metadata from the file's category (the person category when there are several):
    names, flip pairs, skeleton and, when listed, OKS sigmas (:mod:`frpose_cli.data.keypoints`)."""
    cat = keypoint_category(coco.loadCats(coco.getCatIds()))
    if cat is None:
        raise FrposeError(f"{source}: no category with 'keypoints' names")
    return spec_from_category(cat, source)


def _clip_box(box, img) -> tuple | None:
    x, y, w, h = (float(v) for v in box[:4])
    W, H = float(img.get("width", 0)), float(img.get("height", 0))
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(W - 1, x0 + max(0.0, w - 1)), min(H - 1, y0 + max(0.0, h - 1))
    if W <= 0 or H <= 0 or x1 < x0 or y1 < y0 or (x1 - x0) * (y1 - y0) <= 0:
        return None
    return x0, y0, x1 - x0 + 1, y1 - y0 + 1   # SBN's clipping (inclusive pixel bounds)


def gt_instances(coco: COCO) -> InstanceList:
    """Training instances: non-crowd annotations with keypoints and a box with area in the image."""
    out, skipped = [], Counter()
    cat_ids = set(coco.getCatIds())
    for img_id in sorted(coco.imgs):
        img = coco.imgs[img_id]
        for ann in coco.imgToAnns.get(img_id, []):
            if ann.get("category_id", 1) not in cat_ids:
                continue
            if ann.get("iscrowd", 0):
                skipped["crowd"] += 1
                continue
            kps = np.asarray(ann.get("keypoints") or [], np.float32)
            if kps.size == 0 or kps.size % 3 or not (kps.reshape(-1, 3)[:, 2] > 0).any():
                skipped["no keypoints"] += 1
                continue
            box = _clip_box(ann.get("bbox") or [0, 0, 0, 0], img)
            if box is None:
                skipped["box outside image"] += 1
                continue
            out.append(PoseInstance(int(img_id), str(img["file_name"]), box, kps.reshape(-1, 3), 1.0,
                                    int(ann.get("id", -1))))
    return InstanceList(out, skipped)


def detection_instances(coco: COCO, detections, score_thr: float = 0.0) -> InstanceList:
    """Person boxes (category 1) from a COCO detection-results file or list."""
    if isinstance(detections, (str, Path)):
        detections = read_json(detections, "detection file")
    if not isinstance(detections, list):
        raise FrposeError("detection results must be a JSON list of {image_id, category_id, bbox, score}")
    k = len(keypoint_spec(coco).names)
    out, skipped = [], Counter()
    for det in detections:
        if not isinstance(det, dict) or det.get("category_id", 1) != 1:
            skipped["not a person"] += 1
            continue
        img = coco.imgs.get(det.get("image_id"))
        if img is None:
            skipped["unknown image"] += 1
            continue
        score = float(det.get("score", 1.0))
        if score < score_thr:
            skipped["below score threshold"] += 1
            continue
        box = _clip_box(det.get("bbox") or [0, 0, 0, 0], img)
        if box is None:
            skipped["box outside image"] += 1
            continue
        out.append(PoseInstance(int(det["image_id"]), str(img["file_name"]), box,
                                np.zeros((k, 3), np.float32), score))
    return InstanceList(out, skipped)


class CocoPoseDataset(torch.utils.data.Dataset):
    """Top-down crops of COCO-format person instances.

    ``train=True`` turns on ``augment`` (default: the card's recipe).  With
    ``build_targets=False`` the heatmaps are left to the training device
    (:meth:`HeatmapCodec.encode_torch`) and ``target`` is an empty tensor.  ``image`` is the
    normalised network input (:mod:`frpose_cli.data.normalize`); with ``raw_crops=True`` (eval: the
    top-down engine normalises on the model's device) the sample holds the RGB uint8 ``crop``
    (H, W, 3) instead.
    """

    def __init__(self, ann_file, image_dir, card, codec: HeatmapCodec, train: bool, instances=None,
                 augment: Augment | None = None, build_targets: bool = True, seed: int = 0, coco=None,
                 raw_crops: bool = False):
        self.coco = coco if coco is not None else load_coco(ann_file)
        self.image_dir = Path(image_dir)
        if not self.image_dir.is_dir():
            raise FrposeError(f"image folder not found: {self.image_dir}")
        self.card, self.codec, self.train = card, codec, bool(train)
        self.keypoints = keypoint_spec(self.coco, str(ann_file))
        self.augment = (augment or Augment.from_card(card)) if train else NO_AUGMENT
        if self.augment.flip and not self.keypoints.can_flip:   # no swap known: a flip would mislabel
            self.augment = dataclasses.replace(self.augment, flip=False)
        self.build_targets, self.seed, self.epoch = build_targets, int(seed), 0
        self.input_hw = tuple(card.input_size)
        self.aspect_ratio = self.input_hw[1] / self.input_hw[0]
        self.raw_crops = bool(raw_crops)
        self.flip_index = self.keypoints.flip_index()
        lower = [any(w in n for w in LOWER_BODY_WORDS) for n in self.keypoints.names]
        self.upper_ids = [i for i, lo in enumerate(lower) if not lo]
        self.lower_ids = [i for i, lo in enumerate(lower) if lo]

        items = gt_instances(self.coco) if instances is None else instances
        self.skipped = Counter(getattr(items, "skipped", {}))
        present = {}
        kept = []
        for inst in items:
            if inst.file_name not in present:
                present[inst.file_name] = (self.image_dir / inst.file_name).is_file()
            if present[inst.file_name]:
                kept.append(inst)
            else:
                self.skipped["missing image file"] += 1
        self.instances = kept
        if self.keypoints.num_keypoints != card.keypoints.num_keypoints:
            raise FrposeError(f"{ann_file}: {self.keypoints.num_keypoints} keypoints per person, but "
                              f"model {card.name} predicts {card.keypoints.num_keypoints}")

    def __len__(self) -> int:
        return len(self.instances)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def skipped_summary(self) -> str:
        return ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items())) or "none"

    # --- augmentation -----------------------------------------------------------------
    def _half_body(self, kp, rng):
        vis = kp[:, 2] > 0
        if vis.sum() <= self.augment.half_body_min_joints or not self.lower_ids:
            return None
        upper = [i for i in self.upper_ids if vis[i]]
        lower = [i for i in self.lower_ids if vis[i]]
        chosen = upper if (rng.random() < 0.5 and len(upper) > 2) else lower
        chosen = chosen if len(chosen) >= 2 else upper
        if len(chosen) < 2:
            return None
        pts = kp[chosen, :2]
        lo, hi = pts.min(0), pts.max(0)
        return box_to_center_scale([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]], self.aspect_ratio, 1.5)

    def _draw(self, inst, center, scale, rng):
        a = self.augment
        if a.half_body and rng.random() < a.half_body_prob:
            hb = self._half_body(inst.keypoints, rng)
            if hb is not None:
                center, scale = hb
        lo, hi = a.scale
        if a.distribution == "clipped-normal":
            s = float(np.clip(rng.normal((lo + hi) / 2, (hi - lo) / 2), lo, hi))
            rot = float(np.clip(rng.normal(0.0, a.rotation), -2 * a.rotation, 2 * a.rotation)) \
                if rng.random() < a.rotation_prob else 0.0
        else:
            s = rng.uniform(lo, hi)
            rot = rng.uniform(-a.rotation, a.rotation) if rng.random() < a.rotation_prob else 0.0
        flip = bool(a.flip and rng.random() < a.flip_prob)
        return center, scale * s, float(rot), flip

    # --- one sample -------------------------------------------------------------------
    def __getitem__(self, index: int) -> dict:
        inst = self.instances[index]
        h, w = self.input_hw
        center, scale = box_to_center_scale(inst.box, self.aspect_ratio)
        rot, flip = 0.0, False
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            center, scale, rot, flip = self._draw(inst, center, scale, rng)
        try:   # one decoding policy for every verb (frpose_cli.data.images: EXIF orientation ignored)
            image, warning = read_image(self.image_dir / inst.file_name)
        except ImageReadError:
            image, warning = None, None
        valid = image is not None
        kp = transform_points(inst.keypoints[:, :2], warp_matrix(center, scale, rot, (w, h), udp=self.codec.use_udp))
        visible = (inst.keypoints[:, 2] > 0).astype(np.float32)
        if valid:   # RGB: the channel order the weights want is normalize_input's business
            crop = crop_image(image, center, scale, rot, (w, h), udp=self.codec.use_udp)
        else:
            crop = np.zeros((h, w, 3), np.uint8)
            visible[:] = 0
        if flip:
            crop = crop[:, ::-1]
            kp = flip_points_in_crop(kp, w)[self.flip_index]
            visible = visible[self.flip_index]
        crop = torch.from_numpy(np.ascontiguousarray(crop))
        if self.raw_crops:
            pixels = {"crop": crop, "image": torch.empty(0)}
        else:
            pixels = {"image": crops_to_input(crop[None], self.card.normalize)[0]}
        sample = {
            **pixels,
            "keypoints": torch.from_numpy(np.ascontiguousarray(kp, dtype=np.float32)),
            "visible": torch.from_numpy(visible),
            "image_id": inst.image_id, "center": torch.from_numpy(np.asarray(center, np.float32)),
            "scale": torch.from_numpy(np.asarray(scale, np.float32)), "score": float(inst.score),
            "rotation": float(rot), "flipped": flip, "valid": valid, "damaged": bool(warning), "index": index,
        }
        if self.build_targets:
            target, weight = self.codec.encode(kp, visible)
            sample["target"], sample["target_weight"] = torch.from_numpy(target), torch.from_numpy(weight)
        else:
            sample["target"] = torch.empty(0)
            sample["target_weight"] = torch.empty(0)
        return sample
