"""Run mmdet 3.3.0's own inference on the fixture checkpoints and write expected.json + heads_*.npz.

    python run_mmdet.py OUT_DIR [IMAGE_DIR]

OUT_DIR holds the published checkpoints written by make_fixture.py (rtmdet_*-arch_toy-<sha8>.pth).
For each model: `mmdet.apis.init_detector(configs/<name>.py, ckpt, device='cpu')` and
`mmdet.apis.inference_detector(model, path)` per image (the config's own test pipeline:
LoadImageFromFile, Resize keep_ratio, Pad 114, [LoadAnnotations], PackDetInputs; then the model's
DetDataPreprocessor and RTMDet.predict with rescale=True), plus one list call
`inference_detector(model, [img1, img2])`. The raw head outputs are
`model.bbox_head(model.extract_feat(batch_inputs))` on the same preprocessed input, stored float32
in heads_<model>_<image>.npz together with the pre-NMS candidates
(`bbox_head.predict_by_feat(..., rescale=True, with_nms=False)`, i.e. after score_thr/topk, decode,
clamp, rescale and the min_bbox_size filter).
torch>=2.6 defaults torch.load to weights_only=True; the published files load under it (plain
meta + state_dict), so nothing is patched here. Floats are written with Python's repr of the
float32 value converted to double (exact).
"""
import copy
import glob
import hashlib
import json
import os
import sys

import numpy as np
import torch

import cv2
import mmcv
import mmengine
import mmdet
from mmengine.dataset import Compose
from mmdet.apis import inference_detector, init_detector
from mmdet.utils.misc import get_test_pipeline_cfg

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_fixture import IMAGES, SPECS, image_dir  # noqa: E402

NPZ_FOR = {'rtmdet-nano-arch': IMAGES, 'rtmdet-m-arch': ['000000000785.jpg']}  # ~1 MB budget


def plain(x):
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return x


def instances(pred):
    p = pred.pred_instances
    return dict(bboxes=p.bboxes.cpu().numpy().astype(np.float32).tolist(),
                scores=p.scores.cpu().numpy().astype(np.float32).tolist(),
                labels=p.labels.cpu().numpy().astype(np.int64).tolist())


def robustness(cls_scores, pre, pred, cfg):
    """How far this fixture's decisions lie from their thresholds (float64 re-computation), so a
    reimplementation that is right up to float32 rounding makes the same decisions."""
    thr = cfg.score_thr
    iou_thr = cfg.nms.iou_threshold
    s32 = torch.cat([c.flatten().sigmoid() for c in cls_scores]).double()
    sc = pre.scores.double().numpy()
    lg = np.log(sc / (1 - sc))  # logits recovered from the float32 scores
    b = pre.bboxes.double().numpy()
    order = np.argsort(-sc, kind='stable')
    keep = np.ones(len(sc), bool)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    iou_margin = float('inf')
    compared = suppressed = 0
    gap_supp = float('inf')
    for ii, i in enumerate(order):
        if not keep[ii]:
            continue
        for jj in range(ii + 1, len(order)):
            if not keep[jj]:
                continue
            j = order[jj]
            w = max(0.0, min(b[i, 2], b[j, 2]) - max(b[i, 0], b[j, 0]))
            h = max(0.0, min(b[i, 3], b[j, 3]) - max(b[i, 1], b[j, 1]))
            inter = w * h
            iou = inter / (area[i] + area[j] - inter)
            compared += 1
            iou_margin = min(iou_margin, abs(iou - iou_thr))
            if iou > iou_thr:
                gap_supp = min(gap_supp, lg[i] - lg[j])
                keep[jj] = False
                suppressed += 1
    wh = np.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1) if len(b) else np.zeros((0, 2))
    return dict(
        min_abs_score_minus_score_thr=float((s32 - thr).abs().min()),
        min_abs_logit_minus_logit_thr=float((torch.cat([c.flatten() for c in cls_scores]).double()
                                             - np.log(thr / (1 - thr))).abs().min()),
        candidate_scores_all_distinct=bool(len(np.unique(sc)) == len(sc)),
        min_gap_between_sorted_candidate_scores=float(np.min(np.diff(np.sort(sc)))) if len(sc) > 1 else None,
        min_gap_between_sorted_candidate_logits=float(np.min(np.diff(np.sort(lg)))) if len(sc) > 1 else None,
        nms_pairs_compared=compared,
        nms_suppressed_float64=suppressed,
        nms_kept_float64_equals_mmdet=bool(keep.sum() == len(pred.pred_instances.scores)),
        min_abs_iou_minus_iou_threshold=iou_margin,
        min_logit_gap_kept_vs_suppressed=gap_supp,
        min_candidate_box_w_h=float(wh.min()) if len(wh) else None,
        max_candidate_box_w_h=float(wh.max()) if len(wh) else None)


def float64_diff(model64, x, cls_scores, bbox_preds):
    c64, b64 = model64.bbox_head(model64.extract_feat(x.double()))
    return dict(cls_scores=[float((a.double() - b).abs().max()) for a, b in zip(cls_scores, c64)],
                bbox_preds=[float((a.double() - b).abs().max()) for a, b in zip(bbox_preds, b64)])


