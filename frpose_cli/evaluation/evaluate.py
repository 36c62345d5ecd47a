"""The COCO keypoint evaluation protocol (Simple Baselines / HRNet / mmpose, and this paper):

1. person boxes: a detector's results (category 1, score ≥ threshold) or the ground-truth boxes;
2. each box → centre/scale (aspect-ratio fix, ×1.25 padding) → affine crop;
3. batched network inference with the flip test (:mod:`frpose_cli.runtime.topdown`);
4. heatmaps → keypoints with the card's codec (or sbn / dark / udp), mapped back to the image;
5. rescoring: box score × mean keypoint score above 0.2; OKS-NMS at 0.9 per image;
6. COCO-format results → COCOeval(keypoints) over every image of the annotation file.

``evaluate_model`` is the whole protocol for a model in memory (``frpose train`` calls it to
validate); ``evaluate_oracle`` puts the codec applied to the ground truth in the network's
place, measuring what the heatmap representation alone loses; ``evaluate_results_file``
scores an existing results file.  Each returns the ten COCOeval figures by name
(:data:`~frpose_cli.metrics.cocoeval.METRIC_NAMES`) plus ``results`` and ``skipped``.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch

from frpose_cli.distributed import worker_init
from frpose_cli.data.codecs import HeatmapCodec, codec_for_card
from frpose_cli.metrics.cocoeval import (GroundTruth, coco_keypoint_eval, load_ground_truth, load_results,
                                         validate_results)
from frpose_cli.errors import FrposeError
from frpose_cli.data.geometry import box_to_center_scale, flip_points_in_crop, transform_points, warp_matrix
from frpose_cli.runtime.engine import TopDownEngine
from frpose_cli.runtime.topdown import decode_to_image, flip_back, flip_shift_for_codec
from frpose_cli.metrics.oks_nms import OKS_NMS_THRESHOLD, RESCORE_THRESHOLD, poses_to_results



def resolve_codec(card, codec=None) -> HeatmapCodec:
    """``None`` → the card's codec; a name → that codec at the card's size/stride/σ."""
    if isinstance(codec, HeatmapCodec):
        return codec
    return codec_for_card(card, codec)


def _ground_truth(ann_file, gt: GroundTruth | None, card=None) -> GroundTruth:
    """The given ground truth, else the file's, with OKS σ as the model recorded them."""
    return gt if gt is not None else load_ground_truth(ann_file, recorded=card.keypoints if card else None)


def _pycoco(gt: GroundTruth):
    return gt.coco("pycocotools")


def _finish(gt: GroundTruth, results: list, skipped: Counter, cocoeval: str, score: bool = True) -> dict:
    if not results:
        why = "; ".join(f"{n} {r}" for r, n in skipped.most_common()) or "no person boxes"
        raise FrposeError(f"no poses to evaluate ({why})")
    checked = validate_results(results, gt, source="predictions")
    skipped = skipped + checked.skipped
    metrics = coco_keypoint_eval(gt, checked.results, cocoeval) if score else {}
    return {**metrics, "results": checked.results, "skipped": dict(skipped),
            "num_instances": len(checked.results)}


def instances_for(gt: GroundTruth, boxes=None, det_score_thr: float = 0.0):
    """``boxes=None`` → ground-truth boxes; a path or list → person detections."""
    from frpose_cli.data.dataset import detection_instances, gt_instances
    if boxes is None:
        return gt_instances(_pycoco(gt))
    return detection_instances(_pycoco(gt), str(boxes) if isinstance(boxes, Path) else boxes, det_score_thr)


def box_coverage(gt: GroundTruth, instances) -> dict:
    """How many of the images holding persons COCOeval scores (not crowd, with keypoints) got no box: their
    persons can only be missed, so AP and AR are capped however good the poses (`eval` warns)."""
    persons = Counter(a["image_id"] for a in gt.dataset["annotations"]
                      if a.get("category_id", gt.person_category) == gt.person_category
                      and not a.get("iscrowd") and a["num_keypoints"] > 0)
    boxed = {inst.image_id for inst in instances}
    missing = [i for i in persons if i not in boxed]
    return {"images_with_persons": len(persons), "images_without_boxes": len(missing),
            "persons_without_boxes": sum(persons[i] for i in missing)}


