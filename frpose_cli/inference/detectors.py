"""Person boxes for top-down pose estimation.

Three ways to get them, one interface (``detector(item) -> (M, 5) array of x, y, w, h, score``):

- :class:`TorchvisionDetector`: torchvision's Faster R-CNN, ResNet-50 FPN by default (the
  detector family the paper uses, zoo ``fasterrcnn-r50-fpn``, box AP 37.0) or MobileNetV3-Large
  FPN (``--detector fasterrcnn-mobilenet-v3``, box AP 32.8, faster).  Its weights come from
  ``--detector-weights FILE|URL`` (of the architecture ``--detector`` names) or are the zoo's
  (torchvision's own COCO files), downloaded into the weights cache on first use
  (:mod:`frpose_cli.weights.download`; never with ``--offline``).
- :class:`BoxFileDetector`: boxes from a COCO detection-results JSON (``--boxes``), e.g. the
  detector output Simple Baselines / HRNet / mmpose evaluate with.
- :class:`WholeImageDetector`: the whole image is one person (for person crops, or when no
  detector is available).
"""
from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch

from frpose_cli.weights import zoo
from frpose_cli.weights.checkpoint import read_checkpoint_file
from frpose_cli.weights.download import fetch, is_url
from frpose_cli.errors import FrposeError
from frpose_cli.data.sources import SourceItem
from frpose_cli.data.geometry import clip_boxes  # noqa: F401  (the detectors' clipping rule, also used from here)
from frpose_cli.data.geometry import drop_low_scores
from frpose_cli.inference.detector_base import NetworkDetector
from frpose_cli.inference.detector_archs import ARCHS, arch_of_keys, overwrite_eps

COCO_PERSON_LABEL = 1   # torchvision's COCO label ids: 0 background, 1 person
DETECTOR_CHOICES = ("auto", "torchvision", "whole-image", *(e.name for e in zoo.DETECTORS))


def _empty_boxes() -> np.ndarray:
    return np.zeros((0, 5), np.float32)


class WholeImageDetector:
    name = "whole-image"
    in_worker = True     # needs no network: runs in predict's DataLoader workers (decode_workers.py)

    def __call__(self, item: SourceItem) -> np.ndarray:
        h, w = item.image.shape[:2]
        return np.array([[0, 0, w, h, 1.0]], np.float32)


def coco_id_from_name(file_name: str) -> int | None:
    """COCO names images by id (``000000000785.jpg`` → 785)."""
    m = re.fullmatch(r"(?:COCO_\w+?_)?0*(\d+)", Path(file_name).stem)
    return int(m.group(1)) if m else None


