"""What torchvision builds for each zoo detector, rebuilt without any download (architectures only;
weights come from a file): :data:`ARCHS` maps a zoo name to its builder, the eps its frozen batch
norms get after loading, torchvision's builder name, and how to read the class count from a file.

Each builder makes the model torchvision's own builder makes *when it is given COCO weights*, which
is not always the ``weights=None`` one (tests/test_detectors.py checks each against torchvision's
builder with its download replaced by a fixed state dict).
"""
from __future__ import annotations

import torch

SSD_ANCHORS_PER_LOCATION = 6   # DefaultBoxGenerator([[2, 3]] * 6): 2 + 2 x 2 boxes a location


def overwrite_eps(model: torch.nn.Module, eps: float) -> None:
    """Set ``eps`` of every ``FrozenBatchNorm2d``: torchvision's own helper when it is there."""
    try:
        from torchvision.models.detection._utils import overwrite_eps
    except ImportError:
        from torchvision.ops import FrozenBatchNorm2d
        for module in model.modules():
            if isinstance(module, FrozenBatchNorm2d):
                module.eps = eps
    else:
        overwrite_eps(model, eps)


def _build_r50_fpn(num_classes: int, **kwargs):
    """What ``fasterrcnn_resnet50_fpn(weights=COCO_V1)`` builds before loading: resnet50(norm_layer=
    FrozenBatchNorm2d), ``_resnet_fpn_extractor`` with 3 trainable layers, ``FasterRCNN(backbone, ...)``."""
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops import FrozenBatchNorm2d
    backbone = resnet_fpn_backbone(backbone_name="resnet50", weights=None,
                                   norm_layer=FrozenBatchNorm2d, trainable_layers=3)
    return FasterRCNN(backbone, num_classes=num_classes, **kwargs)


def _build_mobilenet_v3_fpn(num_classes: int, **kwargs):
    """What ``fasterrcnn_mobilenet_v3_large_fpn(weights=COCO_V1)`` builds before loading:
    mobilenet_v3_large(norm_layer=FrozenBatchNorm2d) (eps 1e-5, no overwrite_eps; ``weights=None``
    would give BatchNorm2d with eps 1e-3), ``_mobilenet_extractor(backbone, fpn=True, 3 trainable
    layers)``, anchors (32..512)x3 levels with ratios 0.5/1/2, and ``rpn_score_thresh=0.05``."""
    from torchvision.models import mobilenet_v3_large
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import _mobilenet_extractor
    from torchvision.ops import FrozenBatchNorm2d
    backbone = _mobilenet_extractor(mobilenet_v3_large(weights=None, norm_layer=FrozenBatchNorm2d), True, 3)
    anchor_sizes = ((32, 64, 128, 256, 512),) * 3
    anchors = AnchorGenerator(anchor_sizes, ((0.5, 1.0, 2.0),) * len(anchor_sizes))
    return FasterRCNN(backbone, num_classes, rpn_anchor_generator=anchors, **{"rpn_score_thresh": 0.05, **kwargs})


def _build_ssdlite(num_classes: int, min_size=None, max_size=None, box_score_thresh=0.001, **kwargs):
    """What ``ssdlite320_mobilenet_v3_large(weights=COCO_V1)`` builds before loading: with weights its
    builder drops the backbone's ImageNet weights, so ``reduced_tail=True``, BatchNorm2d(eps 0.001), a
    fixed 320x320 input (``--det-size`` does not apply) -- the ``weights=None, weights_backbone=None`` model."""
    from torchvision.models.detection import ssdlite320_mobilenet_v3_large
    return ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes,
                                         score_thresh=box_score_thresh, **kwargs)


def faster_rcnn_classes(state: dict) -> int | None:
    head = state.get("roi_heads.box_predictor.cls_score.weight")
    return None if head is None else int(head.shape[0])


def ssd_classes(state: dict) -> int | None:
    head = state.get("head.classification_head.module_list.0.1.weight")
    return None if head is None else int(head.shape[0]) // SSD_ANCHORS_PER_LOCATION


# zoo name → (builder, eps of the frozen batch norms after loading (None: the model has none),
# torchvision's builder name, the class count a state dict holds (None: not this architecture)).
# R50 COCO_V1 predates pytorch/vision#2933: its builder sets eps 0; the MobileNet builder keeps 1e-5.
ARCHS = {"fasterrcnn-r50-fpn": (_build_r50_fpn, 0.0, "fasterrcnn_resnet50_fpn", faster_rcnn_classes),
         "fasterrcnn-mobilenet-v3": (_build_mobilenet_v3_fpn, 1e-5, "fasterrcnn_mobilenet_v3_large_fpn",
                                     faster_rcnn_classes),
         "ssdlite320-mobilenet-v3": (_build_ssdlite, None, "ssdlite320_mobilenet_v3_large", ssd_classes)}


def arch_of_keys(keys) -> str | None:
    """The zoo detector whose layout a state dict's key names (``module.`` stripped) have; None: none of them.
    RTMDet layouts are named here too (the networks live in frpose_cli/net/rtmdet.py)."""
    keys = list(keys)
    if "bbox_head.rtm_cls.0.weight" in keys:
        return "rtmdet-nano" if "backbone.stage1.0.depthwise_conv.conv.weight" in keys else "rtmdet-m"
    if any(k.startswith("roi_heads.box_predictor") for k in keys):
        return "fasterrcnn-mobilenet-v3" if any(".block." in k for k in keys) else "fasterrcnn-r50-fpn"
    if any(k.startswith("head.classification_head") for k in keys):
        return "ssdlite320-mobilenet-v3"
    return None
