"""Keypoint sets: names, left/right flip pairs, drawing skeleton (0-based) and OKS sigmas.

A keypoint set comes from the annotation file's category (:func:`spec_from_category`), so
any COCO-format data trains: COCO's 17 body joints, a subset of them, or the user's own
points (animals, hands, sports equipment).  What the category may say, and what is derived
when it does not (docs/keypoints.md):

* ``keypoints``: the names (required);
* ``flip_indices`` (the swapped partner of each keypoint) or ``flip_pairs`` (``[[a, b], …]``),
  0-based as in mmpose's dataset metadata; without either, pairs come from names that differ
  only by a side word (``left_eye``/``right_eye``, ``L_F_Paw``/``R_F_Paw``, ``wristLeft``/
  ``wristRight``).  A set whose left/right correspondence is not known (no side words, or a
  side word without a partner) is marked ``flip_pairs=None``: it is never flipped, because a
  flip without the swap would teach the network mirrored labels;
* ``skeleton``: 1-based pairs (COCO's convention); for COCO names without one, COCO's limbs
  between the kept joints;
* ``sigmas``: OKS falloffs as COCOeval uses them (mmpose's ``sigmas``); otherwise they are
  resolved later (:mod:`frpose_cli.data.oks_sigmas`).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

from frpose_cli.errors import FrposeError

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
COCO17_SIGMA_BY_NAME = dict(zip(COCO17_NAMES, COCO17_OKS_SIGMAS))

SIDE_WORDS = {"left": "left", "l": "left", "right": "right", "r": "right"}
_OTHER_SIDE = {"left": "right", "right": "left"}


def _tokens(name: str) -> list[str]:
    """``"L_F_Paw"`` → ``[l, f, paw]``; ``"wristLeft"`` → ``[wrist, left]``; ``"left-eye"`` → ``[left, eye]``."""
    return [t.lower() for t in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", name)]


def side_of(name: str) -> str:
    """``"left"``, ``"right"`` or ``""`` (a centre point) from the name's side word."""
    sides = {SIDE_WORDS[t] for t in _tokens(name) if t in SIDE_WORDS}
    return sides.pop() if len(sides) == 1 else ""


def _mirror_key(name: str) -> tuple[str, ...]:
    return tuple(_OTHER_SIDE.get(SIDE_WORDS.get(t, ""), t) for t in _tokens(name))


def _key(name: str) -> tuple[str, ...]:
    return tuple(SIDE_WORDS.get(t, t) for t in _tokens(name))


def pairs_from_names(names) -> tuple[tuple[tuple[int, int], ...] | None, str]:
    """Flip pairs from side words in the names, or ``(None, why)`` when left/right is unknown."""
    names = tuple(names)
    index = {}
    for i, n in enumerate(names):
        index.setdefault(_key(n), i)
    sided = [i for i, n in enumerate(names) if side_of(n)]
    if not sided:
        return None, "no keypoint name says left or right"
    pairs, lonely = [], []
    for i in sided:
        j = index.get(_mirror_key(names[i]))
        if j is None or j == i:
            lonely.append(names[i])
        elif side_of(names[i]) == "left":
            pairs.append((i, j))
    if lonely:
        return None, f"{', '.join(lonely[:3])} {'has' if len(lonely) == 1 else 'have'} no other-side partner"
    return tuple(sorted(pairs)), ""


@dataclass(frozen=True)
class KeypointSpec:
    names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...] | None   # None: left/right unknown → never flipped
    skeleton: tuple[tuple[int, int], ...] = ()
    sigmas: tuple[float, ...] | None = None          # OKS σ as COCOeval uses them (COCO: 0.025 … 0.107)
    sigmas_from: str = ""                            # where the σ came from, said in logs

    def __post_init__(self):
        k = len(self.names)
        if k == 0:
            raise FrposeError("a keypoint set needs at least one keypoint name")
        for a, b in (*(self.flip_pairs or ()), *self.skeleton):
            if not (0 <= a < k and 0 <= b < k):
                raise FrposeError(f"keypoint index out of range 0..{k - 1} in pair ({a}, {b})")
        used = [i for p in (self.flip_pairs or ()) for i in p]
        if len(used) != len(set(used)) or any(a == b for a, b in (self.flip_pairs or ())):
            raise FrposeError(f"flip pairs {[list(p) for p in self.flip_pairs]}: each keypoint may be in one "
                              "pair, with a partner other than itself")
        if self.sigmas is not None:
            check_sigmas(self.sigmas, k, "keypoint sigmas")

    @property
    def num_keypoints(self) -> int:
        return len(self.names)

    @property
    def can_flip(self) -> bool:
        """Whether a mirrored image's keypoints can be relabelled (left/right correspondence known)."""
        return self.flip_pairs is not None

    def flip_problem(self) -> str:
        """Why this set cannot be flipped ('' when it can), for one-line messages."""
        if self.can_flip:
            return ""
        return pairs_from_names(self.names)[1] or "its left/right pairs are not known"

    def flip_index(self) -> list[int] | None:
        """Permutation that swaps left and right joints (for flipped images/heatmaps); None when unknown."""
        if self.flip_pairs is None:
            return None
        perm = list(range(len(self.names)))
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    def index_of(self, name: str) -> int | None:
        """Index of ``name`` matched word by word (``L_Shoulder`` finds ``left_shoulder``); None if absent."""
        key = _key(name)
        return next((i for i, n in enumerate(self.names) if _key(n) == key), None)

    def side(self, k: int) -> str:
        """``left``/``right``/``""`` for drawing: the name's side word, else its place in a flip pair."""
        s = side_of(self.names[k])
        if s:
            return s
        for a, b in self.flip_pairs or ():
            if k in (a, b):
                return "left" if k == a else "right"
        return ""

    def to_dict(self) -> dict:
        d = {"names": list(self.names),
             "flip_pairs": None if self.flip_pairs is None else [list(p) for p in self.flip_pairs],
             "skeleton": [list(p) for p in self.skeleton]}
        if self.sigmas is not None:
            d["sigmas"], d["sigmas_from"] = [float(s) for s in self.sigmas], self.sigmas_from
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "KeypointSpec":
        try:
            names = tuple(str(n) for n in d["names"])
            pairs = d["flip_pairs"] if "flip_pairs" in d else pairs_from_names(names)[0]
            sigmas = d.get("sigmas")
            return cls(names, None if pairs is None else tuple(tuple(int(i) for i in p) for p in pairs),
                       tuple(tuple(int(i) for i in p) for p in d.get("skeleton", ())),
                       None if sigmas is None else tuple(float(s) for s in sigmas), str(d.get("sigmas_from", "")))
        except (KeyError, TypeError, ValueError) as e:
            raise FrposeError(f"bad keypoint metadata: {e}") from None

    @classmethod
    def from_names(cls, names, skeleton=()) -> "KeypointSpec":
        """Flip pairs from the names' side words (``left_*``/``right_*`` and the like)."""
        names = tuple(names)
        return cls(names, pairs_from_names(names)[0], tuple(tuple(p) for p in skeleton))

    def with_sigmas(self, sigmas, source: str) -> "KeypointSpec":
        return replace(self, sigmas=tuple(float(s) for s in sigmas), sigmas_from=source)


