"""Build the two seeded, width-reduced RTMDet fixture checkpoints with mmdet 3.3.0's own code.

For each of `rtmdet-nano-arch` (seed 0) and `rtmdet-m-arch` (seed 1):

1. `Config.fromfile(configs/<name>.py)` (mmpose's published person-detector config, vendored unchanged
   in configs/, plus a 3-line override of the widths only) and `MODELS.build(cfg.model)` after
   `mmdet.utils.register_all_modules()`: the real mmdet module tree, so the real state_dict keys.
2. Seeded weights, one pass over `model.named_modules()` in order after torch.manual_seed(seed)
   (on the model after mmengine's revert_sync_batchnorm, as init_detector does; same keys): every
   Conv2d weight ~ N(0, (g / sqrt(fan_in))^2), fan_in = in/groups * kh * kw, g = 2 for
   ChannelAttention.fc and 1 otherwise; conv biases (only ChannelAttention.fc, rtm_cls, rtm_reg
   have one) ~ N(0, 1) for the fc, N(0, 0.5^2) otherwise; BatchNorm weight ~ U(0.5, 1.5), bias ~
   N(0, 0.2^2). BN running statistics: one eval-mode forward of the two images as one batch, in which
   a forward pre-hook sets each BN (in execution order, so with every upstream BN already set) from
   the per-channel mean m and variance v (floored at VAR_FLOOR) of the input it receives:
   running_mean = m + 0.2 * sqrt(v) * N(0, 1), running_var = v * U(0.5, 2), num_batches_tracked =
   12345. So activations stay O(1) through the untrained net, and folding BN is never an identity.
3. The last convs only (deterministic given the above): for each level, rtm_cls's weight is one of
   the N_DIRECTIONS projections of its input features with the highest correlation between
   neighbouring priors (so that high scores cluster and NMS has work), scaled to logit std CLS_STD
   over both images, with the sign, direction and bias chosen so that each image gets about
   TOPK_PER_LEVEL priors above score_thr (tiers loosened only where impossible), the constant padding
   area far below it, and the threshold in a gap >= MIN_LOGIT_GAP between sorted logits; rtm_reg's
   weight is rescaled so its raw output has std 0.15 (nano, linear: distance = raw * stride) or 0.06
   (m, exp_on_reg: distance = exp(raw) * stride) and its bias gives mean distances REG_MEAN strides.
4. A checkpoint laid out as mmengine 0.10.7's Runner.save_checkpoint writes it (meta with epoch,
   iter, cfg text, seed, experiment_name, time, mmengine_version + get_git_hash(), dataset_meta of
   the config's test dataset; state_dict = weights_to_cpu(model.state_dict()); message_hub;
   optimizer), written with mmengine's own save_checkpoint, then passed through mmdet 3.3.0's own
   tools/model_converters/publish_model.py (process_checkpoint: keeps meta + state_dict, legacy
   torch.save(_use_new_zipfile_serialization=False), renames to <stem>-<sha256[:8]>.pth).

Rerun (in a scratch venv with mmdet==3.3.0, mmengine 0.10.7, mmcv 2.1.0, see ../PROVENANCE.md):
    cd <scratch dir that is not inside a git work tree>
    python <this dir>/make_fixture.py OUT_DIR [IMAGE_DIR]
then `python <this dir>/run_mmdet.py OUT_DIR [IMAGE_DIR]` for expected.json and the npz files.
IMAGE_DIR defaults to ../../coco/val2017 relative to this folder (the vendored COCO images).
Output is deterministic on CPU except the `meta.time` string (and so the file's sha256/name).
"""
import functools
import glob
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn

import mmengine
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.logging import MessageHub
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmengine.runner.checkpoint import save_checkpoint, weights_to_cpu
from mmengine.utils import get_git_hash

import mmdet
from mmdet.registry import DATASETS, MODELS
from mmdet.utils import register_all_modules
from mmdet.utils.misc import get_test_pipeline_cfg