def evaluate_model(model: torch.nn.Module, card, ann_file, image_dir, boxes=None, flip: bool = True,
                   codec=None, batch_size: int = 32, workers: int = 2, device=None,
                   det_score_thr: float = 0.0, flip_shift: float | None = None,
                   rescore_thr: float = RESCORE_THRESHOLD, nms_thr: float | None = OKS_NMS_THRESHOLD,
                   cocoeval: str = "pycocotools", progress: bool = False, gt: GroundTruth | None = None,
                   max_instances: int | None = None, score: bool = True, shard=None, parts=None,
                   part_meta: dict | None = None, log=None) -> dict | None:
    """COCO keypoint AP of ``model`` (the full protocol above).

    ``boxes``: ``None`` for ground-truth boxes, else a detection-results JSON path or list.
    ``codec``: ``None`` (card's), a name ("sbn", "dark", "udp") or a codec.  ``device``:
    ``None`` keeps the model where it is.  ``flip_shift``: ``None`` = derived from the codec.
    The model's train/eval mode is restored afterwards, so a trainer can call this between
    epochs.  Returns ``{AP, AP50, …, ARL, results, skipped, num_instances, timings}`` (with detection
    ``boxes`` also :func:`box_coverage`'s counts); with
    ``score=False`` (test-dev: no annotations) only the results, nothing is scored.

    With a sharded ``shard`` (:mod:`frpose_cli.jobs.shards`) only the shard's images are run, its poses
    are written to ``parts`` (:mod:`frpose_cli.evaluation.eval_shards`, recording ``part_meta``), and the
    process that merges returns the whole run's report; the others return ``None``.
    """
    from frpose_cli.evaluation import eval_shards

    gt = _ground_truth(ann_file, gt, card)
    codec = resolve_codec(card, codec)
    flip = flip and card.keypoints.can_flip   # no left/right pairs: a flip test would mislabel
    instances = instances_for(gt, boxes, det_score_thr)
    skipped = Counter(getattr(instances, "skipped", {}))
    coverage = box_coverage(gt, instances) if boxes is not None and score else {}   # of every shard's images
    if max_instances is not None:
        instances = type(instances)(list(instances)[:max_instances], skipped)
    from frpose_cli.jobs.progress import JobProgress
    from frpose_cli.jobs.shards import Shard, merge_when_complete

    shard = shard if shard is not None else Shard()
    total, places = len(instances), list(range(len(instances)))
    done = False
    if shard.sharded:
        instances, places = eval_shards.own_instances(instances, shard)
        path = eval_shards.part_path(parts, shard.index, shard.count)
        done = path.exists()   # a rerun (requeued array job): only the merge is left
        if done and eval_shards.read_part(path)[1].get("options") != (part_meta or {}).get("options"):
            raise FrposeError(f"{path} holds shard {shard.label} of a run made with other options; "
                              "choose another --out (parts of different runs are never mixed)")
        if done and log is not None:
            log(f"eval shard {shard.label}: its part {path} is already there (same options): kept, not run again")
    bar = JobProgress(progress and len(instances) > 0, shard, parts or ".", "eval", "crop", len(instances), total)
    try:
        raw = None
        if not done:
            raw = infer_poses(model, card, ann_file, image_dir, instances, places, gt, codec, flip,
                              batch_size, workers, device, flip_shift, bar, allow_empty=shard.sharded)
            raw.coverage = coverage
            bar.finish()
        if shard.sharded:
            if not done:
                eval_shards.write_part(path, raw, part_meta or {}, shard.label)
            every = [eval_shards.part_path(parts, i, shard.count) for i in range(shard.count)]
            raw = merge_when_complete(shard, parts, lambda: all(q.exists() for q in every),
                                      lambda: eval_shards.load_parts(parts, shard.count)[0], tick=bar.poll)
    finally:
        bar.close()
    if raw is None:
        return None
    return score_poses(raw, gt, rescore_thr, nms_thr, cocoeval, score)


