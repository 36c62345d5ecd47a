"""Person detectors: whole image, COCO detection-result files, torchvision Faster R-CNN (R50 / MobileNetV3) from a file."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from frpose_cli.weights import zoo
from frpose_cli.inference.detector_choice import default_detector
from frpose_cli.inference.detectors import (BoxFileDetector, TorchvisionDetector, WholeImageDetector, clip_boxes,
                                            make_detector)
from frpose_cli.errors import FrposeError
from frpose_cli.data.images import read_image
from frpose_cli.data.sources import SourceItem

DATA = Path(__file__).parent / "data" / "coco"
DET_JSON = DATA / "person_detection_results" / "COCO_val2017_detections_AP_H_56_person_subset.json"


def _item(name="000000000785.jpg", hw=(425, 640), frame=None):
    return SourceItem(0, Path(name), name, frame=frame, image=np.zeros((*hw, 3), np.uint8))


def test_whole_image_box():
    boxes = WholeImageDetector()(_item(hw=(30, 50)))
    assert boxes.tolist() == [[0, 0, 50, 30, 1.0]]


def test_clip_boxes_to_image_and_drop_empty():
    boxes = np.array([[-10, -5, 30, 20, .9], [90, 10, 50, 50, .8], [200, 0, 10, 10, .7]], np.float32)
    out = clip_boxes(boxes, 100, 50)
    assert out.tolist() == [[0, 0, 20, 15, pytest.approx(.9)], [90, 10, 10, 40, pytest.approx(.8)]]


def test_real_detection_file_by_coco_id_and_threshold():
    records = json.loads(DET_JSON.read_text())
    det = BoxFileDetector(DET_JSON, score_thr=0.5)
    for image_id in (785, 40083, 196141, 197388):
        expected = [r for r in records if r["image_id"] == image_id and r["score"] >= 0.5]
        boxes = det.boxes_for(f"{image_id:012d}.jpg")
        assert len(boxes) == len(expected) > 0
        assert np.allclose(boxes[:, :4], [r["bbox"] for r in expected], atol=1e-3)
    assert len(BoxFileDetector(DET_JSON, 0.0).boxes_for("000000000785.jpg")) == \
        sum(r["image_id"] == 785 for r in records)
    assert len(det.boxes_for("unknown.jpg")) == 0   # no boxes → no persons, not an error


def test_detection_file_keyed_by_file_name_and_frame(tmp_path):
    by_name = tmp_path / "by_name.json"
    by_name.write_text(json.dumps({"sub/a.jpg": [{"bbox": [1, 2, 3, 4], "score": .9}],
                                   "b.jpg": [{"bbox": [5, 6, 7, 8], "score": .9, "category_id": 2}]}))
    det = BoxFileDetector(by_name)
    assert det.boxes_for("sub/a.jpg")[:, :4].tolist() == [[1, 2, 3, 4]]
    assert len(det.boxes_for("b.jpg")) == 0   # not a person
    frames = tmp_path / "frames.json"
    frames.write_text(json.dumps([{"file_name": "clip.mp4", "frame": 3, "bbox": [0, 0, 9, 9], "score": 1}]))
    det = BoxFileDetector(frames)
    assert len(det(_item("clip.mp4", frame=3))) == 1 and len(det(_item("clip.mp4", frame=4))) == 0


@pytest.mark.parametrize("content, message", [
    ("not json", "not a readable JSON"), ("[{\"image_id\": 1}]", "not a COCO detection"),
    ("[{\"bbox\": [1, 2, 3, 4]}]", "neither image_id nor file_name"), ("[]", "no person boxes"),
    ("42", "expected a list")])
def test_bad_detection_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "det.json"
    path.write_text(content)
    with pytest.raises(FrposeError, match=message):
        BoxFileDetector(path)


def test_auto_falls_back_to_whole_image_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("FRPOSE_HOME", str(tmp_path / "home"))   # nothing cached, downloads off (conftest)
    warnings = []
    det = make_detector("auto", warn=warnings.append)
    assert isinstance(det, WholeImageDetector)
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert f"{default_detector('cpu')[0].file_name} is not in the cache" in warnings[0]
    assert str(tmp_path / "home" / "weights") in warnings[0]
    with pytest.raises(FrposeError, match="fasterrcnn_resnet50_fpn_coco-258fb6c6.pth is not in the cache"):
        make_detector("torchvision")
    with pytest.raises(FrposeError, match="not found"):
        make_detector("torchvision", detector_weights=tmp_path / "missing.pth")
    assert isinstance(make_detector("auto", boxes=DET_JSON), BoxFileDetector)
    with pytest.raises(FrposeError, match="unknown --detector"):
        make_detector("yolo")


@pytest.fixture(scope="module")
def random_detector_weights(tmp_path_factory):
    """A randomly initialised Faster R-CNN saved as a plain state dict (nothing downloaded)."""
    from torchvision.models.detection import fasterrcnn_resnet50_fpn
    torch.manual_seed(0)
    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    path = tmp_path_factory.mktemp("det") / zoo.DETECTOR.file_name
    torch.save(model.state_dict(), path)
    return path


def test_torchvision_detector_from_file_and_from_hub_cache(random_detector_weights, monkeypatch):
    det = TorchvisionDetector(random_detector_weights, score_thr=0.0, min_size=64, max_size=96)
    boxes = det(_item(hw=(48, 64)))
    assert boxes.ndim == 2 and boxes.shape[1] == 5
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 0] + boxes[:, 2] <= 64 + 1e-3).all()

    # Outputs are filtered to persons above the threshold and turned into x, y, w, h.
    fake = {"boxes": torch.tensor([[10., 5., 30., 45.], [0., 0., 5., 5.], [1., 1., 9., 9.]]),
            "labels": torch.tensor([1, 3, 1]), "scores": torch.tensor([.9, .95, .2])}
    det.score_thr = 0.5
    monkeypatch.setattr(det, "model", lambda images: [fake])
    assert det(_item(hw=(48, 64))).tolist() == [[10, 5, 20, 40, pytest.approx(.9)]]

    # With the file in the weights cache, "auto" picks the real detector up (no download: offline).
    home = random_detector_weights.parent.parent / "home"
    (home / "weights").mkdir(parents=True, exist_ok=True)
    cached = home / "weights" / random_detector_weights.name
    if not cached.exists():
        cached.symlink_to(random_detector_weights)
    monkeypatch.setenv("FRPOSE_HOME", str(home))
    assert zoo.DETECTOR.cached()
    warnings = []   # the default (RTMDet) is not cached and cannot be downloaded: the cached R50 stands in
    assert isinstance(make_detector("auto", det_size=64, warn=warnings.append), TorchvisionDetector)
    assert len(warnings) == 1 and f"detector {zoo.DETECTOR.name} (cached) instead of" in warnings[0]


def test_torchvision_detector_rejects_other_files(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(FrposeError, match="not Faster R-CNN"):
        TorchvisionDetector(bad)
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(FrposeError, match="not a readable PyTorch checkpoint"):
        TorchvisionDetector(tmp_path / "junk.pth")


def _coco_v1_like_state(seed=0, builder=None):
    """A random-but-fixed state dict in the layout of torchvision's COCO_V1 file (frozen batch norms,
    no ``num_batches_tracked``), made so that the batch-norm eps shows and persons are detected: a
    quarter of the channels of every batch norm have a running variance of 1e-6..1e-4 (with the
    weight scaled by its square root, so eps 0 and eps 1e-5 give very different features), and the
    box classifier prefers the person class."""
    from torchvision.models.detection import fasterrcnn_resnet50_fpn
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = (builder or fasterrcnn_resnet50_fpn)(weights=None, weights_backbone=None, num_classes=91)
    state = {k: v.clone() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    for key in [k for k in state if k.endswith("running_var")]:
        prefix, n = key[:-len("running_var")], state[key].numel()
        var = torch.rand(n, generator=g) + 0.5
        small = torch.rand(n, generator=g) < 0.25
        var[small] = 10 ** (-4 - 2 * torch.rand(int(small.sum()), generator=g))
        state[key] = var
        state[prefix + "running_mean"] = (torch.rand(n, generator=g) - 0.5) * 0.2
        state[prefix + "weight"] = var.sqrt() * (0.5 + torch.rand(n, generator=g))
    state["roi_heads.box_predictor.cls_score.weight"] *= 0.01
    state["roi_heads.box_predictor.cls_score.bias"][1] = 5.0   # person
    return state


def assert_same_person_boxes(det, ref, at_least: int, score_atol: float) -> None:
    """frpose's detector and torchvision's model give the same person boxes (score ≥ 0.3) on a real image."""
    image, _ = read_image(DATA / "val2017" / "000000000785.jpg")
    h, w = image.shape[:2]
    boxes = det(SourceItem(0, Path("000000000785.jpg"), "000000000785.jpg", image=image))
    with torch.inference_mode():
        out = ref([torch.from_numpy(image).permute(2, 0, 1).float().div(255)])[0]
    keep = (out["labels"] == 1) & (out["scores"] >= 0.3)
    xyxy, scores = out["boxes"][keep].numpy(), out["scores"][keep].numpy()
    expected = clip_boxes(np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2], scores[:, None]], 1), w, h)
    assert len(expected) >= at_least and boxes.shape == expected.shape
    np.testing.assert_allclose(boxes[:, :4], expected[:, :4], atol=1e-4, rtol=0)
    np.testing.assert_allclose(boxes[:, 4], expected[:, 4], atol=score_atol, rtol=0)


def test_torchvision_detector_matches_torchvisions_own_coco_v1_build(tmp_path, monkeypatch):
    """The detector equals what ``fasterrcnn_resnet50_fpn(weights=COCO_V1)`` builds: torchvision's own
    builder runs (its download replaced by the fixed state dict), including FrozenBatchNorm2d and
    ``overwrite_eps(model, 0.0)``; frpose loads the same tensors from a file.  Same boxes and scores
    on a real COCO image."""
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights, fasterrcnn_resnet50_fpn
    from torchvision.ops import FrozenBatchNorm2d

    state = _coco_v1_like_state()
    path = tmp_path / zoo.DETECTOR.file_name
    torch.save(state, path)
    monkeypatch.setattr(FasterRCNN_ResNet50_FPN_Weights, "get_state_dict",
                        lambda self, *args, **kwargs: {k: v.clone() for k, v in state.items()})
    size = dict(min_size=320, max_size=480)   # small, for a quick CPU test; the same on both sides
    ref = fasterrcnn_resnet50_fpn(weights=FasterRCNN_ResNet50_FPN_Weights.COCO_V1, **size).eval()
    det = TorchvisionDetector(path, score_thr=0.3, **size)

    assert {m.eps for m in ref.modules() if isinstance(m, FrozenBatchNorm2d)} == {0.0}   # the builder's doing
    ref_types = {name: type(m) for name, m in ref.named_modules()}
    assert {name: type(m) for name, m in det.model.named_modules()} == ref_types
    assert {name: m.eps for name, m in det.model.named_modules() if isinstance(m, FrozenBatchNorm2d)} == \
        {name: m.eps for name, m in ref.named_modules() if isinstance(m, FrozenBatchNorm2d)}

    assert_same_person_boxes(det, ref, at_least=10, score_atol=1e-6)


def test_make_detector_zoo_names_and_architectures(tmp_path, monkeypatch):
    monkeypatch.setenv("FRPOSE_HOME", str(tmp_path / "home"))   # nothing cached, downloads off (conftest)
    assert zoo.find("fasterrcnn-mobilenet-v3") is zoo.DETECTOR_MOBILENET and zoo.DETECTOR.ap == 37.0
    assert zoo.DETECTOR_MOBILENET.ap == 32.8 and "box AP 32.8" in zoo.DETECTOR_MOBILENET.source
    with pytest.raises(FrposeError, match="fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth is not in the cache"):
        make_detector("fasterrcnn-mobilenet-v3")
    with pytest.raises(FrposeError, match="fasterrcnn_resnet50_fpn_coco-258fb6c6.pth is not in the cache"):
        make_detector("fasterrcnn-r50-fpn")
    with pytest.raises(FrposeError, match="do not combine"):
        make_detector("fasterrcnn-mobilenet-v3", boxes=DET_JSON)
    r50 = tmp_path / "r50.pth"
    torch.save(_coco_v1_like_state(), r50)
    # --detector-weights is read as the architecture --detector names: an R50 file is no MobileNet
    with pytest.raises(FrposeError, match="does not fit fasterrcnn_mobilenet_v3_large_fpn") as e:
        make_detector("fasterrcnn-mobilenet-v3", detector_weights=r50)
    assert "\n" not in str(e.value)
    det = make_detector("torchvision", detector_weights=r50, det_size=64)
    assert det.arch == "fasterrcnn-r50-fpn" and det.name == "torchvision"


def _zoo_file_as_torchvisions_download(tmp_path, monkeypatch, entry, weights_enum, state) -> None:
    """``state`` is the zoo entry's file in the weights cache and what torchvision's builder would download
    for ``weights_enum.COCO_V1``; the entry names that file and its published box AP."""
    home = tmp_path / "home"
    (home / "weights").mkdir(parents=True)
    torch.save(state, home / "weights" / entry.file_name)
    monkeypatch.setenv("FRPOSE_HOME", str(home))
    monkeypatch.setattr(weights_enum, "get_state_dict",
                        lambda self, *args, **kwargs: {k: v.clone() for k, v in state.items()})
    assert entry.url == weights_enum.COCO_V1.url
    assert weights_enum.COCO_V1.meta["_metrics"]["COCO-val2017"]["box_map"] == entry.ap


def test_mobilenet_detector_matches_torchvisions_own_coco_v1_build(tmp_path, monkeypatch):
    """``--detector fasterrcnn-mobilenet-v3`` equals ``fasterrcnn_mobilenet_v3_large_fpn(weights=COCO_V1)``:
    torchvision's own builder runs (its download replaced by a fixed state dict), with FrozenBatchNorm2d
    (eps 1e-5, no overwrite_eps), its anchors and ``rpn_score_thresh``; frpose loads the same tensors from
    the zoo's file name in the cache.  Same person boxes and scores on a real COCO image."""
    from torchvision.models.detection import (FasterRCNN_MobileNet_V3_Large_FPN_Weights,
                                              fasterrcnn_mobilenet_v3_large_fpn)
    from torchvision.ops import FrozenBatchNorm2d

    state = _coco_v1_like_state(builder=fasterrcnn_mobilenet_v3_large_fpn)
    _zoo_file_as_torchvisions_download(tmp_path, monkeypatch, zoo.DETECTOR_MOBILENET,
                                       FasterRCNN_MobileNet_V3_Large_FPN_Weights, state)
    ref = fasterrcnn_mobilenet_v3_large_fpn(weights=FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1,
                                            min_size=320, max_size=533).eval()
    det = make_detector("fasterrcnn-mobilenet-v3", det_size=320, det_thr=0.3)   # from the cache (offline)
    assert isinstance(det, TorchvisionDetector) and det.name == "fasterrcnn-mobilenet-v3"

    assert {name: type(m) for name, m in det.model.named_modules()} == \
        {name: type(m) for name, m in ref.named_modules()}
    assert {name: m.eps for name, m in det.model.named_modules() if isinstance(m, FrozenBatchNorm2d)} == \
        {name: m.eps for name, m in ref.named_modules() if isinstance(m, FrozenBatchNorm2d)}
    assert {m.eps for m in ref.modules() if isinstance(m, FrozenBatchNorm2d)} == {1e-5}
    assert (det.model.rpn.score_thresh, det.model.transform.max_size) == (ref.rpn.score_thresh, 533)

    assert_same_person_boxes(det, ref, at_least=5, score_atol=1e-4)


