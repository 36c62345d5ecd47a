"""Keypoint sets: names, left/right flip pairs and drawing skeleton (0-based indices)."""
from __future__ import annotations

from dataclasses import dataclass

from .errors import FrposeError

COCO17_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
# COCO's per-keypoint OKS constants ×10, as pycocotools writes them (it divides by 10 before use).
COCO17_SIGMAS = (.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62,
                 1.07, 1.07, .87, .87, .89, .89)
COCO17_OKS_SIGMAS = tuple(s / 10.0 for s in COCO17_SIGMAS)   # the values OKS uses


@dataclass(frozen=True)
class KeypointSpec:
    names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...] = ()

    def __post_init__(self):
        k = len(self.names)
        for a, b in (*self.flip_pairs, *self.skeleton):
            if not (0 <= a < k and 0 <= b < k):
                raise FrposeError(f"keypoint index out of range 0..{k - 1} in pair ({a}, {b})")

    @property
    def num_keypoints(self) -> int:
        return len(self.names)

    def flip_index(self) -> list[int]:
        """Permutation that swaps left and right joints (for flipped images/heatmaps)."""
        perm = list(range(len(self.names)))
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    def to_dict(self) -> dict:
        return {"names": list(self.names), "flip_pairs": [list(p) for p in self.flip_pairs],
                "skeleton": [list(p) for p in self.skeleton]}

    @classmethod
    def from_dict(cls, d: dict) -> "KeypointSpec":
        try:
            return cls(tuple(d["names"]), tuple(tuple(p) for p in d.get("flip_pairs", ())),
                       tuple(tuple(p) for p in d.get("skeleton", ())))
        except (KeyError, TypeError, ValueError) as e:
            raise FrposeError(f"bad keypoint metadata: {e}") from None

    @classmethod
    def from_names(cls, names, skeleton=()) -> "KeypointSpec":
        """Derive flip pairs from ``left_*``/``right_*`` names (how COCO-style categories name them)."""
        names = tuple(names)
        pairs = []
        for i, n in enumerate(names):
            if n.startswith("left_") and "right_" + n[5:] in names:
                pairs.append((i, names.index("right_" + n[5:])))
        return cls(names, tuple(pairs), tuple(tuple(p) for p in skeleton))

    @classmethod
    def from_coco_category(cls, category: dict) -> "KeypointSpec":
        """From a COCO annotation file's category (its skeleton is 1-based)."""
        skeleton = [(a - 1, b - 1) for a, b in category.get("skeleton", [])]
        return cls.from_names(category["keypoints"], skeleton)


COCO17_SKELETON = tuple((a - 1, b - 1) for a, b in (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8),
    (7, 9), (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7)))
COCO17 = KeypointSpec.from_names(COCO17_NAMES, COCO17_SKELETON)
