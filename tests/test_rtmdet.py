"""RTMDet person detectors: the network read from mmdet files, the letterbox, decoding, set-ups, bad files.

Parity with mmdet itself (files and outputs made by mmdet 3.3.0) is tests/test_rtmdet_parity.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from frpose_cli.errors import FrposeError
from frpose_cli.inference.detector_setups import gate_detections
from frpose_cli.inference.rtmdet_detector import (FAMILIES, DecodeConfig, RTMDetDetector, check_input_size, decode,
                                                  letterbox, to_input)
from frpose_cli.net.rtmdet import PUBLISHED, RTMDet, RTMDetSpec, spec_for, spec_from_state


def tiny_spec(depthwise: bool, exp_on_reg: bool, widen: float = 0.0625, deepen: float = 0.33,
              share: bool = False, classes: int = 1) -> RTMDetSpec:
    return spec_for(widen, deepen, depthwise, 16, share, exp_on_reg, classes)


def random_model(spec: RTMDetSpec, seed: int = 0) -> RTMDet:
    torch.manual_seed(seed)
    model = RTMDet(spec).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):   # He init: the picture's detail survives the depth
                fan_in = m.weight[0].numel()
                m.weight.normal_(0, (2.0 / fan_in) ** 0.5)
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    # Random convolutions flatten the features; rescale the prediction convs so that, on a picture, logits
    # spread (a few tens of priors above 0.3, NMS busy) and box distances are a few strides.
    rng = np.random.default_rng(seed)
    picture = rng.integers(0, 255, (1, 128, 128, 3), np.uint8)
    with torch.no_grad():
        head, x = model.bbox_head, to_input(picture, "cpu")
        feats = model.neck(model.backbone(x))
        for level, f in enumerate(feats):
            c, r = f, f
            for unit in head.cls_convs[level]:
                c = unit(c)
            for unit in head.reg_convs[level]:
                r = unit(r)
            for conv, feat, (mean, std) in ((head.rtm_cls[level], c, (-2.0, 2.0)),
                                            (head.rtm_reg[level], r, (1.0, 0.3) if spec.exp_on_reg else (2.5, 0.8))):
                raw = torch.nn.functional.conv2d(feat, conv.weight)
                scale = std / raw.std(dim=(0, 2, 3)).clamp(min=1e-6)
                conv.weight.mul_(scale.view(-1, 1, 1, 1))
                conv.bias.copy_(mean - raw.mean(dim=(0, 2, 3)) * scale)
    return model


def save_mmdet(model: RTMDet, path):
    """A file laid out as mmdet's publish_model leaves one: meta + state_dict."""
    torch.save({"meta": {"dataset_meta": {"classes": ("person",)}, "epoch": 100}, "state_dict": model.state_dict()},
               path)
    return path


@pytest.fixture(scope="module")
def nano_file(tmp_path_factory):
    return save_mmdet(random_model(tiny_spec(True, False)), tmp_path_factory.mktemp("rtm") / "nano.pth")


@pytest.fixture(scope="module")
def m_file(tmp_path_factory):
    return save_mmdet(random_model(tiny_spec(False, True, share=True)), tmp_path_factory.mktemp("rtm") / "m.pth")


@pytest.fixture(scope="module")
def street():
    # square noise: the letterbox's grey band (or any flat patch) gives many priors one and the same score,
    # whose order (and so which of two overlapping boxes NMS keeps) is arbitrary, in mmdet too
    return np.random.default_rng(1).integers(0, 255, (240, 240, 3), np.uint8)


def nearest_gap(a: np.ndarray, b: np.ndarray) -> float:
    """The largest distance from a box of ``a`` to the closest box of ``b`` (same boxes in any order: ~0)."""
    return float(np.abs(a[:, None, :] - b[None, :, :]).max(2).min(1).max()) if len(a) else 0.0


@pytest.mark.parametrize("depthwise,exp,share,deepen", [(True, False, False, 0.33), (False, True, True, 0.67),
                                                        (False, False, False, 0.33)])
def test_spec_read_back_from_the_state(depthwise, exp, share, deepen):
    spec = tiny_spec(depthwise, exp, deepen=deepen, share=share)
    assert spec_from_state(RTMDet(spec).state_dict(), exp) == spec


