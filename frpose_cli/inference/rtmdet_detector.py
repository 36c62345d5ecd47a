"""RTMDet person detectors (mmpose's RTMPose pipeline), loaded from the publishers' mmdet checkpoints.

What runs is what mmdet 3.x runs for these files' configs (``projects/rtmpose/rtmdet/person/`` of mmpose,
over mmdet's ``rtmdet_l_8xb32-300e_coco.py``; the inference settings of mmpose's ``demo/mmdetection_cfg/``), proved equal to mmdet's own outputs by
``tests/test_rtmdet.py`` on files mmdet itself wrote (``tests/data/rtmdet-mmdet-3.3.0/``):

- **letterbox** (:func:`letterbox`): the image scaled by min(S/h, S/w) to ``int(w·s + 0.5) × int(h·s + 0.5)``
  (mmcv's ``imrescale``, OpenCV bilinear), placed top-left on an S×S canvas of grey 114 (mmdet's ``Pad``);
  S = 320 (nano) or 640 (m), ``--det-size`` to change it (a multiple of 32).
- **channels**: BGR, mean (103.53, 116.28, 123.675), std (57.375, 57.12, 58.395) (``bgr_to_rgb=False``: the
  weights saw OpenCV's order; frpose's images are RGB, so they are flipped here).
- **decoding** (:func:`decode`): per level (strides 8, 16, 32) sigmoid scores; (prior, class) pairs above
  the score threshold (0.05), best first, at most 1000 (``nms_pre``); each prior (x·stride, y·stride) minus/plus its
  left/top/right/bottom distances, clamped to the S×S canvas; divided by the letterbox's per-axis scale;
  boxes of zero width or height dropped; NMS per class at IoU 0.6; at most 100 boxes (:class:`DecodeConfig`).  ``--det-thr`` (frpose's, 0.3) then keeps confident persons.  Since a box never suppresses
  a better-scored one, dropping boxes under ``--det-thr`` *before* NMS leaves the kept ones exactly as they
  were, and saves NMS the crowd of 0.001-score boxes.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from frpose_cli.data.geometry import clip_boxes
from frpose_cli.data.sources import SourceItem
from frpose_cli.errors import FrposeError
from frpose_cli.inference import detector_setups as ds
from frpose_cli.inference.detector_base import NetworkDetector
from frpose_cli.net.folding import fold_batchnorm
from frpose_cli.net.rtmdet import STRIDES, RTMDet, spec_from_state
from frpose_cli.inference.detector_archs import arch_of_keys
from frpose_cli.weights.checkpoint import read_checkpoint_file
from frpose_cli.weights.published import strip_prefix, unwrap_state_dict

MEAN_BGR = (103.53, 116.28, 123.675)
STD_BGR = (57.375, 57.12, 58.395)
PAD_VALUE = 114
SIZE_MULTIPLE = 32            # the coarsest stride: a canvas side must be a multiple of it
SIZE_RANGE = (64, 2048)


@dataclass(frozen=True)
class DecodeConfig:
    """The ``test_cfg`` of mmpose's inference configs for these files (``demo/mmdetection_cfg/rtmdet_*_coco-person
    .py``, what its demos and inferencer run; the training configs evaluate with mmdet's 30000 / 0.001 / 0.65 / 300)."""
    nms_pre: int = 1000
    score_thr: float = 0.05
    iou_thr: float = 0.6
    max_per_img: int = 100


@dataclass(frozen=True)
class Family:
    """What a file cannot say about itself, fixed by the detector's name."""
    depthwise: bool
    exp_on_reg: bool
    input_size: int


FAMILIES = {"rtmdet-nano": Family(depthwise=True, exp_on_reg=False, input_size=320),
            "rtmdet-m": Family(depthwise=False, exp_on_reg=True, input_size=640)}
# Whether a first run on a CPU trials OpenVINO (where installed) rather than torch's own set-up: measured
# faster for both RTMDets (docs/detectors.md, "Set-ups").
OPENVINO_FIRST = True
PERSON_LABEL = 0              # the person-only models' one class, and COCO's first class in mmdet's order