HERE = os.path.dirname(os.path.abspath(__file__))
SPECS = {
    'rtmdet-nano-arch': dict(config='configs/rtmdet-nano-arch.py', seed=0, stem='rtmdet_nano-arch_toy'),
    'rtmdet-m-arch': dict(config='configs/rtmdet-m-arch.py', seed=1, stem='rtmdet_m-arch_toy'),
}
IMAGES = ['000000000785.jpg', '000000040083.jpg']
TOPK_PER_LEVEL = (20, 10, 6)
CLS_STD = 1.5
VAR_FLOOR = 0.1
RIDGE = 0.3
N_DIRECTIONS = 3
MIN_LOGIT_GAP = 0.02
# mean (left, top, right, bottom) distance per level, in strides: boxes 5x7 / 5x7 / 3x5 strides, so
# that the IoU of neighbouring priors' boxes (2/3, 3/4, 1/2, 2/3) stays away from the NMS threshold 0.6
REG_MEAN = ((2.5, 3.5, 2.5, 3.5), (2.5, 3.5, 2.5, 3.5), (1.5, 2.5, 1.5, 2.5))


def image_dir(argv):
    if len(argv) > 2:
        return argv[2]
    d = os.path.normpath(os.path.join(HERE, '..', '..', 'coco', 'val2017'))
    return d if os.path.isdir(d) else '/work/main/tests/data/coco/val2017'


def build(name):
    register_all_modules()
    init_default_scope('mmdet')
    cfg = Config.fromfile(os.path.join(HERE, SPECS[name]['config']))
    model = MODELS.build(cfg.model)
    return cfg, model


def seed_weights(model, seed, batches):
    """Seeded weights; BN running statistics from the two images (see below), then perturbed."""
    torch.manual_seed(seed)
    bns = []
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
                gain = 2.0 if name.endswith('attention.fc') else 1.0
                m.weight.normal_(0.0, gain / math.sqrt(fan_in))
                if m.bias is not None:
                    m.bias.normal_(0.0, 1.0 if name.endswith('attention.fc') else 0.5)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
                bns.append(m)
        # running statistics: each BN, in execution order, takes the per-channel mean and variance of
        # the input it really receives in eval mode (the two images as one batch; every upstream BN
        # already set), moved off them at random so that folding BN is not an identity.
        def pre_hook(b, args):
            x = args[0]
            mean = x.mean(dim=(0, 2, 3))
            # variance floored at VAR_FLOOR: no channel gets a large BN gain (which would amplify
            # float32 rounding), while eps=1e-5 vs 1e-3 still changes outputs by up to ~1 %
            var = x.var(dim=(0, 2, 3), unbiased=False).clamp(min=VAR_FLOOR)
            std = var.sqrt()
            b.running_mean.copy_(mean + torch.randn_like(std) * 0.2 * std)
            b.running_var.copy_(var * torch.empty_like(std).uniform_(0.5, 2.0))
            b.num_batches_tracked.fill_(12345)
        hooks = [b.register_forward_pre_hook(pre_hook) for b in bns]
        model.eval()
        x = torch.cat([b['inputs'] for b in batches], dim=0)
        model.bbox_head(model.extract_feat(x))
        for h in hooks:
            h.remove()


def preprocess(model, cfg, paths):
    pipeline = Compose(get_test_pipeline_cfg(cfg.copy()))
    out = []
    for p in paths:
        d = pipeline(dict(img_path=p, img_id=0))
        d = model.data_preprocessor(dict(inputs=[d['inputs']], data_samples=[d['data_samples']]), False)
        out.append(d)
    return out


def raw_last_convs(model, batches):
    """Inputs of rtm_cls[l] and raw outputs of rtm_cls[l] / rtm_reg[l] (before exp / stride)."""
    head = model.bbox_head
    got = []
    hooks = []
    store = {}
    for l in range(len(head.rtm_cls)):
        hooks.append(head.rtm_cls[l].register_forward_hook(
            lambda m, i, o, l=l: store.update({('cls_in', l): i[0].detach().clone(),
                                               ('cls', l): o.detach().clone()})))
        hooks.append(head.rtm_reg[l].register_forward_hook(
            lambda m, i, o, l=l: store.__setitem__(('reg', l), o.detach().clone())))
    with torch.no_grad():
        for b in batches:
            store.clear()
            head(model.extract_feat(b['inputs']))
            got.append(dict(store))
    for h in hooks:
        h.remove()
    return got