def test_published_sizes_have_the_published_parameter_counts():
    # mmpose's table: RTMDet-nano 0.99 M, RTMDet-m 24.66 M parameters (projects/rtmpose/README.md)
    def count(name):
        params = RTMDet(spec_for(**PUBLISHED[name])).parameters()
        return round(sum(p.numel() for p in {id(p): p for p in params}.values()) / 1e6, 2)
    assert count("rtmdet-nano") == 0.99 and count("rtmdet-m") == 24.66


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 900), w=st.integers(1, 900), size=st.sampled_from([64, 320, 640]))
def test_letterbox_scales_the_long_side_to_the_canvas(h, w, size):
    image = np.full((h, w, 3), 7, np.uint8)
    canvas, (sx, sy) = letterbox(image, size)
    assert canvas.shape == (size, size, 3) and canvas.dtype == np.uint8
    scale = min(size / h, size / w)
    nw, nh = max(1, int(w * scale + 0.5)), max(1, int(h * scale + 0.5))
    assert (sx, sy) == (nw / w, nh / h)
    assert max(nw, nh) == size and (canvas[:nh, :nw] == 7).all()
    assert (canvas[nh:] == 114).all() and (canvas[:, nw:] == 114).all()


def test_letterbox_feeds_bgr():
    image = np.zeros((32, 32, 3), np.uint8)
    image[..., 0] = 255   # red in RGB
    canvas, _ = letterbox(image, 64)
    assert canvas[0, 0].tolist() == [0, 0, 255]


def test_decode_places_a_prior_box_and_rescales():
    size, levels = 64, []
    for stride in (8, 16, 32):
        n = size // stride
        logits = torch.full((1, n, n), -10.0)
        dist = torch.full((4, n, n), 1.0)
        levels.append((logits, dist))
    levels[0][0][0, 2, 3] = 2.0                       # prior (x 3·8, y 2·8) = (24, 16)
    levels[0][1][:, 2, 3] = torch.tensor([4.0, 6.0, 10.0, 12.0])
    boxes, scores, labels = decode(levels, (0.5, 0.25), size, 0.3)
    assert boxes.tolist() == [[(24 - 4) / 0.5, (16 - 6) / 0.25, (24 + 10) / 0.5, (16 + 12) / 0.25]]
    assert scores.tolist() == pytest.approx([torch.sigmoid(torch.tensor(2.0)).item()])
    assert labels.tolist() == [0]


def test_decode_clamps_to_the_canvas_suppresses_and_caps():
    n = 8
    logits = torch.full((1, n, n), -10.0)
    logits[0, 0, 0], logits[0, 0, 1], logits[0, 5, 5] = 3.0, 2.0, 1.0
    dist = torch.full((4, n, n), 20.0)
    levels = [(logits, dist), (torch.full((1, 4, 4), -10.0), torch.ones(4, 4, 4)),
              (torch.full((1, 2, 2), -10.0), torch.ones(4, 2, 2))]
    boxes, scores, _ = decode(levels, (1.0, 1.0), 64, 0.3)
    assert boxes[0].tolist() == [0.0, 0.0, 20.0, 20.0]        # clamped at the canvas' top-left
    assert len(boxes) == 2                                     # (8, 0) overlaps (0, 0) at IoU 0.71 > 0.6 → suppressed
    assert scores[0] > scores[1]
    capped, _, _ = decode(levels, (1.0, 1.0), 64, 0.3, DecodeConfig(max_per_img=1))
    assert len(capped) == 1


