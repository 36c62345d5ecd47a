"""A torchvision Faster R-CNN that has learned the people of a few real images, made in seconds without a
download: its random backbone and FPN are kept (their frozen batch norms given the images' statistics, as
training leaves them), and only the four output layers are fitted to the images'
annotated person boxes (the RPN's objectness and box offsets, the box predictor's person-vs-background
score and person box offsets).

Why: the detector gate asks whether a reduced-precision set-up finds the float32 detections again.  A
detector with random output layers is undecided everywhere -- thousands of proposals within a rounding
step of each other -- so any set-up reorders them and is rightly rejected; a trained detector is decided
(a person scores near 1, background near 0, boxes sit on the people), which is what the gate is for and
what these fitted layers reproduce on the images they were fitted to.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import box_iou



def _logistic(x: torch.Tensor, y: torch.Tensor, steps: int = 150, l2: float = 1e-3):
    """Weights (1, d) and bias (1,) fitting P(y = 1) = sigmoid(x @ w.T + b) on labelled rows."""
    mean, std = x.mean(0), x.std(0) + 1e-6       # standardised, so one step size suits every layer
    z = (x - mean) / std
    w = torch.zeros(1, x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")
    pos = y.float().mean().clamp(0.01, 0.99)

    @torch.enable_grad()
    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(z @ w.T + b, y.float().reshape(len(z), 1),
                                                  pos_weight=(1 - pos) / pos) + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():   # back to the raw features: w' = w / std, b' = b - w' . mean
        w_raw = w / std
        return w_raw, b - (w_raw * mean).sum(1)


def _ridge(x: torch.Tensor, y: torch.Tensor, l2: float = 1.0):
    """Least-squares weights (k, d) and bias (k,) of y ≈ x @ w.T + b (ridge on standardised features)."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / std
    ym = y.mean(0)
    w = torch.linalg.solve(z.T @ z + l2 * len(z) * torch.eye(z.shape[1]), z.T @ (y - ym)).T
    w_raw = w / std
    return w_raw, ym - w_raw @ mean


def _standardise_batchnorms(model, batch: torch.Tensor) -> None:
    """Give every frozen batch norm the statistics of its input on ``batch`` (one pass, in network order),
    as training leaves them: a random network's channels otherwise drift to a common offset that
    dwarfs their variation, and features that differ by a rounding step become indistinguishable."""
    from torchvision.ops import FrozenBatchNorm2d

    def calibrate(bn, args):
        x = args[0].float()
        bn.running_mean.copy_(x.mean((0, 2, 3)))
        bn.running_var.copy_(x.var((0, 2, 3)) + 1e-5)

    hooks = [m.register_forward_pre_hook(calibrate) for m in model.backbone.modules()
             if isinstance(m, FrozenBatchNorm2d)]
    try:
        model.backbone(batch)
    finally:
        for h in hooks:
            h.remove()


@torch.no_grad()
def fit_person_detector(model, images, boxes_xywh) -> None:
    """Fit ``model``'s output layers (in place) so that it detects the person boxes ``boxes_xywh`` (one
    (n, 4) array per image, x,y,w,h in pixels) on ``images`` (H x W x 3 RGB uint8 arrays)."""
    model.eval()
    tensors = [torch.from_numpy(im.copy()).permute(2, 0, 1).float().div(255) for im in images]
    image_list, _ = model.transform(tensors)
    targets = []
    for t, (h, w), b in zip(tensors, image_list.image_sizes, boxes_xywh):
        b = torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4)
        scale = torch.tensor([w / t.shape[2], h / t.shape[1]] * 2)
        targets.append({"boxes": torch.cat([b[:, :2], b[:, :2] + b[:, 2:]], 1) * scale})
    _standardise_batchnorms(model, image_list.tensors)
    features = model.backbone(image_list.tensors)
    levels = list(features.values())

    # The RPN: objectness and offsets of every anchor, read from its shared 3x3 conv's output.
    rpn = model.rpn
    shared = [rpn.head.conv(f) for f in levels]
    anchors = rpn.anchor_generator(image_list, levels)
    labels, matched = rpn.assign_targets_to_anchors(anchors, targets)
    n_anchor = rpn.head.cls_logits.out_channels
    rows = torch.cat([s.permute(0, 2, 3, 1).reshape(len(levels[0]), -1, s.shape[1]) for s in shared], 1)
    x = torch.cat([r.repeat_interleave(n_anchor, 0) for r in rows])            # one row per anchor
    y = torch.cat(labels)
    which = torch.arange(len(y)) % n_anchor                                        # the anchor's shape
    cls_w, cls_b = torch.zeros(n_anchor, x.shape[1]), torch.full((n_anchor,), -8.0)
    reg_w, reg_b = torch.zeros(n_anchor * 4, x.shape[1]), torch.zeros(n_anchor * 4)
    deltas = rpn.box_coder.encode(matched, anchors)
    deltas = torch.cat(deltas) if isinstance(deltas, (list, tuple)) else deltas
    for a in range(n_anchor):
        mine = (which == a) & (y >= 0)
        if (y[mine] == 1).sum() >= 2:
            w, b = _logistic(x[mine], y[mine] == 1)
            cls_w[a], cls_b[a] = w[0], b[0]
            pos = mine & (y == 1)
            w, b = _ridge(x[pos], deltas[pos], l2=1.0)
            reg_w[4 * a:4 * a + 4], reg_b[4 * a:4 * a + 4] = w, b
    rpn.head.cls_logits.weight.copy_(cls_w[:, :, None, None])
    rpn.head.cls_logits.bias.copy_(cls_b)
    rpn.head.bbox_pred.weight.copy_(reg_w[:, :, None, None])
    rpn.head.bbox_pred.bias.copy_(reg_b)

    # The box predictor: person against background on the proposals of the fitted RPN.
    proposals, _ = rpn(image_list, features)
    heads = model.roi_heads
    pooled = heads.box_head(heads.box_roi_pool(features, proposals, image_list.image_sizes))
    matched_idx, is_person = [], []
    for props, target in zip(proposals, targets):
        iou = box_iou(props, target["boxes"])
        best, idx = iou.max(1)
        is_person.append(best >= 0.6)
        matched_idx.append(target["boxes"][idx])
    person = torch.cat(is_person)
    w, b = _logistic(pooled, person)
    predictor = heads.box_predictor
    predictor.cls_score.weight.zero_()
    predictor.cls_score.bias.fill_(-20.0)               # no class but person and background
    predictor.cls_score.weight[1], predictor.cls_score.bias[1] = w[0], b[0]
    predictor.cls_score.bias[0] = 0.0                   # softmax over (background 0, person logit)
    targets_delta = heads.box_coder.encode(matched_idx, proposals)
    targets_delta = torch.cat(targets_delta) if isinstance(targets_delta, (list, tuple)) else targets_delta
    w, b = _ridge(pooled[person], targets_delta[person], l2=1.0)
    predictor.bbox_pred.weight.zero_()
    predictor.bbox_pred.bias.zero_()
    predictor.bbox_pred.weight[4:8], predictor.bbox_pred.bias[4:8] = w, b