def check_input_size(size, arch: str = "rtmdet") -> int:
    """``--det-size`` for an RTMDet: the square canvas side, a multiple of 32 in 64..2048."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"input_size must be an int, got {type(size).__name__}")
    lo, hi = SIZE_RANGE
    if not lo <= size <= hi or size % SIZE_MULTIPLE:
        raise FrposeError(f"--det-size {size}: {arch} takes a square input whose side is a multiple of "
                          f"{SIZE_MULTIPLE} from {lo} to {hi} (its own: {FAMILIES.get(arch, FAMILIES['rtmdet-m']).input_size})")
    return int(size)


def letterbox(image_rgb: np.ndarray, size: int) -> tuple[np.ndarray, tuple[float, float]]:
    """The S×S BGR uint8 canvas the network reads, and the (x, y) scale from image to canvas pixels."""
    if not isinstance(image_rgb, np.ndarray) or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError("image_rgb must be an (H, W, 3) array")
    h, w = image_rgb.shape[:2]
    scale = min(size / h, size / w)
    # mmcv's rounding; at least 1 px, where mmcv would fail on a sliver of an image
    nw, nh = max(1, int(w * scale + 0.5)), max(1, int(h * scale + 0.5))
    resized = cv2.resize(np.ascontiguousarray(image_rgb[:, :, ::-1]), (nw, nh), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((size, size, 3), PAD_VALUE, np.uint8)
    canvas[:nh, :nw] = resized
    return canvas, (nw / w, nh / h)


def to_input(canvases: np.ndarray, device, dtype=torch.float32) -> torch.Tensor:
    """(N, S, S, 3) uint8 BGR canvases → the normalised (N, 3, S, S) batch, made on ``device``."""
    x = torch.from_numpy(np.ascontiguousarray(canvases)).to(device).permute(0, 3, 1, 2).float()
    mean = torch.tensor(MEAN_BGR, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD_BGR, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).to(dtype).contiguous(memory_format=torch.channels_last)


def decode(levels, scale_xy, size: int, score_thr: float, cfg: DecodeConfig = DecodeConfig()):
    """One image's head outputs (per level: logits (C, h, w), distances (4, h, w)) → boxes x1,y1,x2,y2 in
    image pixels, scores and labels, as mmdet's ``predict_by_feat`` with ``rescale=True`` gives them."""
    from torchvision.ops import batched_nms
    thr = max(cfg.score_thr, score_thr)
    points, dists, scores, labels = [], [], [], []
    for (logits, dist), stride in zip(levels, STRIDES):
        c, h, w = logits.shape
        s = logits.float().permute(1, 2, 0).reshape(-1, c).sigmoid()
        pairs = torch.nonzero(s > thr)                 # (prior, class), the order mmdet's filter sees
        top = s[pairs[:, 0], pairs[:, 1]]
        top, order = top.sort(descending=True)
        keep = pairs[order[:cfg.nms_pre]]
        prior = keep[:, 0]
        points.append(torch.stack([(prior % w) * stride, torch.div(prior, w, rounding_mode="floor") * stride], 1))
        dists.append(dist.float().permute(1, 2, 0).reshape(-1, 4)[prior])
        scores.append(top[:cfg.nms_pre])
        labels.append(keep[:, 1])
    p, d = torch.cat(points).float(), torch.cat(dists)
    boxes = torch.stack([p[:, 0] - d[:, 0], p[:, 1] - d[:, 1], p[:, 0] + d[:, 2], p[:, 1] + d[:, 3]], 1)
    boxes = boxes.clamp(min=0, max=size)
    boxes = boxes * boxes.new_tensor([1 / scale_xy[0], 1 / scale_xy[1]] * 2)
    score, label = torch.cat(scores), torch.cat(labels)
    valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])   # min_bbox_size 0
    boxes, score, label = boxes[valid], score[valid], label[valid]
    kept = batched_nms(boxes, score, label, cfg.iou_thr)[:cfg.max_per_img]
    return boxes[kept], score[kept], label[kept]


