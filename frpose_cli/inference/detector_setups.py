"""The person detector on the speed path: its set-ups, its accuracy gate, and the choice between them.

Set-ups of a torchvision Faster R-CNN (:class:`~frpose_cli.inference.detectors.TorchvisionDetector`):

=========  ==========================================================================================
set-up     what runs
=========  ==========================================================================================
fp32       the model as torchvision builds it (the reference)
fused      its frozen BatchNorms folded into the convolutions before them, backbone in channels_last,
           RoIAlign as a gather on every core (:mod:`~frpose_cli.inference.roi_pool`) (float32; exact up to
           float rounding)
bf16       ``fused`` with the backbone and FPN in bfloat16 (:class:`InPrecision`: the arithmetic of
           bfloat16 autocast, weights converted once): only where the CPU has native bf16
           (AVX512-BF16 / AMX) or the GPU compute capability 8.0+
fp16       the same in float16, CUDA only
=========  ==========================================================================================

What runs in reduced precision is the arithmetic: the backbone and FPN, the 3×3 convolution of the
region proposal network and the box head's two fully connected layers.  The layers that turn
features into scores and box offsets (the RPN's and the box predictor's 1×1/linear outputs), the
anchor decoding and NMS stay float32, because bf16 keeps 8 bits of mantissa: a 600-px box
coordinate computed in bf16 would move by up to 2 px, and scores that differ in their third digit
would tie and reorder non-maximum suppression.  ONNX Runtime is not tried: exporting
Faster R-CNN's data-dependent proposal and NMS stages is a conversion of its own, not a set-up, and
for the convolutions that make 90 % of its FLOPs ONNX Runtime's CPU kernels measured slower than
torch's (frpose_cli/deploy/ceiling.py's 3x3 convolution: 181 against 192 GFLOP/s on the AVX2 machine
of docs/benchmarks.md, 207 against 231 on the AVX-512 machine of 2026-12-06), with no bfloat16 path.

**The gate** (:func:`gate_detections`, thresholds fixed before any measurement): on real images, every
float32 person detection scoring at least ``--det-thr`` + :data:`SCORE_TOL` must be found by the
candidate at IoU ≥ :data:`IOU_MIN` with a score within :data:`SCORE_TOL`, and the candidate may add
no detection scoring ``--det-thr`` + :data:`SCORE_TOL` or more that matches no float32 detection of
at least ``--det-thr`` − :data:`SCORE_TOL` (a band around the threshold, where a score that moves by
a rounding step crosses it either way).  IoU 0.9 is the box agreement COCO's strictest detection AP
(AP@0.95 aside) asks for; a pose crop from a box at IoU 0.9 moves by at most ~5 % of its size.

**The choice** is made alongside the first run, not before it (:class:`DetectorChoice`): on the first
:data:`TRIAL_IMAGES` images with a person, the reference and the one candidate (``bf16``/``fp16``
where native, else ``fused``; RTMDet's own rule: ``RTMDetDetector._candidate``) both run and are timed; the run's outputs are the reference's.  The
candidate is taken for the rest of the run when it passes the gate and is at least ``MIN_GAIN`` ×
faster; the verdict goes to the precision cache (:mod:`frpose_cli.precision.cache`, keyed by the
detector's weights, its input size and the machine), so later runs start with it.  A first run
thus costs two extra candidate passes, never a wait before the first image.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from frpose_cli.inference.roi_pool import ChannelsLastBoxHead, GatherRoIPool
from frpose_cli.net.folding import fold_batchnorm
from frpose_cli.precision.autoselect import MIN_GAIN   # the pose network's margin over run-to-run noise

SETUPS = ("fp32", "fused", "bf16", "fp16")
# RTMDet's set-ups outside torch (rtmdet_runtimes.py, imported only when one is asked for: it loads the ONNX exporter)
RUNTIME_SETUPS = ("onnxruntime", "openvino", "openvino_bf16")
IOU_MIN = 0.9
SCORE_TOL = 0.05
TRIAL_IMAGES = 2          # images with a person on which the candidate is gated and timed
MAX_TRIAL_ITEMS = 6       # ... looked for among at most this many images


class InPrecision(nn.Module):
    """A part of the detector with its weights converted once to ``dtype`` (None: float32 as it is), its
    input cast to that and channels_last in one copy, and float32 out, so the next part reads float32.

    The same arithmetic as running the part under ``torch.autocast(dtype)`` (its convolutions and linear
    layers take ``dtype`` inputs and weights; BatchNorm is already folded away), without autocast's cost
    of casting every weight again on each call: 44 M parameters an image for the R50, ~90 ms of a 1.3 s
    bf16 detection on 2 cores."""

    def __init__(self, body: nn.Module, dtype: torch.dtype | None):
        super().__init__()
        self.body = body if dtype is None else body.to(dtype)
        self.dtype = dtype
        if hasattr(body, "out_channels"):   # FasterRCNN reads its backbone's width
            self.out_channels = body.out_channels

    def forward(self, x):
        fmt = torch.channels_last if x.dim() == 4 else torch.preserve_format
        x = x.to(dtype=self.dtype or x.dtype, memory_format=fmt)
        out = self.body(x)
        return {k: v.float() for k, v in out.items()} if isinstance(out, dict) else out.float()


def unavailable_reason(setup: str, device, hw) -> str | None:
    """Why ``setup`` cannot run natively here; None when it can (the pose network's rules)."""
    if setup in ("fp32", "fused"):
        return None
    from frpose_cli.precision.formats import unavailable_reason as precision_unavailable
    return precision_unavailable(setup, device, hw, backend="torch")


def build_setup(model: nn.Module, setup: str) -> nn.Module:
    """The detector model in ``setup`` (a new module; ``model`` is left as it is)."""
    if setup == "fp32":
        return model
    fused = fold_batchnorm(model)                 # FrozenBatchNorm2d → conv bias
    dtype = {"fused": None, "bf16": torch.bfloat16, "fp16": torch.float16}[setup]
    from torchvision.models.detection.faster_rcnn import TwoMLPHead
    fused.backbone = InPrecision(fused.backbone, dtype)
    heads = getattr(fused, "roi_heads", None)
    if heads is not None:   # Faster R-CNN: float32 RoIAlign as a gather on every core, read as it lies
        heads.box_roi_pool = GatherRoIPool(heads.box_roi_pool)
        if isinstance(heads.box_head, TwoMLPHead):
            heads.box_head = ChannelsLastBoxHead(heads.box_head, fused.backbone.out_channels,
                                                 heads.box_roi_pool.pool.output_size)
    if dtype is not None and heads is not None:   # its heavy head layers; scores and boxes stay float32
        fused.rpn.head.conv = InPrecision(fused.rpn.head.conv, dtype)
        heads.box_head = InPrecision(heads.box_head, dtype)
    return fused.to(memory_format=torch.channels_last)


def candidate_for(device, hw) -> str:
    """The one set-up a first run tries against float32."""
    for setup in ("bf16", "fp16"):
        if unavailable_reason(setup, device, hw) is None:
            return setup
    return "fused"


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every x,y,w,h box of ``a`` with every one of ``b``."""
    ax1, ay1, ax2, ay2 = a[:, 0:1], a[:, 1:2], a[:, 0:1] + a[:, 2:3], a[:, 1:2] + a[:, 3:4]
    bx1, by1, bx2, by2 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None)
    ih = np.clip(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None)
    inter = iw * ih
    union = a[:, 2:3] * a[:, 3:4] + b[:, 2] * b[:, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def compare_detections(reference: np.ndarray, candidate: np.ndarray, det_thr: float, iou_min: float = IOU_MIN,
                       score_tol: float = SCORE_TOL) -> dict:
    """One image's agreement (boxes x,y,w,h,score): required float32 detections matched (greedily, best
    IoU first), missing ones, extra candidate ones, and the worst IoU / score change among the matched."""
    ref = np.asarray(reference, np.float64).reshape(-1, 5)
    cand = np.asarray(candidate, np.float64).reshape(-1, 5)
    required = np.flatnonzero(ref[:, 4] >= det_thr + score_tol)
    iou = _iou(ref, cand) if len(ref) and len(cand) else np.zeros((len(ref), len(cand)))
    taken, worst_iou, worst_score, missing = set(), 1.0, 0.0, 0
    for r in required[np.argsort(-ref[required, 4], kind="stable")]:
        ok = [c for c in np.argsort(-iou[r], kind="stable") if c not in taken and iou[r, c] >= iou_min
              and abs(cand[c, 4] - ref[r, 4]) <= score_tol]
        if not ok:
            missing += 1
            continue
        taken.add(ok[0])
        worst_iou = min(worst_iou, float(iou[r, ok[0]]))
        worst_score = max(worst_score, float(abs(cand[ok[0], 4] - ref[r, 4])))
    near = ref[:, 4] >= det_thr - score_tol
    extra = sum(1 for c in range(len(cand)) if c not in taken and cand[c, 4] >= det_thr + score_tol
                and not (near & (iou[:, c] >= iou_min)).any())
    return {"required": int(len(required)), "matched": int(len(required) - missing), "missing": int(missing),
            "extra": int(extra), "worst_iou": worst_iou, "worst_score_change": worst_score}


@dataclass
class DetectorGateReport:
    setup: str
    images: int = 0
    required: int = 0
    matched: int = 0
    missing: int = 0
    extra: int = 0
    worst_iou: float = 1.0
    worst_score_change: float = 0.0

    @property
    def passed(self) -> bool:
        return self.images > 0 and self.required > 0 and self.missing == 0 and self.extra == 0

    def reason(self) -> str:
        if self.images == 0 or self.required == 0:
            return f"not gated: no person detected with a score ≥ --det-thr + {SCORE_TOL:g} in {self.images} image(s)"
        if self.passed:
            return (f"gate passed on {self.images} image(s): {self.matched}/{self.required} detections matched at "
                    f"IoU ≥ {IOU_MIN:g} (worst {self.worst_iou:.3f}), scores within {self.worst_score_change:.3f}")
        return (f"gate failed on {self.images} image(s): {self.missing} of {self.required} float32 detections "
                f"not found at IoU ≥ {IOU_MIN:g} with a score within ±{SCORE_TOL:g}, {self.extra} extra")


def gate_detections(pairs, det_thr: float, setup: str) -> DetectorGateReport:
    """The gate over (float32 boxes, candidate boxes) of each image."""
    report = DetectorGateReport(setup)
    for ref, cand in pairs:
        one = compare_detections(ref, cand, det_thr)
        report.images += 1
        for key in ("required", "matched", "missing", "extra"):
            setattr(report, key, getattr(report, key) + one[key])
        if one["matched"]:
            report.worst_iou = min(report.worst_iou, one["worst_iou"])
            report.worst_score_change = max(report.worst_score_change, one["worst_score_change"])
    return report


def weights_digest(path) -> str:
    """Names a detector weights file cheaply (resolved path, size, modification time): hashing a 160 MB
    file would cost every start half a second, and the zoo's files are hash-checked when fetched."""
    path = Path(path)
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]


