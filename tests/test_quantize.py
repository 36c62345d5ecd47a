"""int8 (ONNX Runtime static QDQ on real crops) and reduced-precision exports."""
import json

import numpy as np
import onnx
import pytest
import torch

from frpose_cli import hardware
from frpose_cli.cards import load_card
from frpose_cli.weights.checkpoint import save_checkpoint
from frpose_cli.precision.crops import calibration_crops
from frpose_cli.runtime.export_format import onnx_bytes_any_size
from frpose_cli.hardware import CpuInfo, Hardware
from frpose_cli.runtime.optimize import prepare_for_inference
from frpose_cli.runtime.quantize import calibration_batches, output_producers, quantize_int8, reduce_range_for
from frpose_cli.load import load_pose_model
from helpers import randomised, run_cli

SIZE = (64, 64)
AVX2 = Hardware(CpuInfo("x86_64", "AuthenticAMD", "AMD EPYC", 25, 1, frozenset({"avx2", "fma"}), "AVX2", 2), threads=2)
VNNI = Hardware(CpuInfo("x86_64", "AuthenticAMD", "AMD EPYC 9R14", 25, 17,
                        frozenset({"avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni"}), "AVX512", 2), threads=2)


@pytest.fixture(scope="module")
def net_card():
    card = load_card("sbn-r18", SIZE)
    torch.manual_seed(0)
    return randomised(card.build_model()), card


def test_int8_graph_is_qdq_with_float_heatmaps_and_close_to_fp32(net_card):
    net, card = net_card
    calib = calibration_crops(card).inputs
    data = quantize_int8(onnx_bytes_any_size(net), calibration_batches(calib.numpy()), reduce_range=True)
    model = onnx.load_from_string(data)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > 10
    (last,) = output_producers(model)
    last_node = next(n for n in model.graph.node if n.name == last)
    assert last_node.op_type == "Conv"                          # the heatmap layer runs in float
    weights = {i.name for i in model.graph.initializer}
    assert last_node.input[1] in weights                          # float weights, no DequantizeLinear
    int8 = prepare_for_inference(net, torch.device("cpu"), "int8", calib)
    x = calib[:4]
    with torch.no_grad():
        ref, out = net(x), int8(x)
    assert out.shape == ref.shape and not torch.equal(out, ref)  # it really is another computation
    assert (out - ref).abs().max() < 0.1 * ref.abs().max()


def test_reduce_range_only_without_vnni():
    assert reduce_range_for(AVX2) and not reduce_range_for(VNNI)
    assert [len(b) for b in calibration_batches(np.zeros((10, 3, 4, 4)), 4)] == [4, 4, 2]
    with pytest.raises(ValueError):
        prepare_for_inference(torch.nn.Conv2d(3, 3, 1), torch.device("cpu"), "int8")   # needs calibration


def test_export_int8_onnx_carries_precision_and_is_gated(net_card, tmp_path, capsys):
    net, card = net_card
    ckpt = save_checkpoint(tmp_path / "m.pt", net, card)
    out = tmp_path / "m-int8.onnx"
    code, stdout, err = run_cli(["export", "-w", ckpt, "--precision", "int8", "--out", out], capsys)
    assert "(onnx, int8, dynamic" in stdout and "gate int8: drift median" in stdout
    assert code == (0 if "PASS" in stdout else 2), err   # a random network may fail the gate; it must say so
    meta = json.loads(onnx.load(str(out)).metadata_props[0].value)
    assert meta["precision"] == "int8" and meta["model"] == "sbn-r18" and "16 real person crops" in meta["calibration"]["crops"]
    loaded = load_pose_model(out)
    assert loaded.precision == "int8" and loaded.backend == "onnxruntime"
    code, _, err = run_cli(["predict", card_image(), "-w", out, "--precision", "fp32", "--out", tmp_path / "p"], capsys)
    assert code == 2 and "exported in int8" in err
    code, _, err = run_cli(["export", "-w", ckpt, "--precision", "int8", "--format", "torchscript",
                            "--out", tmp_path / "x.pt"], capsys)
    assert code == 2 and "exports to --format onnx" in err


def card_image():
    from pathlib import Path
    return Path(__file__).parent / "data" / "coco" / "val2017" / "000000000785.jpg"


def test_export_bf16_torchscript_where_native(net_card, tmp_path, capsys, monkeypatch):
    net, card = net_card
    ckpt = save_checkpoint(tmp_path / "m.pt", net, card)
    monkeypatch.setattr(hardware, "detect", lambda device="cpu": AVX2)
    code, _, err = run_cli(["export", "-w", ckpt, "--precision", "bf16", "--format", "torchscript",
                            "--out", tmp_path / "a.pt"], capsys)
    assert code == 2 and "no native bf16" in err and not (tmp_path / "a.pt").exists()
    monkeypatch.setattr(hardware, "detect", lambda device="cpu": VNNI)   # a CPU with AVX512-BF16 (mocked)
    code, stdout, err = run_cli(["export", "-w", ckpt, "--precision", "bf16", "--format", "torchscript",
                                 "--out", tmp_path / "b.pt", "--no-check"], capsys)
    assert code == 0, err
    model = load_pose_model(tmp_path / "b.pt")
    assert model.precision == "bf16"
    x = torch.randn(2, 3, *SIZE)
    with torch.no_grad():
        ref, out = net(x), model(x)
    assert out.dtype == torch.float32 and not torch.equal(out, ref)   # bf16 rounding is in the traced graph
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()