def test_ssdlite_detector_matches_torchvisions_own_coco_v1_build(tmp_path, monkeypatch):
    """``--detector ssdlite320-mobilenet-v3`` equals ``ssdlite320_mobilenet_v3_large(weights=COCO_V1)``
    (its download replaced by a fixed state dict): reduced tail, BatchNorm2d eps 0.001, 320x320 input;
    same person boxes and scores on a real COCO image."""
    from torchvision.models.detection import SSDLite320_MobileNet_V3_Large_Weights, ssdlite320_mobilenet_v3_large

    torch.manual_seed(0)
    state = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=91).state_dict()
    for level in range(6):   # persons, confidently, from every level's classifier
        key = f"head.classification_head.module_list.{level}.1"
        state[key + ".weight"] *= 0.01
        state[key + ".bias"].view(-1, 91)[:, 1] = 5.0
    _zoo_file_as_torchvisions_download(tmp_path, monkeypatch, zoo.DETECTOR_SSDLITE,
                                       SSDLite320_MobileNet_V3_Large_Weights, state)
    ref = ssdlite320_mobilenet_v3_large(weights=SSDLite320_MobileNet_V3_Large_Weights.COCO_V1,
                                        score_thresh=0.05).eval()   # frpose keeps what scores 0.05 or more
    det = make_detector("ssdlite320-mobilenet-v3", det_thr=0.3)   # from the cache (offline)
    assert isinstance(det, TorchvisionDetector) and det.name == "ssdlite320-mobilenet-v3"
    assert {name: type(m) for name, m in det.model.named_modules()} == \
        {name: type(m) for name, m in ref.named_modules()}
    assert {name: m.eps for name, m in det.model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)} == \
        {name: m.eps for name, m in ref.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert_same_person_boxes(det, ref, at_least=3, score_atol=1e-4)
    with pytest.raises(FrposeError, match="not SSDlite weights"):
        TorchvisionDetector(_faster_rcnn_file(tmp_path), arch="ssdlite320-mobilenet-v3")


def _faster_rcnn_file(tmp_path):
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn
    path = tmp_path / "frcnn.pth"
    torch.save(fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None).state_dict(), path)
    return path