class BoxFileDetector:
    """Person boxes read from a COCO detection-results file.

    Accepted layouts: a list of ``{"image_id" or "file_name", "bbox": [x, y, w, h], "score",
    "category_id"}`` records (optionally ``"frame"`` for video frames), or a mapping from
    image id / file name to such a list.  Records whose ``category_id`` is not 1 (person) are
    ignored.  An image is matched by its file name relative to the source, its base name,
    or the COCO id in its name; an image without boxes simply has no persons.
    """
    name = "boxes"
    in_worker = True

    def __init__(self, path, score_thr: float = 0.0):
        path = Path(path)
        if not path.is_file():
            raise FrposeError(f"--boxes file not found: {path}")
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FrposeError(f"--boxes {path}: not a readable JSON file ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:120]})") from None
        records = []
        if isinstance(data, dict):
            for key, recs in data.items():
                if not isinstance(recs, list):
                    raise FrposeError(f"--boxes {path}: entry {key!r} should be a list of box records")
                for r in recs:
                    records.append({**r, "_key": str(key)} if isinstance(r, dict) else r)
        elif isinstance(data, list):
            records = data
        else:
            raise FrposeError(f"--boxes {path}: expected a list of COCO detection results")
        self.path, self.score_thr = path, score_thr
        self.dropped: Counter = Counter()   # reason → boxes dropped (reported in the run summary)
        self.by_key: dict = defaultdict(list)
        kept = 0
        for i, r in enumerate(records):
            try:
                if int(r.get("category_id", COCO_PERSON_LABEL)) != COCO_PERSON_LABEL:
                    continue
                x, y, w, h = (float(v) for v in r["bbox"])
                score = float(r.get("score", 1.0))
            except (AttributeError, KeyError, TypeError, ValueError):
                raise FrposeError(f"--boxes {path}: record {i} is not a COCO detection "
                                  "(needs bbox [x, y, w, h] and image_id or file_name)") from None
            keys = [r[k] for k in ("image_id", "file_name", "_key") if k in r]
            if not keys:
                raise FrposeError(f"--boxes {path}: record {i} has neither image_id nor file_name")
            frame = r.get("frame")
            for key in keys:
                self.by_key[(self._norm(key), frame)].append((x, y, w, h, score))
            kept += 1
        if kept == 0:
            raise FrposeError(f"--boxes {path}: no person boxes in it (category_id 1)")

    @staticmethod
    def _norm(key) -> str:
        key = str(key).replace("\\", "/")
        return str(int(key)) if key.isdigit() else key

    def boxes_for(self, file_name: str, frame: int | None = None) -> np.ndarray:
        candidates = [file_name, Path(file_name).name]
        coco_id = coco_id_from_name(file_name)
        if coco_id is not None:
            candidates.append(str(coco_id))
        for key in candidates:
            found = self.by_key.get((self._norm(key), frame))
            if found:
                return drop_low_scores(np.array(found, np.float32), self.score_thr, self.dropped)
        return _empty_boxes()

    def __call__(self, item: SourceItem) -> np.ndarray:
        h, w = item.image.shape[:2]
        return clip_boxes(self.boxes_for(item.file_name, item.frame), w, h, dropped=self.dropped)


# ----------------------------------------------------------------------------- torchvision