def infer_poses(model, card, ann_file, image_dir, instances, places, gt, codec, flip, batch_size, workers,
                device, flip_shift, progress, allow_empty: bool = False):
    """The network part of the protocol on ``instances`` → :class:`~frpose_cli.evaluation.eval_shards.RawPoses`.
    ``places``: each instance's place in the full instance list (the merge order of shards)."""
    import time

    from frpose_cli.data.dataset import CocoPoseDataset
    from frpose_cli.evaluation.eval_shards import RawPoses

    start = time.perf_counter()
    given = Counter(getattr(instances, "skipped", {}))
    place_of = {id(inst): g for inst, g in zip(instances, places)}
    dataset = CocoPoseDataset(ann_file, image_dir, card, codec, train=False, instances=instances,
                              build_targets=False, coco=_pycoco(gt), raw_crops=True)
    local = Counter(dataset.skipped) - given      # missing files of these crops (selection counted once)
    if len(dataset) == 0 and not allow_empty:   # a shard may own no crop; a whole run must have some
        raise FrposeError(f"no person crops to evaluate in {image_dir} ({dataset.skipped_summary()})")
    if device is not None:
        model = model.to(device)
    was_training = model.training
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                                         persistent_workers=False, worker_init_fn=worker_init(),
                                         pin_memory=next(model.parameters()).device.type == "cuda")
    # the one top-down path (runtime.engine): predict and the accuracy gate run the same
    engine = TopDownEngine(model, card, codec, flip, batch_size, flip_shift)
    out = {k: [] for k in ("index", "image_id", "keypoints", "keypoint_scores", "box_scores", "areas")}
    damaged, timings = set(), dict.fromkeys(("load", "pose", "decode"), 0.0)
    try:
        batches = iter(loader) if len(dataset) else iter(())
        while True:
            t0 = time.perf_counter()
            batch = next(batches, None)
            t1 = time.perf_counter()
            timings["load"] += t1 - t0
            if batch is None:
                break
            heat = engine.heatmaps(batch["crop"])
            t2 = time.perf_counter()
            k, s = engine.decode(heat, batch["center"].numpy(), batch["scale"].numpy(), batch["rotation"].numpy())
            timings["pose"] += t2 - t1
            timings["decode"] += time.perf_counter() - t2
            valid = batch["valid"].numpy().astype(bool)
            if hasattr(progress, "update"):   # a jobs.progress.JobProgress
                progress.update(len(valid))
            local["unreadable image"] += int((~valid).sum())
            damaged.update(int(i) for i in batch["image_id"].numpy()[batch["damaged"].numpy().astype(bool)])
            scale = batch["scale"].numpy()
            out["index"].append(np.array([place_of[id(dataset.instances[i])] for i in batch["index"].tolist()],
                                         np.int64)[valid])
            out["image_id"].append(batch["image_id"].numpy()[valid])
            out["keypoints"].append(k[valid])
            out["keypoint_scores"].append(s[valid])
            out["box_scores"].append(batch["score"].numpy()[valid])
            out["areas"].append((scale[:, 0] * scale[:, 1])[valid])
    finally:
        model.train(was_training)
    k = card.keypoints.num_keypoints
    empty = {"index": ((0,), np.int64), "image_id": ((0,), np.int64), "keypoints": ((0, k, 2), np.float32),
             "keypoint_scores": ((0, k), np.float32), "box_scores": ((0,), np.float32), "areas": ((0,), np.float32)}
    arrays = {name: np.concatenate(v) if v else np.zeros(*empty[name]) for name, v in out.items()}
    return RawPoses(**arrays, skipped_global=dict(given), skipped_local=dict(+local), damaged=damaged,
                    seconds=time.perf_counter() - start, timings=timings)


def score_poses(raw, gt: GroundTruth, rescore_thr: float = RESCORE_THRESHOLD,
                nms_thr: float | None = OKS_NMS_THRESHOLD, cocoeval: str = "pycocotools", score: bool = True) -> dict:
    """Rescoring, OKS-NMS and COCOeval of raw poses (one process's, or the merged shards')."""
    results = poses_to_results(raw.image_id, raw.keypoints, raw.keypoint_scores, raw.box_scores, raw.areas, gt,
                               rescore_thr, nms_thr)
    # images libjpeg decoded with complaints (frpose_cli.data.images): used, and reported
    return {**_finish(gt, results, raw.skipped, cocoeval, score), "damaged_images": len(raw.damaged),
            "timings": raw.timings, "seconds": raw.seconds, "shards": raw.shards, **raw.coverage}