def smoothest_projection(feats):
    """The N_DIRECTIONS unit directions v over channels with the highest correlation of v.f between
    4-neighbouring positions (generalised eigenproblem of the neighbour cross-covariance against the
    ridge-regularised covariance), with that correlation."""
    c = feats[0].shape[0]
    x = torch.cat([f.reshape(c, -1) for f in feats], 1).double()
    mu = x.mean(1, keepdim=True)
    cov = (x - mu) @ (x - mu).T / x.shape[1]
    # ridge: keep away from low-variance directions (whose projection would cancel large terms)
    cov = cov + RIDGE * torch.trace(cov) / c * torch.eye(c, dtype=torch.float64)
    cross = torch.zeros(c, c, dtype=torch.float64)
    n = 0
    for f in feats:
        f = f.double() - mu.view(c, 1, 1)
        for a, b in ((f[:, :, :-1], f[:, :, 1:]), (f[:, :-1, :], f[:, 1:, :])):
            a = a.reshape(c, -1)
            b = b.reshape(c, -1)
            cross += (a @ b.T + b @ a.T) / 2
            n += a.shape[1]
    cross /= n
    lc = torch.linalg.cholesky(cov)
    li = torch.linalg.inv(lc)
    evals, evecs = torch.linalg.eigh(li @ cross @ li.T)
    out = []
    for i in range(1, N_DIRECTIONS + 1):
        v = li.T @ evecs[:, -i]
        out.append(((v / v.norm()).float(), evals[-i].item()))
    return out


def calibrate(model, cfg, paths, exp_on_reg, log):
    head = model.bbox_head
    thr_logit = math.log(cfg.model.test_cfg.score_thr / (1 - cfg.model.test_cfg.score_thr))
    with torch.no_grad():
        for l in range(len(head.rtm_cls)):
            head.rtm_cls[l].bias.zero_()
            head.rtm_reg[l].bias.zero_()
    batches = preprocess(model, cfg, paths)
    raw = raw_last_convs(model, batches)
    for l in range(len(head.rtm_cls)):
        # classification: among the smoothest projections (so that high-scoring priors form
        # clusters and NMS has work) and both signs, the one and the threshold that give each image
        # between lo*TOPK and hi*TOPK priors above score_thr (tiers loosened only if impossible), with
        # the constant padding value (bottom-right prior of the first, padded image) far below, and
        # the widest gap (>= MIN_LOGIT_GAP) between the sorted logits at the threshold.
        feats = [r[('cls_in', l)][0] for r in raw]
        k = TOPK_PER_LEVEL[l]
        best = None
        for tier, (lo, hi) in enumerate(((0.4, 2.5), (0.25, 3.0), (0.1, 4.0), (0.0, 4.0))):
            for d, (v, corr) in enumerate(smoothest_projection(feats)):
                per_raw = [torch.einsum('c,chw->hw', v, f).flatten() for f in feats]
                s = CLS_STD / torch.cat(per_raw).std().item()
                for sign in (1.0, -1.0):
                    per_img = [x_ * s * sign for x_ in per_raw]
                    z = torch.sort(torch.cat(per_img), descending=True).values.double()
                    pad_v = float(per_img[0][-1])
                    for p in range(1, min(len(z), 8 * k)):
                        t = float((z[p - 1] + z[p]) / 2)
                        gap = float(z[p - 1] - z[p])
                        if gap < MIN_LOGIT_GAP or pad_v > t - 1.0:
                            continue
                        counts = [int((x_.double() > t).sum()) for x_ in per_img]
                        if all(lo * k <= c <= hi * k for c in counts) and sum(counts) >= k:
                            if best is None or gap > best[0]:
                                best = (gap, t, counts, v * s * sign, d, corr, s * sign)
            if best is not None:
                break
        gap, t, counts, w, d, corr, scale = best
        b = thr_logit - t
        with torch.no_grad():
            head.rtm_cls[l].weight.copy_(w.view_as(head.rtm_cls[l].weight))
            head.rtm_cls[l].bias.fill_(b)
        log.append(f'level {l}: cls direction {d} (neighbour corr {corr:.3f}) x {scale:+.4f}, bias {b:+.4f}, '
                   f'tier {tier}: {counts} priors per image above thr, logit margin {gap / 2:.4f}')
        # regression
        reg = torch.cat([r[('reg', l)] for r in raw], dim=0)  # (n_img, 4, H, W)
        std = reg.permute(1, 0, 2, 3).reshape(4, -1).std(dim=1)
        target_std = 0.06 if exp_on_reg else 0.15
        scale = (target_std / std.mean()).item()
        mean = reg.permute(1, 0, 2, 3).reshape(4, -1).mean(dim=1) * scale
        target = torch.tensor([math.log(v) if exp_on_reg else v for v in REG_MEAN[l]])
        with torch.no_grad():
            head.rtm_reg[l].weight.mul_(scale)
            head.rtm_reg[l].bias.copy_(target - mean)
        log.append(f'level {l}: reg scale {scale:.4f} bias {[round(x, 4) for x in (target - mean).tolist()]}')


