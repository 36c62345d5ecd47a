"""Top-down post-processing in plain numpy: instance rescoring and OKS non-maximum suppression.

As in the Simple Baselines protocol:

* **rescoring**: an instance's score is its box score × the mean of its keypoint scores
  that exceed 0.2 (0 when none does), so a confident box around a poorly seen person ranks
  below a well seen one;
* **OKS-NMS** at 0.9 per image: visit instances by falling score, drop every later one whose
  keypoint similarity (OKS) to a kept one exceeds the threshold.  Two detector boxes on
  one person give near-identical poses (OKS ≈ 1) and only the better one survives; poses
  of different people have OKS ≈ 0 and all survive.

OKS between two predictions uses the mean of their areas as the scale (there is no ground
truth here); the area is the crop region's area (padded box), as in Simple Baselines.
No Cython, no GPU: the pairwise OKS matrix of one image is a few hundred entries.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from frpose_cli.metrics.cocoeval import GroundTruth, oks_sigmas_for

RESCORE_THRESHOLD = 0.2
OKS_NMS_THRESHOLD = 0.9


def rescore(box_scores, keypoint_scores, threshold: float = 0.2) -> np.ndarray:
    """``box_scores`` (N,), ``keypoint_scores`` (N, K) → box × mean keypoint score above ``threshold``."""
    box_scores = np.asarray(box_scores, dtype=np.float64).reshape(-1)
    kp = np.asarray(keypoint_scores, dtype=np.float64).reshape(len(box_scores), -1)
    above = kp > threshold
    count = above.sum(1)
    mean = np.where(count > 0, (kp * above).sum(1) / np.maximum(count, 1), 0.0)
    return box_scores * mean


def oks_matrix(keypoints, areas, sigmas, score_threshold: float | None = None) -> np.ndarray:
    """Pairwise OKS between ``keypoints`` (N, K, ≥2) with ``areas`` (N,); returns (N, N).

    ``sigmas`` are COCOeval's per-keypoint falloffs (0.026 … 0.107 for COCO).  With
    ``score_threshold``, only keypoints scored above it in *both* poses count (needs the
    third column); pairs with none in common get OKS 0.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    areas = np.asarray(areas, dtype=np.float64).reshape(-1)
    var = (2.0 * np.asarray(sigmas, dtype=np.float64)) ** 2                     # (K,)
    d2 = ((kp[:, None, :, 0] - kp[None, :, :, 0]) ** 2
          + (kp[:, None, :, 1] - kp[None, :, :, 1]) ** 2)                       # (N, N, K)
    scale = (areas[:, None] + areas[None, :]) / 2.0 + np.spacing(1)              # (N, N)
    e = np.exp(-d2 / var / scale[..., None] / 2.0)
    if score_threshold is None:
        return e.mean(-1)
    ok = kp[:, :, 2] > score_threshold                                          # (N, K)
    both = ok[:, None, :] & ok[None, :, :]
    n = both.sum(-1)
    return np.where(n > 0, (e * both).sum(-1) / np.maximum(n, 1), 0.0)


def oks_nms(keypoints, scores, areas, sigmas, threshold: float = 0.9,
            score_threshold: float | None = None) -> list[int]:
    """Greedy OKS-NMS of one image's instances; returns kept indices, best first."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(scores) == 0:
        return []
    oks = oks_matrix(keypoints, areas, sigmas, score_threshold)
    order = list(np.argsort(-scores, kind="stable"))
    keep = []
    while order:
        best = order.pop(0)
        keep.append(int(best))
        order = [j for j in order if oks[best, j] <= threshold]
    return keep


def nms_by_image(instances: list[dict], sigmas, threshold: float = 0.9,
                 score_threshold: float | None = None) -> list[dict]:
    """OKS-NMS within each image of ``instances`` (dicts with ``image_id``, ``keypoints``
    (K, 3) array, ``score``, ``area``); returns the survivors, image by image."""
    by_image = defaultdict(list)
    for inst in instances:
        by_image[inst["image_id"]].append(inst)
    kept = []
    for image_id in sorted(by_image):
        group = by_image[image_id]
        keep = oks_nms(np.stack([np.asarray(g["keypoints"], np.float64) for g in group]),
                       [g["score"] for g in group], [g["area"] for g in group], sigmas,
                       threshold, score_threshold)
        kept.extend(group[i] for i in keep)
    return kept


def poses_to_results(image_ids, keypoints, keypoint_scores, box_scores, areas, gt: GroundTruth,
                     rescore_thr: float = RESCORE_THRESHOLD, nms_thr: float | None = OKS_NMS_THRESHOLD) -> list:
    """Per-instance poses in image pixels → rescored, OKS-NMS'd COCO keypoint results.

    ``keypoints`` (N, K, 2), ``keypoint_scores`` (N, K), ``box_scores`` (N,), ``areas`` (N,)
    (the crop region's area, the OKS scale for NMS).  ``nms_thr=None`` skips NMS.
    """
    keypoints = np.asarray(keypoints, np.float64)
    keypoint_scores = np.asarray(keypoint_scores, np.float64)
    scores = rescore(box_scores, keypoint_scores, rescore_thr)
    instances = [{"image_id": int(i), "keypoints": np.concatenate([k, s[:, None]], 1), "score": float(sc),
                  "area": float(a)}
                 for i, k, s, sc, a in zip(image_ids, keypoints, keypoint_scores, scores, areas)]
    if nms_thr is not None:
        instances = nms_by_image(instances, oks_sigmas_for(gt), nms_thr)
    return [{"image_id": inst["image_id"], "category_id": gt.person_category,
             "keypoints": [round(float(v), 3) for v in inst["keypoints"].reshape(-1)],
             "score": round(inst["score"], 6)} for inst in instances]