def oracle_heatmaps(codec: HeatmapCodec, crop_keypoints, visible, flip: bool = False, flip_index=None,
                    shift: float | None = None) -> torch.Tensor:
    """The codec's own targets for ground-truth crop keypoints (N, K, 2) — a perfect network.

    With ``flip``, the mirrored crop's targets are flipped back and averaged in, exactly as
    the flip test treats a network's output (this measures the flip shift, not the net)."""
    heat = torch.stack([torch.from_numpy(codec.encode(k, v)[0]) for k, v in zip(crop_keypoints, visible)])
    if not flip:
        return heat
    w = codec.input_size[1]
    mirrored = torch.stack([torch.from_numpy(codec.encode(flip_points_in_crop(k, w)[flip_index],
                                                          np.asarray(v)[flip_index])[0])
                            for k, v in zip(crop_keypoints, visible)])
    shift = flip_shift_for_codec(codec) if shift is None else float(shift)
    return (heat + flip_back(mirrored, flip_index, shift)) * 0.5


def evaluate_oracle(card, ann_file, codec=None, flip: bool = False, flip_shift: float | None = None,
                    batch_size: int = 64, cocoeval: str = "pycocotools", gt: GroundTruth | None = None,
                    rescore_thr: float = RESCORE_THRESHOLD, nms_thr: float | None = OKS_NMS_THRESHOLD) -> dict:
    """AP when the network is replaced by the codec applied to the ground truth.

    Ground-truth boxes give the crops; each labelled keypoint is encoded at the card's
    stride and σ and decoded back, so the AP lost is the heatmap representation's own
    quantisation (plus the flip test's, with ``flip``).  No images are read.  Adds
    ``mean_error_px``/``median_error_px``: decoded-to-truth distance of labelled keypoints, image pixels.
    """
    from frpose_cli.data.dataset import gt_instances

    gt = _ground_truth(ann_file, gt, card)
    codec = resolve_codec(card, codec)
    flip = flip and card.keypoints.can_flip
    instances = gt_instances(_pycoco(gt))
    if not instances:
        raise FrposeError(f"{ann_file}: no person with keypoints to build oracle heatmaps from")
    h, w = codec.input_size
    aspect = w / h
    flip_index = card.keypoints.flip_index()
    ids, kpts, kscores, areas, errors = [], [], [], [], []
    for start in range(0, len(instances), batch_size):
        chunk = instances[start:start + batch_size]
        cs = [box_to_center_scale(inst.box, aspect) for inst in chunk]
        centers = np.stack([c for c, _ in cs])
        scales = np.stack([s for _, s in cs])
        crop_kp = [transform_points(inst.keypoints[:, :2], warp_matrix(c, s, 0.0, (w, h), udp=codec.use_udp))
                   for inst, (c, s) in zip(chunk, cs)]
        visible = [(inst.keypoints[:, 2] > 0).astype(np.float32) for inst in chunk]
        heat = oracle_heatmaps(codec, crop_kp, visible, flip, flip_index, flip_shift)
        k, s = decode_to_image(codec, heat, centers, scales)
        errors += [np.linalg.norm(kp[v > 0] - inst.keypoints[v > 0, :2], axis=1)
                   for kp, v, inst in zip(k, visible, chunk)]
        ids.append([inst.image_id for inst in chunk])
        kpts.append(k)
        kscores.append(s)
        areas.append(scales[:, 0] * scales[:, 1])
    results = poses_to_results(np.concatenate(ids), np.concatenate(kpts), np.concatenate(kscores),
                               np.ones(len(instances)), np.concatenate(areas), gt, rescore_thr, nms_thr)
    out = _finish(gt, results, Counter(instances.skipped), cocoeval)
    # Mean distance, decoded to labelled ground truth, in image pixels: finer than AP, which saturates.
    errors = np.concatenate(errors)
    out["mean_error_px"], out["median_error_px"] = float(errors.mean()), float(np.median(errors))
    return out


def evaluate_results_file(results_path, ann_file, cocoeval: str = "pycocotools",
                          gt: GroundTruth | None = None) -> dict:
    """COCOeval of an existing COCO keypoint results file (bad entries skipped and counted)."""
    gt = _ground_truth(ann_file, gt)
    loaded = load_results(results_path, gt)
    metrics = coco_keypoint_eval(gt, loaded.results, cocoeval)
    return {**metrics, "results": loaded.results, "skipped": dict(loaded.skipped),
            "num_instances": len(loaded.results)}
