"""Reference decoders (dark, udp: mmpose's algorithms) against frpose's bounded variants
(dark-clip, udp-clip) on the same heatmaps: the codec's own targets for the ground truth of a
COCO split (the oracle), clean and with smooth noise added to imitate network output.

    python scripts/compare_decoders.py ../shared/data/coco-mini [--noise 0 0.05 0.1] [--seed 0]

Prints AP and the mean and 99th-percentile decoded-to-truth error (image px) per card, codec and noise level.  The
noise is Gaussian white noise blurred with the card's σ, times ``noise`` × the map's peak, so a
map gets secondary bumps and a flatter top, as real heatmaps do; all codecs of one row decode
the same noisy maps.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from frpose_cli.cards import load_card
from frpose_cli.metrics.cocoeval import coco_keypoint_eval, load_ground_truth
from frpose_cli.data.dataset import gt_instances
from frpose_cli.evaluation.evaluate import oracle_heatmaps, resolve_codec
from frpose_cli.metrics.oks_nms import poses_to_results
from frpose_cli.data.geometry import box_to_center_scale, transform_points, warp_matrix
from frpose_cli.runtime.topdown import decode_to_image


def noisy(heat: torch.Tensor, level: float, sigma: float, rng) -> np.ndarray:
    h = heat.numpy().copy()
    if level == 0:
        return h
    k = 2 * int(np.ceil(3 * sigma)) + 1
    for i in range(h.shape[0]):
        for j in range(h.shape[1]):
            n = cv2.GaussianBlur(rng.standard_normal(h.shape[2:]).astype(np.float32), (k, k), sigma)
            h[i, j] += level * max(float(h[i, j].max()), 1e-6) * n / max(float(np.abs(n).max()), 1e-6)
    return h


def run(root: Path, card_name: str, codecs, levels, seed: int):
    ann = root / "annotations" / "person_keypoints_val2017.json"
    gt = load_ground_truth(ann)
    card = load_card(card_name)
    insts = gt_instances(gt.coco())
    h, w = card.input_size
    rows = []
    for level in levels:
        per_codec = {}
        for name in codecs:
            codec = resolve_codec(card, name)
            cs = [box_to_center_scale(i.box, w / h) for i in insts]
            centers, scales = np.stack([c for c, _ in cs]), np.stack([s for _, s in cs])
            crop = [transform_points(i.keypoints[:, :2], warp_matrix(c, s, 0.0, (w, h), udp=codec.use_udp))
                    for i, (c, s) in zip(insts, cs)]
            vis = [(i.keypoints[:, 2] > 0).astype(np.float32) for i in insts]
            rng = np.random.default_rng(seed)     # same noise for every codec of the row
            heat = noisy(oracle_heatmaps(codec, crop, vis), level, codec.sigma, rng)
            kp, sc = decode_to_image(codec, heat, centers, scales)
            err = np.concatenate([np.linalg.norm(k[v > 0] - i.keypoints[v > 0, :2], axis=1)
                                  for k, v, i in zip(kp, vis, insts)])
            res = poses_to_results([i.image_id for i in insts], kp, sc, np.ones(len(insts)),
                                   scales[:, 0] * scales[:, 1], gt)
            per_codec[name] = (100 * coco_keypoint_eval(gt, res)["AP"], float(np.mean(err)), float(np.percentile(err, 99)))
        rows.append((level, per_codec))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.1, 0.3, 0.6])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    codecs = ("dark", "dark-clip", "udp", "udp-clip")
    print("card        stride  noise  " + "  ".join(f"{c:>24s}" for c in codecs) + "   (AP / mean / p99 error, px)")
    for card in ("sbn-r34", "frpose-r34"):
        for level, per in run(args.root, card, codecs, args.noise, args.seed):
            stride = load_card(card).stride
            print(f"{card:11s} {stride:6d}  {level:5.2f}  " + "  ".join(f"{per[c][0]:8.1f} / {per[c][1]:5.2f} / {per[c][2]:5.1f}"
                                                                      for c in codecs))


if __name__ == "__main__":
    main()