def checkpoint_dict(model, cfg, name, seed):
    # dataset_meta as Runner takes it from its dataloader's dataset (here the config's test dataset,
    # lazily built exactly as mmdet.apis.init_detector does).
    ds_cfg = cfg.test_dataloader.dataset.copy()
    ds_cfg['lazy_init'] = True
    dataset_meta = DATASETS.build(ds_cfg).metainfo
    meta = dict(epoch=0, iter=0)
    meta.update(
        cfg=cfg.pretty_text,
        seed=seed,
        experiment_name=f'{name}_toy_seed{seed}',
        time=time.strftime('%Y%m%d_%H%M%S', time.localtime()),
        mmengine_version=mmengine.__version__ + get_git_hash())
    meta.update(dataset_meta=dataset_meta)
    optim = torch.optim.AdamW(model.parameters(), lr=0.004, weight_decay=0.05)
    hub = MessageHub.get_instance(f'{name}_hub')
    hub.update_scalar('train/lr', 0.004)
    return {
        'meta': meta,
        'state_dict': weights_to_cpu(model.state_dict()),
        'message_hub': hub.state_dict(),
        'optimizer': optim.state_dict(),
    }


def publish(in_file, out_file):
    """mmdet 3.3.0's own tools/model_converters/publish_model.py:process_checkpoint. Its torch.load
    must unpickle the Runner file's message_hub (mmengine objects), which torch>=2.6's default
    weights_only=True refuses: restore the old default for this one call only."""
    tool = os.path.join(os.path.dirname(mmdet.__file__), '.mim', 'tools', 'model_converters',
                        'publish_model.py')
    ns = {}
    src = open(tool).read()
    exec(compile(src, tool, 'exec'), ns)
    orig = torch.load
    ns['torch'].load = functools.partial(orig, weights_only=False)
    try:
        ns['process_checkpoint'](in_file, out_file)
    finally:
        torch.load = orig
    stem = out_file[:-4]
    for _ in range(100):  # process_checkpoint renames with a non-awaited `mv` subprocess
        found = [f for f in glob.glob(stem + '-*.pth')]
        if found and not os.path.exists(out_file):
            return found[0]
        time.sleep(0.1)
    raise RuntimeError('published file not found')


def main():
    out = os.path.abspath(sys.argv[1])
    os.makedirs(out, exist_ok=True)
    imgs = [os.path.join(image_dir(sys.argv), f) for f in IMAGES]
    report = {}
    for name, spec in SPECS.items():
        cfg, model = build(name)
        model = revert_sync_batchnorm(model)
        model.eval()
        seed_weights(model, spec['seed'], preprocess(model, cfg, imgs))
        log = []
        calibrate(model, cfg, imgs, cfg.model.bbox_head.get('exp_on_reg', False), log)
        ckpt = checkpoint_dict(model, cfg, name, spec['seed'])
        work = os.path.join(out, 'work', name)
        os.makedirs(work, exist_ok=True)
        for f in glob.glob(os.path.join(out, spec['stem'] + '-*.pth')):
            os.remove(f)
        save_checkpoint(ckpt, os.path.join(work, 'epoch_0.pth'))
        final = publish(os.path.join(work, 'epoch_0.pth'), os.path.join(out, spec['stem'] + '.pth'))
        sd = ckpt['state_dict']
        with open(os.path.join(out, f'keys_{name}.txt'), 'w') as fh:
            for k, v in sd.items():
                fh.write(f'{k}\t{tuple(v.shape)}\t{v.dtype}\n')
        report[name] = dict(checkpoint=os.path.basename(final), calibration=log,
                            num_params=sum(v.numel() for k, v in sd.items() if v.dtype.is_floating_point),
                            file_bytes=os.path.getsize(final))
        print(name, json.dumps(report[name], indent=1))
    with open(os.path.join(out, 'make_fixture_report.json'), 'w') as fh:
        json.dump(report, fh, indent=1)


if __name__ == '__main__':
    main()