def perturbation_test(head, cls_scores, bbox_preds, meta, ref, trials=20, sigma_logit=2e-3,
                      sigma_dist=2e-2):
    """Rerun mmdet's own predict_by_feat with the head outputs perturbed (Gaussian, sigma_logit on the
    logits, sigma_dist pixels on the stride-scaled distances). The same number of detections, each
    reference box matched one-to-one by a perturbed box within a few sigma, means no decision
    (score_thr, NMS, clamp, size filter) is within float32 reach of its threshold. The output ORDER
    may still change where two kept detections' logits are closer than the noise (reported apart)."""
    g = torch.Generator().manual_seed(0)
    sf = min(meta['scale_factor'])
    tol = 10 * sigma_dist / sf
    worst = 0.0
    same_set = True
    same_order = True
    for _ in range(trials):
        c = [x + torch.randn(x.shape, generator=g) * sigma_logit for x in cls_scores]
        b = [x + torch.randn(x.shape, generator=g) * sigma_dist for x in bbox_preds]
        r = head.predict_by_feat(c, b, batch_img_metas=[meta], rescale=True)[0]
        if len(r.scores) != len(ref.scores):
            same_set = same_order = False
            continue
        d = (ref.bboxes[:, None, :] - r.bboxes[None, :, :]).abs().amax(-1)  # (n_ref, n_new)
        nearest = d.argmin(1)
        if len(set(nearest.tolist())) != len(nearest):
            same_set = False
        worst = max(worst, float(d.min(1).values.max()) if len(d) else 0.0)
        if len(d) and not torch.equal(nearest, torch.arange(len(nearest))):
            same_order = False
    return dict(trials=trials, sigma_logit=sigma_logit, sigma_dist_px_network_input=sigma_dist,
                same_detections=bool(same_set and worst < tol), max_abs_bbox_change_px=worst,
                same_order=bool(same_order))