def read_rtmdet_state(path, arch: str) -> tuple[dict, object]:
    """The state dict of an mmdet RTMDet checkpoint and its spec; one line naming the file otherwise."""
    family = FAMILIES[arch]
    state = strip_prefix(unwrap_state_dict(read_checkpoint_file(path), f"--detector-weights {path}"), "module.")
    state = {k: v for k, v in state.items() if not k.startswith("data_preprocessor.")}
    if "bbox_head.rtm_cls.0.weight" not in state or "backbone.stem.0.conv.weight" not in state:
        other = arch_of_keys(state) or ""
        what = ("Faster R-CNN" if other.startswith("fasterrcnn") else "SSD" if other.startswith("ssd")
                else "a classifier" if any(k.startswith(("fc.", "head.fc", "classifier")) for k in state)
                else "another network")
        raise FrposeError(f"--detector-weights {path}: not RTMDet weights (no bbox_head.rtm_cls; it looks like "
                          f"{what}); --detector {arch} reads mmdet/mmpose RTMDet checkpoints")
    try:
        spec = spec_from_state(state, family.exp_on_reg)
    except (KeyError, ValueError, IndexError) as e:
        raise FrposeError(f"--detector-weights {path}: not an RTMDet mmdet 3.x builds ({e})") from None
    if spec.depthwise != family.depthwise:
        other = next(name for name, f in FAMILIES.items() if f.depthwise == spec.depthwise)
        raise FrposeError(f"--detector-weights {path}: these are {other}-style weights "
                          f"({'separable' if spec.depthwise else 'plain'} convolutions), not {arch}; "
                          f"use --detector {other}")
    if spec.num_classes not in (1, 80):
        raise FrposeError(f"--detector-weights {path}: {spec.num_classes} classes; RTMDet person files have 1, "
                          "COCO files 80 (person first)")
    return state, spec