def check_sigmas(values, k: int, what: str) -> None:
    if len(values) != k:
        raise FrposeError(f"{what}: {len(values)} values for {k} keypoints")
    bad = [v for v in values if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0)]
    if bad:
        raise FrposeError(f"{what}: every σ must be a positive number (got {bad[0]!r})")


def _int_pairs(value, k: int, what: str, base: int = 0) -> tuple[tuple[int, int], ...]:
    """``[[a, b], …]`` with indices from ``base`` (0 or 1) → 0-based pairs, range-checked."""
    try:
        pairs = tuple((int(a), int(b)) for a, b in value)
    except (TypeError, ValueError):
        raise FrposeError(f"{what} must be a list of [a, b] index pairs") from None
    for a, b in pairs:
        if not (base <= a < k + base and base <= b < k + base):
            raise FrposeError(f"{what}: index out of range {base}..{k - 1 + base} in [{a}, {b}]")
    return tuple((a - base, b - base) for a, b in pairs)


def spec_from_category(category: dict, source: str = "annotation file") -> KeypointSpec:
    """A COCO annotation file's keypoint category → :class:`KeypointSpec` (see module docstring)."""
    names = category.get("keypoints")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise FrposeError(f"{source}: the category's 'keypoints' must be a list of names")
    names, k = tuple(names), len(names)
    if "flip_indices" in category:
        idx = category["flip_indices"]
        if not isinstance(idx, list) or len(idx) != k or not all(isinstance(i, int) for i in idx) \
                or sorted(idx) != list(range(k)) or any(idx[idx[i]] != i for i in range(k)):
            raise FrposeError(f"{source}: 'flip_indices' must list, for each of the {k} keypoints, the 0-based "
                              "index of its mirror partner (itself for centre points)")
        pairs = tuple((i, j) for i, j in enumerate(idx) if i < j)
    elif "flip_pairs" in category:
        pairs = _int_pairs(category["flip_pairs"], k, f"{source}: 'flip_pairs' (0-based)")
    else:
        pairs = pairs_from_names(names)[0]
    if "skeleton" in category:
        skeleton = _int_pairs(category["skeleton"], k, f"{source}: 'skeleton' (1-based)", base=1)
    elif all(n in COCO17_SIGMA_BY_NAME for n in names):
        where = {n: i for i, n in enumerate(names)}
        skeleton = tuple((where[COCO17_NAMES[a]], where[COCO17_NAMES[b]]) for a, b in COCO17_SKELETON
                         if COCO17_NAMES[a] in where and COCO17_NAMES[b] in where)
    else:
        skeleton = ()
    spec = KeypointSpec(names, pairs, skeleton)
    if "sigmas" in category:
        sigmas = category["sigmas"]
        if not isinstance(sigmas, list):
            raise FrposeError(f"{source}: the category's 'sigmas' must be a list of {k} numbers")
        check_sigmas(sigmas, k, f"{source}: the category's 'sigmas'")
        spec = spec.with_sigmas(sigmas, "the annotation file's category")
    return spec


COCO17_SKELETON = tuple((a - 1, b - 1) for a, b in (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8),
    (7, 9), (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7)))
COCO17 = KeypointSpec.from_names(COCO17_NAMES, COCO17_SKELETON)


def keypoint_category(categories) -> dict | None:
    """The category whose keypoints a file describes: the person category when there are several."""
    cats = [c for c in categories or [] if isinstance(c, dict) and c.get("keypoints")]
    if not cats:
        return None
    return next((c for c in cats if c.get("id") == 1 or c.get("name") == "person"), cats[0])
