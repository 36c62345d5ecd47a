"""The model zoo: named, published weights that frpose downloads on first use (:mod:`frpose_cli.weights.download`).

Pose weights are the closest real weights to the paper: Simple Baselines (the paper's encoder and
first three decoders) trained on COCO train2017 by OpenMMLab.  No weights of the paper's own
network (FR-SBN + GCB + SA-MFCD) are published; ``frpose train MODEL --init sbn-r50`` starts one
from these (:mod:`frpose_cli.weights.init_weights`).  ``ap`` is the source's published COCO val2017 AP
(detector boxes with 56 person AP, flip test): what ``frpose eval sbn-r50 --data COCO`` should
reproduce; for detector entries it is the published COCO val2017 *box* AP (all classes), as their
``source`` says.  ``channel_order`` is the order the weights were trained on (mmpose converts to RGB;
the original Simple Baselines code fed OpenCV's BGR, see :mod:`frpose_cli.weights.published`).

Hashes: every file name carries the first hex digits of its SHA-256 (the publishers' convention),
which :func:`frpose_cli.weights.download.fetch` checks strictly for zoo entries: a mismatch is a
refusal, never a warning, since these names are the publishers' own.  ``sha256``, when an entry has
it, is the full digest, checked as well (an entry whose name claims another prefix is an error at
import).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from frpose_cli.weights.download import cached_file, fetch, file_name_of, hash_prefix_in_name, mirror_url
from frpose_cli.errors import FrposeError

_MMPOSE = "https://download.openmmlab.com/mmpose/v1/body_2d_keypoint/topdown_heatmap/coco/"
_TORCHVISION = "https://download.pytorch.org/models/"


@dataclass(frozen=True)
class ZooEntry:
    name: str
    kind: str                     # "pose" | "detector" | "imagenet"
    url: str
    card: str | None = None       # model card the weights fit
    input_size: tuple | None = None
    layout: str = "mmpose"        # key layout (frpose_cli.weights.published.LAYOUTS)
    channel_order: str = "rgb"
    ap: float | None = None       # the source's published COCO val2017 AP (percent)
    source: str = ""
    sha256: str | None = None     # the full SHA-256 of the file, when known: checked besides the name's prefix
    cpu_ms: float | None = None   # detectors: float32 time of one image on DETECTOR_CPU_MACHINE
    person_ap: float | None = None  # detectors: the publisher's COCO val2017 person AP (None: not published)
    gflops: float | None = None     # detectors: the publisher's GFLOPs at its input size
    licence: str = ""

    def __post_init__(self):
        if self.sha256 is None:
            return
        claim = hash_prefix_in_name(self.file_name)
        if not re.fullmatch(r"[0-9a-f]{64}", self.sha256) or (claim and not self.sha256.startswith(claim)):
            raise ValueError(f"zoo entry {self.name}: sha256 must be the file's full lowercase digest"
                             + (f", starting with the {claim} in its name" if claim else ""))

    @property
    def file_name(self) -> str:
        return file_name_of(self.url)

    @property
    def download_url(self) -> str:
        return mirror_url(self.url)

    def cached(self) -> bool:
        return cached_file(self.file_name).is_file()

    def fetch(self, progress: bool = True) -> Path:
        # strict: the name is the publisher's, so a hash mismatch is a damaged file, never a warning
        return fetch(self.download_url, name=self.file_name, sha256=self.sha256,
                     what=f"{self.kind} weights {self.name}", progress=progress, strict=True)


def _mmpose(name, card, size, file, ap):
    return ZooEntry(name, "pose", _MMPOSE + file, card, size, "mmpose", "rgb", ap,
                    "mmpose 1.x SimpleBaseline (td-hm_res*), COCO train2017", licence="Apache-2.0 (mmpose)")


POSE = (
    _mmpose("sbn-r50", "sbn-r50", (256, 192), "td-hm_res50_8xb64-210e_coco-256x192-04af38ce_20220923.pth", 71.8),
    _mmpose("sbn-r50-384x288", "sbn-r50", (384, 288),
            "td-hm_res50_8xb64-210e_coco-384x288-7b8db90e_20220923.pth", 73.1),
    _mmpose("sbn-r101", "sbn-r101", (256, 192),
            "td-hm_res101_8xb64-210e_coco-256x192-065d3625_20220926.pth", 72.8),
    _mmpose("sbn-r152", "sbn-r152", (256, 192),
            "td-hm_res152_8xb32-210e_coco-256x192-0345f330_20220928.pth", 73.6),
    _mmpose("sbn-r152-384x288", "sbn-r152", (384, 288),
            "td-hm_res152_8xb32-210e_coco-384x288-7fbb906f_20220927.pth", 75.0),
)
_TV_LICENCE = "BSD-3-Clause (torchvision); data COCO"
# The weights torchvision itself names (FasterRCNN_ResNet50_FPN_Weights.COCO_V1,
# FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1, ResNet*_Weights.IMAGENET1K_V1); detector ``ap`` is box AP.
DETECTOR = ZooEntry("fasterrcnn-r50-fpn", "detector", _TORCHVISION + "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth",
                    layout="torchvision", ap=37.0, cpu_ms=2478, gflops=134.4, licence=_TV_LICENCE,
                    source="torchvision Faster R-CNN ResNet-50 FPN, COCO train2017 (box AP 37.0); the paper's detector family")
DETECTOR_MOBILENET = ZooEntry("fasterrcnn-mobilenet-v3", "detector",
                              _TORCHVISION + "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth", layout="torchvision",
                              ap=32.8, cpu_ms=964, gflops=4.49, licence=_TV_LICENCE, source="torchvision Faster R-CNN MobileNetV3-Large FPN, COCO train2017 "
                                              "(box AP 32.8); the faster detector")
DETECTOR_SSDLITE = ZooEntry("ssdlite320-mobilenet-v3", "detector",
                            _TORCHVISION + "ssdlite320_mobilenet_v3_large_coco-a79551df.pth", input_size=(320, 320),
                            layout="torchvision",
                            ap=21.3, cpu_ms=112, gflops=0.58, licence=_TV_LICENCE, source="torchvision SSDlite320 MobileNetV3-Large, COCO train2017 "
                                                         "(box AP 21.3); the fastest detector, weakest on small people")
_RTMPOSE = "https://download.openmmlab.com/mmpose/v1/projects/rtmpose/"
_RTMDET_LICENCE = "Apache-2.0 (mmpose); data COCO + Objects365 (academic use only)"
# mmpose's person detectors for RTMPose (projects/rtmpose/README.md, "Pipeline"): mmdet checkpoints, person only.
DETECTOR_RTMDET_NANO = ZooEntry("rtmdet-nano", "detector", _RTMPOSE + "rtmdet_nano_8xb32-100e_coco-obj365-person-05d8511e.pth",
                                input_size=(320, 320), layout="mmdet", channel_order="bgr", person_ap=40.3, cpu_ms=56,
                                gflops=0.31, licence=_RTMDET_LICENCE,
                                source="mmpose RTMDet-nano person detector, 320x320 (person AP 40.3)")
DETECTOR_RTMDET_M = ZooEntry("rtmdet-m", "detector", _RTMPOSE + "rtmdet_m_8xb32-100e_coco-obj365-person-235e8209.pth",
                             input_size=(640, 640), layout="mmdet", channel_order="bgr", person_ap=62.5, cpu_ms=526,
                             gflops=38.95, licence=_RTMDET_LICENCE,
                             source="mmpose RTMDet-m person detector, 640x640 (person AP 62.5)")
DETECTORS = (DETECTOR, DETECTOR_MOBILENET, DETECTOR_SSDLITE, DETECTOR_RTMDET_NANO, DETECTOR_RTMDET_M)
# Where cpu_ms was measured: the fp32 rows of docs/benchmarks.md, "End to end" (scripts/bench_predict.py, eager
# float32 at each detector's own input size, mean over 6 coco-mini val images inside `predict`), all in one run.
DETECTOR_CPU_MACHINE = ("a 2-core Intel Xeon, Sapphire Rapids class (AVX-512F, AVX512-BF16, VNNI, AMX), "
                        "torch 2.14.1")
IMAGENET = tuple(ZooEntry(f"imagenet-r{d}", "imagenet", _TORCHVISION + f, layout="resnet",
                          source=f"torchvision ResNet-{d} IMAGENET1K_V1")
                 for d, f in ((18, "resnet18-f37072fd.pth"), (34, "resnet34-b627a593.pth"),
                              (50, "resnet50-0676ba61.pth"), (101, "resnet101-63fe2227.pth"),
                              (152, "resnet152-394f9c45.pth")))
ENTRIES = {e.name: e for e in (*POSE, *DETECTORS, *IMAGENET)}
DEFAULT_POSE = "sbn-r50"          # `frpose predict photo.jpg` with no --weights: fast on a CPU, AP 71.8


def find(name: str) -> ZooEntry | None:
    return ENTRIES.get(name)


def get(name: str) -> ZooEntry:
    entry = find(name)
    if entry is None:
        raise FrposeError(f"no zoo weights named {name!r}; known: {', '.join(ENTRIES)}")
    return entry


def imagenet_entry(depth: int) -> ZooEntry:
    return get(f"imagenet-r{depth}")


def pose_entries_for(card_name: str) -> list[ZooEntry]:
    return [e for e in POSE if e.card == card_name]


def pose_entry_for(card_name: str, input_size=None) -> ZooEntry | None:
    """The zoo weights for ``card_name`` at ``input_size`` (default: the first published size)."""
    entries = pose_entries_for(card_name)
    if input_size is not None:
        entries = [e for e in entries if tuple(e.input_size) == tuple(input_size)]
    return entries[0] if entries else None