def test_detector_loads_both_layouts_and_batches_like_single(nano_file, m_file, street):
    """A batch runs each picture on its own canvas: the network's outputs are one at a time's up to float
    rounding, so the boxes are too (where two overlapping priors' scores tie to a few 1e-7, rounding may swap
    their order and NMS keep the other one, as it could in mmdet; the fixture's weights make no such ties)."""
    other = np.random.default_rng(2).integers(0, 255, (240, 240, 3), np.uint8)
    for path, arch in ((nano_file, "rtmdet-nano"), (m_file, "rtmdet-m")):
        det = RTMDetDetector(path, arch=arch, score_thr=0.2, input_size=128)
        canvases = np.stack([letterbox(im, 128)[0] for im in (street, other)])
        with torch.inference_mode():
            both = det.model(to_input(canvases, "cpu"))
            for i in range(2):
                one = det.model(to_input(canvases[i:i + 1], "cpu"))
                for (c1, d1), (cb, db) in zip(one, both):
                    assert torch.allclose(c1[0], cb[i], atol=1e-4) and torch.allclose(d1[0], db[i], atol=1e-3)
        single = [det.detect_batch([im])[0] for im in (street, other)]
        assert sum(len(a) for a in single) > 0, arch     # the fixture weights do find boxes
        for a, b in zip(single, det.detect_batch([street, other])):
            assert a.shape == b.shape and nearest_gap(a, b) <= 1e-3 and nearest_gap(b, a) <= 1e-3


@pytest.mark.parametrize("setup", ["fused", "bf16"])
def test_setups_agree_with_float32(nano_file, m_file, street, setup):
    """fused: the same network outputs up to float rounding, passing predict's accuracy gate; bf16: the
    prediction convs in float32, most boxes kept (the gate decides per run on real images)."""
    for path, arch in ((nano_file, "rtmdet-nano"), (m_file, "rtmdet-m")):
        det = RTMDetDetector(path, arch=arch, score_thr=0.2, input_size=128)
        model = det._build_setup(setup)
        x = to_input(letterbox(street, 128)[0][None], "cpu")
        with torch.inference_mode():
            ref, got = det.model(x), model(x.to(det._input_dtype(model)))
        for (c, d), (cs, ds_) in zip(ref, got):
            assert cs.dtype == torch.float32 and ds_.dtype == torch.float32     # prediction convs stay float32
            if setup == "fused":   # bf16's 8-bit mantissa moves outputs by percents: the gate below judges it
                assert (c - cs).abs().max() <= 1e-3 and (d - ds_).abs().max() <= 1e-2
        report = gate_detections([(det.detect_batch([street])[0], det.detect_batch([street], model)[0])], 0.3, setup)
        # random weights on noise are harsher than a trained detector on a photo: bf16 must still find most boxes
        assert report.passed if setup == "fused" else report.matched >= 0.85 * report.required, report.reason()