def main():
    out = os.path.abspath(sys.argv[1])
    idir = image_dir(sys.argv)
    paths = [os.path.join(idir, f) for f in IMAGES]
    torch.set_grad_enabled(False)
    result = dict(
        generator='generators/run_mmdet.py (see PROVENANCE.md)',
        versions=dict(mmdet=mmdet.__version__, mmengine=mmengine.__version__, mmcv=mmcv.__version__,
                      torch=torch.__version__, numpy=np.__version__, opencv=cv2.__version__),
        images={f: dict(sha256=hashlib.sha256(open(p, 'rb').read()).hexdigest()) for f, p in zip(IMAGES, paths)},
        models={})
    for name, spec in SPECS.items():
        ckpt = glob.glob(os.path.join(out, spec['stem'] + '-*.pth'))
        assert len(ckpt) == 1, ckpt
        ckpt = ckpt[0]
        cfg_path = os.path.join(HERE, spec['config'])
        model = init_detector(cfg_path, ckpt, device='cpu')
        cfg = model.cfg
        head = model.bbox_head
        entry = dict(
            checkpoint=os.path.basename(ckpt),
            checkpoint_sha256=hashlib.sha256(open(ckpt, 'rb').read()).hexdigest(),
            config='generators/' + spec['config'],
            seed=spec['seed'],
            dataset_meta=plain(model.dataset_meta),
            test_cfg=plain(cfg.model.test_cfg.to_dict()),
            head_test_cfg=plain(head.test_cfg.to_dict()),
            data_preprocessor=plain(cfg.model.data_preprocessor.to_dict()),
            data_preprocessor_resolved=dict(
                mean=model.data_preprocessor.mean.flatten().tolist(),
                std=model.data_preprocessor.std.flatten().tolist(),
                channel_conversion=bool(model.data_preprocessor._channel_conversion),
                pad_size_divisor=model.data_preprocessor.pad_size_divisor,
                pad_value=model.data_preprocessor.pad_value),
            test_pipeline=plain([dict(t) for t in get_test_pipeline_cfg(cfg.copy())]),
            backbone=plain(cfg.model.backbone.to_dict()),
            neck=plain(cfg.model.neck.to_dict()),
            bbox_head=plain({k: v for k, v in cfg.model.bbox_head.to_dict().items()
                             if k not in ('loss_cls', 'loss_bbox')}),
            prior_generator=dict(strides=[list(s) for s in head.prior_generator.strides],
                                 offset=head.prior_generator.offset),
            images={})
        pipeline = Compose(get_test_pipeline_cfg(cfg.copy()))
        model64 = copy.deepcopy(model).double()
        singles = []
        for f, p in zip(IMAGES, paths):
            pred = inference_detector(model, p)
            singles.append(pred)
            # same preprocessing as inference_detector/test_step, then the raw head
            d = pipeline(dict(img_path=p, img_id=0))
            packed = d['inputs']  # uint8 CHW (BGR) after LoadImageFromFile + Resize + Pad
            decoded = mmcv.imread(p)  # what LoadImageFromFile decodes (cv2, IMREAD_COLOR, BGR)
            d = model.data_preprocessor(dict(inputs=[d['inputs']], data_samples=[d['data_samples']]), False)
            x = d['inputs']
            meta = d['data_samples'][0].metainfo
            cls_scores, bbox_preds = head(model.extract_feat(x))
            # cross-check: head outputs -> predict_by_feat reproduces inference_detector exactly
            re = head.predict_by_feat(cls_scores, bbox_preds, batch_img_metas=[meta], rescale=True)[0]
            same = (torch.equal(re.bboxes, pred.pred_instances.bboxes)
                    and torch.equal(re.scores, pred.pred_instances.scores)
                    and torch.equal(re.labels, pred.pred_instances.labels))
            pre = head.predict_by_feat(cls_scores, bbox_preds, batch_img_metas=[meta], rescale=True,
                                       with_nms=False)[0]
            n_above = int(sum((c.sigmoid() > head.test_cfg.score_thr).sum().item() for c in cls_scores))
            xd = x.double()
            img_entry = dict(
                decoded_bgr_uint8=dict(shape=list(decoded.shape),
                                       sha256=hashlib.sha256(np.ascontiguousarray(decoded).tobytes()).hexdigest(),
                                       channel_sums=[int(v) for v in decoded.reshape(-1, 3).sum(0, dtype=np.int64)]),
                resized_padded_uint8_chw=dict(
                    shape=list(packed.shape), dtype=str(packed.dtype).replace('torch.', ''),
                    sha256=hashlib.sha256(packed.contiguous().numpy().tobytes()).hexdigest(),
                    channel_sums=[int(v) for v in packed.long().sum(dim=(1, 2))]),
                input_shape=list(x.shape),
                input_dtype=str(x.dtype).replace('torch.', ''),
                input_channel_sums=xd.sum(dim=(0, 2, 3)).tolist(),
                input_pixels={f'{c},{yy},{xx}': x[0, c, yy, xx].item()
                              for c, yy, xx in [(0, 0, 0), (1, 100, 150), (2, 200, 300), (0, x.shape[2] - 1, x.shape[3] - 1)]},
                metainfo=plain({k: meta[k] for k in sorted(meta) if k != 'img_path'}),
                pred_instances=instances(pred),
                num_priors_above_score_thr=n_above,
                num_candidates_after_topk_and_size_filter=int(len(pre.scores)),
                num_after_nms=int(len(pred.pred_instances.scores)),
                predict_by_feat_on_heads_equals_inference_detector=bool(same),
                robustness=robustness(cls_scores, pre, pred, head.test_cfg),
                perturbation=perturbation_test(head, cls_scores, bbox_preds, meta, pred.pred_instances),
                # the same network in float64 on the same input: how far float32 rounding alone moves
                # the head outputs (a guide for a reimplementation's tolerances)
                float32_vs_float64_head_max_abs_diff=float64_diff(model64, x, cls_scores, bbox_preds),
                head_output_shapes=dict(cls_scores=[list(c.shape) for c in cls_scores],
                                        bbox_preds=[list(b.shape) for b in bbox_preds]))
            if f in NPZ_FOR[name]:
                npz = f'heads_{name}_{os.path.splitext(f)[0]}.npz'
                arrays = {}
                for l, (c, b) in enumerate(zip(cls_scores, bbox_preds)):
                    arrays[f'cls_score_{l}'] = c.numpy().astype(np.float32)
                    arrays[f'bbox_pred_{l}'] = b.numpy().astype(np.float32)
                arrays['prenms_bboxes'] = pre.bboxes.numpy().astype(np.float32)
                arrays['prenms_scores'] = pre.scores.numpy().astype(np.float32)
                np.savez_compressed(os.path.join(out, npz), **arrays)
                img_entry['heads_npz'] = npz
            entry['images'][f] = img_entry
        batch = inference_detector(model, paths)
        entry['batch_call'] = dict(
            call='inference_detector(model, [%s])' % ', '.join(IMAGES),
            pred_instances=[instances(b) for b in batch],
            identical_to_single_calls=all(
                torch.equal(a.pred_instances.bboxes, b.pred_instances.bboxes)
                and torch.equal(a.pred_instances.scores, b.pred_instances.scores)
                and torch.equal(a.pred_instances.labels, b.pred_instances.labels)
                for a, b in zip(batch, singles)))
        result['models'][name] = entry
    with open(os.path.join(out, 'expected.json'), 'w') as fh:
        json.dump(result, fh, indent=1)
    print(json.dumps({m: {f: (e['images'][f]['num_priors_above_score_thr'],
                              e['images'][f]['num_candidates_after_topk_and_size_filter'],
                              e['images'][f]['num_after_nms'],
                              e['images'][f]['predict_by_feat_on_heads_equals_inference_detector'])
                          for f in IMAGES} for m, e in result['models'].items()}, indent=1))


if __name__ == '__main__':
    main()