class TorchvisionDetector(NetworkDetector):
    """A torchvision Faster R-CNN built without any download, weights from a file.

    ``arch`` is a zoo detector name (:data:`ARCHS`): ``fasterrcnn-r50-fpn`` (default) or
    ``fasterrcnn-mobilenet-v3``.  The model is the one torchvision's builder makes when it is
    given weights (``fasterrcnn_resnet50_fpn(weights=FasterRCNN_ResNet50_FPN_Weights.COCO_V1)``
    and ``fasterrcnn_mobilenet_v3_large_fpn(weights=...COCO_V1)``), not the ``weights=None``
    one: the backbone uses ``FrozenBatchNorm2d`` (``weights=None`` would give ``nn.BatchNorm2d``)
    and the classes are read from the file (91 for COCO).  For R50 the frozen batch norms get
    ``eps = 0`` (``overwrite_eps(model, 0.0)``): torchvision applies that eps exactly for the
    R50 COCO_V1 weights (they were trained before pytorch/vision#2933 added the 1e-5); its v2
    builder, ``fasterrcnn_resnet50_fpn_v2``, does not, but v2 is another architecture whose
    files do not load here.  A file cannot say which weights it holds, so ``bn_eps`` is the
    architecture's builder value for every file: the zoo's ``fasterrcnn-r50-fpn`` *is*
    torchvision's COCO_V1 file, and a ``--detector-weights`` file of this architecture is most
    likely that file or fine-tuned from it (torchvision's builder sets eps 0 before fine-tuning
    starts).  Pass ``bn_eps=1e-5`` for R50 weights trained from an ImageNet backbone alone
    (``weights_backbone=...``, where torchvision keeps the default 1e-5).  The MobileNet builder
    keeps 1e-5 throughout.

    ``min_size``/``max_size`` are the detector's own resize bounds (800/1333 as trained);
    a smaller ``min_size`` trades recall on small people for speed on a CPU.

    ``setup``: the set-up it runs in (:mod:`frpose_cli.inference.detector_setups`: fp32, fused, bf16,
    fp16), or None to use the cached choice for these weights on this machine, or to decide it
    alongside this run.  ``log`` receives the one line saying which set-up runs and why.
    """
    name = "torchvision"

    def __init__(self, weights_path, device: torch.device | str = "cpu", score_thr: float = 0.3,
                 min_size: int = 800, max_size: int = 1333, bn_eps: float | None = None,
                 arch: str = "fasterrcnn-r50-fpn", setup: str | None = "fp32", log=None):
        if arch not in ARCHS:
            raise FrposeError(f"unknown detector architecture {arch!r}; choose one of {', '.join(ARCHS)}")
        build, default_eps, tv_name, classes_of = ARCHS[arch]
        bn_eps = default_eps if bn_eps is None else bn_eps
        weights_path = Path(weights_path)
        from frpose_cli.weights.published import strip_prefix, unwrap_state_dict   # RTMDet's reader too
        state = strip_prefix(unwrap_state_dict(read_checkpoint_file(weights_path),
                                               f"--detector-weights {weights_path}"), "module.")
        num_classes = classes_of(state)
        if num_classes is None:
            kind, part = (("SSDlite", "head.classification_head") if arch.startswith("ssd")
                          else ("Faster R-CNN", "roi_heads.box_predictor"))
            raise FrposeError(f"--detector-weights {weights_path}: not {kind} weights "
                              f"(no {part}); expected {tv_name} (COCO)")
        if num_classes <= COCO_PERSON_LABEL:
            raise FrposeError(f"--detector-weights {weights_path}: {num_classes} classes, no person class")
        self.model = build(num_classes, min_size=min_size, max_size=max_size,
                           box_score_thresh=min(score_thr, 0.05))
        try:
            self.model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise FrposeError(f"--detector-weights {weights_path} does not fit {tv_name} (--detector {arch}; "
                              f"{str(e).splitlines()[0][:160]})") from None
        if bn_eps is not None:   # as the builder does (R50 COCO_V1: 0; MobileNet: its 1e-5); SSDlite: BatchNorm2d
            overwrite_eps(self.model, bn_eps)
        self.bn_eps, self.arch = bn_eps, arch
        if arch != zoo.DETECTOR.name:
            self.name = arch
        self._start(device, score_thr, weights_path, setup, (min_size, max_size), log)

    @property
    def overlap_default(self) -> bool:
        """``--overlap``'s default for this detector: on, except SSDlite on a CPU, whose detection is under a
        tenth of an image's time, so a helper thread has little to hide and costs its share of the cores
        (docs/benchmarks.md: within noise with AVX-512, a loss with it capped off)."""
        device = getattr(self, "device", None)
        return not (getattr(self, "arch", "").startswith("ssdlite") and (device is None or device.type == "cpu"))

    @torch.inference_mode()
    def _detect(self, model, item: SourceItem, count_dropped: bool = True) -> np.ndarray:
        image = item.image
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255)
        out = model([tensor.to(self.device)])[0]   # RGB in 0..1, as torchvision's detectors expect
        keep = (out["labels"] == COCO_PERSON_LABEL) & (out["scores"] >= self.score_thr)
        xyxy = out["boxes"][keep].cpu().numpy()
        scores = out["scores"][keep].cpu().numpy()
        boxes = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2], scores[:, None]], 1)
        h, w = image.shape[:2]
        return clip_boxes(boxes.astype(np.float32), w, h, dropped=self.dropped if count_dropped else None)