@dataclass
class DetectorChoice:
    """The set-up a detector runs in, and the trial that decides it alongside a first run."""
    setup: str = "fp32"
    candidate: str | None = None          # on trial, else None
    key: str | None = None                # its precision-cache key (None: not cached, e.g. a fixed --precision)
    pairs: list = field(default_factory=list)
    seconds: dict = field(default_factory=lambda: {"fp32": 0.0})
    looked_at: int = 0
    line: str = ""

    def to_entry(self, report: DetectorGateReport) -> dict:
        return {"kind": "detector", "setup": self.setup, "tried": self.candidate, "gate": asdict(report),
                "passed": report.passed, "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
                "line": self.line, "when": time.strftime("%Y-%m-%dT%H:%M:%S")}


def run_trial(choice: DetectorChoice, reference, candidate, item, det_thr: float):
    """One image of the trial: both set-ups run and are timed; returns the reference's boxes and
    whether the trial is over (then ``choice`` holds the verdict)."""
    t0 = time.perf_counter()
    ref = reference(item)
    t1 = time.perf_counter()
    cand = candidate(item)
    t2 = time.perf_counter()
    choice.looked_at += 1
    if len(ref) and (np.asarray(ref)[:, 4] >= det_thr + SCORE_TOL).any():
        choice.pairs.append((ref, cand))
        choice.seconds["fp32"] = choice.seconds.get("fp32", 0.0) + (t1 - t0)
        choice.seconds[choice.candidate] = choice.seconds.get(choice.candidate, 0.0) + (t2 - t1)
    done = len(choice.pairs) >= TRIAL_IMAGES or choice.looked_at >= MAX_TRIAL_ITEMS
    return ref, done


def decide(choice: DetectorChoice, det_thr: float) -> DetectorGateReport:
    """The verdict of a finished trial: ``choice.setup`` and ``choice.line`` are set."""
    report = gate_detections(choice.pairs, det_thr, choice.candidate)
    fp32, cand = choice.seconds.get("fp32", 0.0), choice.seconds.get(choice.candidate, 0.0)
    gain = fp32 / cand if cand > 0 else 0.0
    if report.passed and gain >= MIN_GAIN:
        choice.setup = choice.candidate
        verdict = f"{choice.candidate} chosen ({gain:.2f}x float32)"
    elif report.passed:
        verdict = f"fp32 kept: {choice.candidate} only {gain:.2f}x float32 (needs {MIN_GAIN:.2f}x)"
    else:
        verdict = f"fp32 kept: {choice.candidate} rejected"
    choice.line = f"detector set-up: {verdict}; {report.reason()}"
    return report


def setup_for_precision(precision: str | None) -> str | None:
    """The detector's set-up for the run's ``--precision``: fp32/bf16/fp16 the same, otherwise (auto,
    int8, which is the pose network's ONNX Runtime path) chosen here (None)."""
    return precision if precision in ("fp32", "bf16", "fp16") else None