class RTMDetDetector(NetworkDetector):
    """An RTMDet person detector: ``detector(item) -> (M, 5)`` x, y, w, h, score boxes of persons.

    ``arch``: ``rtmdet-nano`` or ``rtmdet-m`` (:data:`FAMILIES`); the widths come from the file, so mmdet's
    COCO RTMDet files of the same layout load too (class 0, person, is kept).  ``input_size``: the canvas
    side (default the family's own).  ``setup``/``log``: as :class:`~frpose_cli.inference.detectors.
    TorchvisionDetector` (fp32, fused, bf16, fp16; None: cached or decided alongside the run).
    """

    def __init__(self, weights_path, arch: str = "rtmdet-m", device="cpu", score_thr: float = 0.3,
                 input_size: int | None = None, setup: str | None = "fp32", log=None,
                 test_cfg: DecodeConfig = DecodeConfig()):
        if arch not in FAMILIES:
            raise FrposeError(f"unknown RTMDet {arch!r}; choose one of {', '.join(FAMILIES)}")
        if not isinstance(score_thr, (int, float)) or not 0 <= score_thr <= 1:
            raise ValueError("score_thr must be a number in [0, 1]")
        self.size = check_input_size(FAMILIES[arch].input_size if input_size is None else input_size, arch)
        state, self.spec = read_rtmdet_state(Path(weights_path), arch)
        self.model = RTMDet(self.spec)
        try:
            self.model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise FrposeError(f"--detector-weights {weights_path} does not fit {arch} "
                              f"({str(e).splitlines()[0][:160]})") from None
        self.arch, self.name, self.test_cfg = arch, arch, test_cfg
        self._start(device, score_thr, weights_path, setup, (self.size, self.size), log)

    @property
    def overlap_default(self) -> bool:
        """Off on a CPU for nano, like SSDlite: its detection is a few ms, too little to hide."""
        return not (self.arch == "rtmdet-nano" and self.device.type == "cpu")

    setups = (*ds.SETUPS, *ds.RUNTIME_SETUPS)

    def _unavailable(self, setup: str, hw) -> str | None:
        if setup in ds.RUNTIME_SETUPS:
            from frpose_cli.inference.rtmdet_runtimes import unavailable_reason
            return unavailable_reason(setup, self.device, hw)
        return super()._unavailable(setup, hw)

    def _candidate(self, hw) -> str:
        """The one set-up a first run tries against float32, by docs/detectors.md's figures (one machine's):
        on a CPU, OpenVINO's where installed, in the precision torch's candidate would use; without it, ONNX
        Runtime where that measured faster than torch's candidate: always for nano (9.0 ms an image against
        torch bf16's 14.4 and fused's 15.1), for m where bf16 is not native (261 ms against fused's 288); m with
        native bf16 keeps torch's bf16 (100 ms).  Elsewhere torch's (fp16/bf16 on a GPU).  The trial still
        times and gates it against float32, so a machine where the guess is wrong keeps float32."""
        torch_pick = super()._candidate(hw)
        if self.device.type != "cpu":
            return torch_pick
        if OPENVINO_FIRST:
            pick = "openvino_bf16" if torch_pick == "bf16" else "openvino"
            if self._unavailable(pick, hw) is None:
                return pick
        if (torch_pick == "fused" or self.arch == "rtmdet-nano") and self._unavailable("onnxruntime", hw) is None:
            return "onnxruntime"
        return torch_pick

    def _build_setup(self, setup: str) -> torch.nn.Module:
        """fused: BatchNorm folded, channels_last; bf16/fp16: that in reduced precision, except the two 1×1
        prediction convs, which stay float32 (a 300-px distance in bf16 would move by a pixel or more)."""
        if setup == "fp32":
            return self.model
        if setup in ds.RUNTIME_SETUPS:
            from frpose_cli.inference.rtmdet_runtimes import build
            return build(setup, fold_batchnorm(self.model), self.size)
        model = fold_batchnorm(self.model).to(memory_format=torch.channels_last)
        dtype = {"fused": None, "bf16": torch.bfloat16, "fp16": torch.float16}[setup]
        if dtype is not None:
            model = model.to(dtype)
            model.bbox_head.rtm_cls.float()
            model.bbox_head.rtm_reg.float()
        return model

    @staticmethod
    def _input_dtype(model) -> torch.dtype:
        stem = getattr(model, "backbone", None)   # None: a compiled runtime, fed float32
        return torch.float32 if stem is None else stem.stem[0].conv.weight.dtype

    @torch.inference_mode()
    def detect_batch(self, images, model=None, count_dropped: bool = True) -> list[np.ndarray]:
        """Several RGB images in one network call (the same boxes as one at a time: each has its own canvas)."""
        if not isinstance(images, (list, tuple)) or not images:
            raise ValueError("images must be a non-empty list of (H, W, 3) arrays")
        out = []
        for image, boxes in zip(images, self.person_boxes(images, model)):
            h, w = image.shape[:2]
            out.append(clip_boxes(boxes, w, h, dropped=self.dropped if count_dropped else None))
        return out

    def person_boxes(self, images, model=None) -> list[np.ndarray]:
        """Per image, the person boxes x, y, w, h, score above ``--det-thr``, not yet clipped to the image."""
        out = []
        for xyxy, score, label in self.raw_detections(images, model):
            person = label == PERSON_LABEL
            xyxy, score = xyxy[person].cpu().numpy(), score[person].cpu().numpy()
            out.append(np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2], score[:, None]], 1).astype(np.float32))
        return out

    @property
    def detect_batch_size(self) -> int:
        """Images per call in predict when no helper thread detects ahead (detect_ahead.py), where batches
        measured faster than one image at a time on a CPU (docs/detectors.md, "Batches"): torch's set-ups of nano,
        torch's bf16 of m; OpenVINO's compiled graphs gained nothing clear.  On a GPU 8 (not measured here)."""
        if self.device.type != "cpu":
            return 8
        if self.setup in ds.RUNTIME_SETUPS:
            return 1
        if self.arch == "rtmdet-nano":
            return 8
        return 4 if self.setup == "bf16" else 1

    def detect_items(self, items) -> list:
        """``(boxes, dropped)`` of each SourceItem, as ``decode_workers.detect_counting`` gives them one by one."""
        model = self.model if self.runner is None else self.runner
        out = []
        for item, boxes in zip(items, self.person_boxes([it.image for it in items], model)):
            mine: Counter = Counter()
            h, w = item.image.shape[:2]
            out.append((clip_boxes(boxes, w, h, dropped=mine), dict(mine)))
            self.dropped.update(mine)
        return out

    @torch.inference_mode()
    def raw_detections(self, images, model=None, score_thr: float | None = None) -> list:
        """Per image, what mmdet's ``inference_detector`` returns for these weights: boxes x1,y1,x2,y2 in image
        pixels (not clipped to the image), scores and labels, above ``score_thr`` (default ``--det-thr``)."""
        model = model if model is not None else (self.model if self.runner is None else self.runner)
        boxed = [letterbox(im, self.size) for im in images]
        levels = model(to_input(np.stack([b[0] for b in boxed]), self.device, self._input_dtype(model)))
        thr = self.score_thr if score_thr is None else score_thr
        return [decode([(c[i], d[i]) for c, d in levels], scale, self.size, thr, self.test_cfg)
                for i, (_, scale) in enumerate(boxed)]

    def _detect(self, model, item: SourceItem, count_dropped: bool = True) -> np.ndarray:
        return self.detect_batch([item.image], model, count_dropped)[0]


def is_rtmdet(name: str) -> bool:
    return name in FAMILIES

