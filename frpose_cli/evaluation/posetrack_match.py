"""poseval's frame selection, ignore regions and per-frame assignment (its eval_helpers.py:
cleanupData, removeIgnoredPoints, assignGTmulti), in numpy, for :mod:`posetrack_eval`.

Per frame, every prediction is assigned greedily to the ground-truth person it has the highest
PCKh with (a joint matches within 0.5 head sizes; head size = 0.6 × the head box's diagonal);
each predicted joint becomes one (score, matched?) entry of that joint's AP, and each joint's
identities and matching distances one update of its MOT accumulator.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from frpose_cli.errors import FrposeError

DIST_THRESH = 0.5   # PCKh@0.5
JOINTS = 15


def inside(polygon, points) -> np.ndarray:
    """Which ``points`` (n, 2) lie inside ``polygon`` (m, 2) as poseval's shapely
    ``Polygon.contains`` says: even-odd crossings (GEOS answers so for self-intersecting
    polygons too), a point on an edge or vertex is not contained. poseval's shapely fails on a
    region of 1 or 2 points; such a region (and an empty one) contains nothing here (its edges
    enclose nothing)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    poly = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    ax, ay = poly[:, 0][None], poly[:, 1][None]
    bx, by = np.roll(poly[:, 0], -1)[None], np.roll(poly[:, 1], -1)[None]
    px, py = pts[:, :1], pts[:, 1:]
    cross = (bx - ax) * (py - ay) - (by - ay) * (px - ax)   # > 0: the point is left of edge a→b
    on_edge = (cross == 0) & (np.minimum(ax, bx) <= px) & (px <= np.maximum(ax, bx)) \
        & (np.minimum(ay, by) <= py) & (py <= np.maximum(ay, by))
    up, down = (ay <= py) & (py < by), (by <= py) & (py < ay)
    crossings = ((up & (cross > 0)) | (down & (cross < 0))).sum(axis=1)   # edges crossing the ray to +x
    return (crossings % 2 == 1) & ~on_edge.any(axis=1)


def drop_ignored(people, regions) -> list:
    """removeIgnoredPointsRects: joints inside a region are dropped, then people with no joint left."""
    kept = []
    for p in people:
        hit = np.zeros(JOINTS, dtype=bool)
        for region in regions:
            hit |= inside(region, p.xy)
        present = p.present & ~hit
        if present.any():
            kept.append(replace(p, present=present))
    return kept


def scored_frames(gt_frames, pr_frames) -> list:
    """The (ground truth, prediction) frame pairs poseval scores, in order, as lists of people.

    poseval's cleanupData keeps the frames whose ground truth has at least one person (``is_labeled``
    is not read), *then* drops people without annopoints (PoseTrack17 only); removeIgnoredPoints
    then applies the ground truth's ignore regions to both sides, which can empty a frame."""
    pairs = []
    for g, p in zip(gt_frames, pr_frames):
        if not g.people:
            continue
        gt, pr = [q for q in g.people if q.has_points], [q for q in p.people if q.has_points]
        if g.ignore_regions:
            gt, pr = drop_ignored(gt, g.ignore_regions), drop_ignored(pr, g.ignore_regions)
        pairs.append((g, gt, pr))
    return pairs


@dataclass
class FrameMatch:
    scores: list        # per joint: the frame's predicted joints' scores, in prediction order
    labels: list        # per joint: whether each matched its assigned ground-truth joint
    num_gt: np.ndarray  # (15,) annotated ground-truth joints
    mot: list           # per joint: (ground-truth track ids, predicted track ids, distances or NaN)


def _head_sizes(gt, where: str) -> np.ndarray:
    sizes = []
    for k, p in enumerate(gt):
        if p.head_box is None:
            raise FrposeError(f"{where}: ground-truth person {k} (track {p.track_id}) has no bbox_head, "
                              "the reference of PCKh")
        x1, y1, x2, y2 = p.head_box
        sizes.append(0.6 * np.linalg.norm(np.subtract([x2, y2], [x1, y1])))   # poseval's getHeadSize
    return np.array(sizes, dtype=np.float64)


def _distances(gt, pr, has_gt, has_pr, where: str) -> np.ndarray:
    """(predictions, ground truth, joints) distances in head sizes; inf unless both have the joint."""
    head = _head_sizes(gt, where)
    gxy, pxy = np.stack([p.xy for p in gt]), np.stack([p.xy for p in pr])
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = np.linalg.norm(gxy[None] - pxy[:, None], axis=3) / head[None, :, None]
        # poseval's norm (a dot product) may round differently in the last bit: where that could
        # decide the match, take its own expression
        for r, g, j in zip(*np.nonzero(np.abs(dist - DIST_THRESH) < 1e-9)):
            dist[r, g, j] = np.linalg.norm(np.subtract(gxy[g, j], pxy[r, j])) / head[g]
    dist[~(has_pr[:, None] & has_gt[None])] = np.inf
    return dist


def match_frame(gt, pr, where: str) -> FrameMatch:
    """assignGTmulti for one frame: AP entries and MOT updates per joint."""
    has_gt = np.array([p.present for p in gt], dtype=bool).reshape(len(gt), JOINTS)
    has_pr = np.array([p.present for p in pr], dtype=bool).reshape(len(pr), JOINTS)
    score = np.array([p.scores for p in pr], dtype=np.float64).reshape(len(pr), JOINTS)
    labels = np.zeros((len(pr), JOINTS), dtype=bool)
    if gt and pr:
        dist = _distances(gt, pr, has_gt, has_pr, where)
        match = dist <= DIST_THRESH
        n_annotated = has_gt.sum(axis=1)
        pck = 1.0 * match.sum(axis=2)
        pck[:, n_annotated > 0] /= n_annotated[n_annotated > 0]
        best = np.argmax(pck, axis=1)   # each prediction keeps its best ground truth only ...
        pck[np.arange(len(gt))[None] != best[:, None]] = 0
        pr_to_gt = np.argmax(pck, axis=0)   # ... and each ground truth takes its best prediction
        pr_to_gt[np.max(pck, axis=0) == 0] = -1
        for g, r in enumerate(pr_to_gt):
            if r >= 0:
                labels[r] = match[r, g]
        mot = []
        for j in range(JOINTS):
            gi, pi = np.flatnonzero(has_gt[:, j]), np.flatnonzero(has_pr[:, j])
            d = dist[pi][:, gi, j].T.copy()
            d[~match[pi][:, gi, j].T] = np.nan   # NaN: no pairing
            mot.append(([gt[k].track_id for k in gi], [pr[k].track_id for k in pi], d))
    else:
        # poseval: without predictions or without ground truth (emptied by ignore regions), each
        # joint gets one unmatched object and one unmatched hypothesis, both id 0: 1 miss + 1 false
        # positive, however many people there are
        mot = [([0], [0], np.full((1, 1), np.nan))] * JOINTS
    scores = [score[has_pr[:, j], j] for j in range(JOINTS)]
    return FrameMatch(scores, [labels[has_pr[:, j], j] for j in range(JOINTS)], has_gt.sum(axis=0), mot)