def make_detector(detector: str = "auto", boxes=None, detector_weights=None, device="cpu",
                  det_thr: float = 0.3, det_size: int | None = None, warn=print, progress: bool = True,
                  setup: str | None = "fp32", log=None):
    """The person detector the user asked for.

    ``--boxes`` wins; a zoo detector name (``torchvision`` = ``fasterrcnn-r50-fpn``) needs weights
    (``--detector-weights`` of that architecture, or the zoo's file, cached or downloaded; error
    otherwise); ``auto`` runs the detector :func:`~frpose_cli.inference.detector_choice.default_detector`
    picks for the device (the log says which and why), and when its file cannot be had (offline), another
    zoo detector already cached, else the whole image, with one line saying why.  ``det_size``: the
    detector's input size (None: its own).  ``setup``/``log``: the network's set-up (None: cached or
    decided alongside the run) and where its lines go.
    """
    if detector not in DETECTOR_CHOICES:
        raise FrposeError(f"unknown --detector {detector!r}; choose one of {', '.join(DETECTOR_CHOICES)}")
    if boxes is not None:
        if detector not in ("auto", "whole-image") or detector_weights is not None:
            raise FrposeError("--boxes gives the person boxes; do not combine it with "
                              f"--detector {detector} / --detector-weights")
        from frpose_cli.inference.box_files import load_frame_boxes   # per-frame boxes of videos, MOT det.txt
        return load_frame_boxes(boxes, det_thr) or BoxFileDetector(boxes, score_thr=det_thr)
    if detector == "whole-image":
        return WholeImageDetector()
    say = log or warn
    if detector == "auto" and detector_weights is not None:
        detector = "given"   # the file says which architecture it holds (guess_arch)
    if detector == "auto":
        from frpose_cli.inference.detector_choice import default_detector, fallbacks
        entry, why = default_detector(torch.device(device).type)
        try:
            weights = entry.fetch(progress)
            say(f"detector: {entry.name} ({why})")
        except FrposeError as e:
            spare = fallbacks(entry)
            if not spare:
                warn(f"warning: no person detector, using the whole image as one person ({e})")
                return WholeImageDetector()
            warn(f"warning: detector {spare[0].name} (cached) instead of {entry.name} ({e})")
            entry, weights = spare[0], spare[0].fetch(progress)
    else:
        entry = zoo.DETECTOR if detector in ("torchvision", "given") else zoo.get(detector)
        if detector_weights is not None:
            weights = fetch(str(detector_weights), what="detector weights", progress=progress) \
                if is_url(str(detector_weights)) else Path(detector_weights)
            if not weights.is_file():
                raise FrposeError(f"--detector-weights file not found: {weights}")
            if detector == "given":
                entry = zoo.get(guess_arch(weights))
                say(f"detector: {entry.name} (the architecture --detector-weights holds)")
        else:
            weights = entry.fetch(progress)   # a one-line error when it cannot be had
    return build_detector(entry.name, weights, device, det_thr, det_size, setup, log)


def build_detector(name: str, weights, device="cpu", det_thr: float = 0.3, det_size: int | None = None,
                   setup: str | None = "fp32", log=None):
    """The zoo detector ``name``'s network with ``weights`` (a file of its architecture)."""
    from frpose_cli.inference.rtmdet_detector import FAMILIES, RTMDetDetector
    if name in FAMILIES:
        return RTMDetDetector(weights, arch=name, device=device, score_thr=det_thr, input_size=det_size,
                              setup=setup, log=log)
    size = 800 if det_size is None else det_size
    return TorchvisionDetector(weights, device=device, score_thr=det_thr, min_size=size,
                               max_size=max(size, round(size * 1333 / 800)), arch=name, setup=setup, log=log)


def guess_arch(path) -> str:
    """The zoo detector architecture a weights file holds, read from its key names (one line if none)."""
    from frpose_cli.weights.published import strip_prefix, unwrap_state_dict
    try:
        # mapped, not read: the file is read once more, whole, by the detector it names
        keys = list(strip_prefix(unwrap_state_dict(read_checkpoint_file(path, mmap=True), str(path)), "module."))
    except FrposeError as e:
        if "not a state dict" not in str(e):   # unreadable files say so; a non-state-dict simply matches nothing
            raise
        keys = []
    arch = arch_of_keys(keys)
    if arch is None:
        raise FrposeError(f"--detector-weights {path}: no detector this tool knows (RTMDet, Faster R-CNN, SSDlite "
                          "key names); name one with --detector")
    return arch