def test_wrong_files_are_one_line_each(tmp_path, nano_file, m_file):
    from torchvision.models import resnet18
    from torchvision.models.detection import ssdlite320_mobilenet_v3_large
    cases = {}
    torch.save(resnet18().state_dict(), cases.setdefault("classifier", tmp_path / "resnet18.pth"))
    torch.save(ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None).state_dict(),
               cases.setdefault("ssd", tmp_path / "ssd.pth"))
    data = nano_file.read_bytes()
    cases.setdefault("truncated", tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    expected = {"classifier": "not RTMDet weights", "ssd": "looks like SSD", "truncated": "not a readable"}
    for kind, path in cases.items():
        with pytest.raises(FrposeError) as e:
            RTMDetDetector(path, arch="rtmdet-nano")
        line = str(e.value)
        assert "\n" not in line and str(path) in line and expected[kind] in line, (kind, line)
    with pytest.raises(FrposeError, match="rtmdet-nano-style .* use --detector rtmdet-nano"):
        RTMDetDetector(nano_file, arch="rtmdet-m")
    with pytest.raises(FrposeError, match="rtmdet-m-style"):
        RTMDetDetector(m_file, arch="rtmdet-nano")


def test_input_size_is_checked():
    assert check_input_size(320) == 320
    for bad in (300, 32, 4096):
        with pytest.raises(FrposeError, match="multiple of 32"):
            check_input_size(bad, "rtmdet-m")
    with pytest.raises(TypeError):
        check_input_size(320.0)
    assert FAMILIES["rtmdet-nano"].input_size == 320 and FAMILIES["rtmdet-m"].input_size == 640


@pytest.mark.parametrize("setup", ["onnxruntime", "openvino", "openvino_bf16"])
def test_runtime_setups_agree_with_float32(m_file, street, setup):
    if setup.startswith("openvino"):
        pytest.importorskip("openvino")
    from frpose_cli import hardware
    det = RTMDetDetector(m_file, arch="rtmdet-m", score_thr=0.2, input_size=128)
    why = det._unavailable(setup, hardware.detect("cpu"))
    if why:
        pytest.skip(why)
    model = det._build_setup(setup)
    ref, got = det.detect_batch([street])[0], det.detect_batch([street], model)[0]
    report = gate_detections([(ref, got)], 0.3, setup)
    if setup != "openvino_bf16":   # float32: the same outputs up to rounding
        assert ref.shape == got.shape and nearest_gap(ref, got) <= 1e-2
    assert report.passed if setup != "openvino_bf16" else report.matched >= 0.85 * report.required, report.reason()
    both = det.detect_batch([street, street[::-1].copy()], model)   # a batch through the compiled graph
    assert len(both) == 2 and nearest_gap(both[0], got) <= 1e-2


def test_openvino_missing_is_one_line(m_file, monkeypatch):
    from frpose_cli import hardware
    from frpose_cli.runtime import ovrt
    monkeypatch.setattr(ovrt, "available", lambda: False)
    det = RTMDetDetector(m_file, arch="rtmdet-m", input_size=128)
    assert 'pip install "frpose[openvino]"' in det._unavailable("openvino", hardware.detect("cpu"))
    with pytest.raises(FrposeError, match="openvino"):
        RTMDetDetector(m_file, arch="rtmdet-m", input_size=128, setup="openvino")
    assert det._candidate(hardware.detect("cpu")) in ("bf16", "fused", "fp16")   # torch's own then


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_auto_with_a_weights_file_names_its_architecture_reading_it_whole_once(tmp_path, nano_file, legacy,
                                                                                 monkeypatch):
    """`--detector auto --detector-weights FILE` learns the architecture from the key names with the tensors
    mapped, not read, then loads the file once (torch's legacy format, which cannot be mapped, is read whole)."""
    from frpose_cli.inference import detectors
    from frpose_cli.weights import checkpoint
    path = tmp_path / "nano.pth"
    torch.save(torch.load(nano_file, weights_only=False), path, _use_new_zipfile_serialization=not legacy)
    loads = []
    real_load = torch.load

    def counting_load(*args, **kwargs):
        loads.append(bool(kwargs.get("mmap")))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "load", counting_load)
    lines = []
    det = detectors.make_detector("auto", detector_weights=path, log=lines.append, progress=False)
    assert isinstance(det, RTMDetDetector) and det.arch == "rtmdet-nano"
    assert lines[0] == "detector: rtmdet-nano (the architecture --detector-weights holds)"
    assert loads == ([False, False] if legacy else [True, False])   # whole reads: one (two for legacy)


@pytest.mark.parametrize("openvino", [False, True], ids=["without-openvino", "with-openvino"])
def test_the_first_runs_candidate_is_the_set_up_measured_fastest(nano_file, m_file, openvino, monkeypatch):
    """docs/detectors.md's figures: OpenVINO where installed; without it ONNX Runtime for nano everywhere and for
    m where bf16 is not native, torch's bf16 for m where it is."""
    from frpose_cli.inference import rtmdet_runtimes
    from frpose_cli.runtime import ovrt
    from test_detector_setups import AVX2_CPU, BF16_CPU
    monkeypatch.setattr(ovrt, "available", lambda: openvino)
    assert rtmdet_runtimes.unavailable_reason("onnxruntime", "cpu", AVX2_CPU) is None
    nano, m = RTMDetDetector(nano_file, arch="rtmdet-nano"), RTMDetDetector(m_file, arch="rtmdet-m")
    picks = {(d.arch, hw.cpu.model): d._candidate(hw) for d in (nano, m) for hw in (BF16_CPU, AVX2_CPU)}
    if openvino:
        assert picks == {("rtmdet-nano", "mocked Zen 4"): "openvino_bf16", ("rtmdet-nano", "mocked AVX2"): "openvino",
                         ("rtmdet-m", "mocked Zen 4"): "openvino_bf16", ("rtmdet-m", "mocked AVX2"): "openvino"}
    else:
        assert picks == {("rtmdet-nano", "mocked Zen 4"): "onnxruntime", ("rtmdet-nano", "mocked AVX2"): "onnxruntime",
                         ("rtmdet-m", "mocked Zen 4"): "bf16", ("rtmdet-m", "mocked AVX2"): "onnxruntime"}
