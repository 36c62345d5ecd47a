"""`frpose bench`: the JSON it writes and its one-line errors."""
import json
import subprocess

import pytest
import torch

from frpose_cli.cards import load_card
from frpose_cli.deploy.bench import count_macs, latency_ratios
from tests.helpers import run_cli as run_in_process


def run_verb(capsys, *args) -> subprocess.CompletedProcess:
    """`frpose ARGS` in this process through the console script's entry point (no child process to start and
    import torch in): a CompletedProcess (returncode, stdout, stderr); stdout is not a terminal here either."""
    code, out, err = run_in_process(list(args), capsys)
    return subprocess.CompletedProcess(["frpose", *map(str, args)], code, out, err)


def test_bench_cli_writes_json_per_model_and_size(tmp_path, capsys):
    out = tmp_path / "bench.json"
    res = run_verb(capsys, "bench", "sbn-r18", "frpose-r18", "--input-size", "64x64", "--input-size", "96x64",
                   "--iters", "2", "--warmup", "0", "--batch", "2", "--json", str(out))
    assert res.returncode == 0, res.stderr
    # no terminal: a line per row as it starts, and the ceiling's figure when measured
    assert "[1/4] sbn-r18 64x64 fused" in res.stdout and "[4/4] frpose-r18 96x64 fused" in res.stdout
    assert "fp32 ceiling: " in res.stdout and "GFLOP/s (measured in" in res.stdout
    rows = json.loads(out.read_text())
    assert [(r["model"], r["input_size"]) for r in rows] == [
        ("sbn-r18", [64, 64]), ("frpose-r18", [64, 64]), ("sbn-r18", [96, 64]), ("frpose-r18", [96, 64])]
    for r in rows:
        for key in ("params_m", "gmacs", "latency_ms", "latency_p90_ms", "throughput_ips", "peak_share"):
            assert r[key] > 0, key
        stride = 4 if r["model"].startswith("sbn") else 1
        assert r["heatmap_size"] == [r["input_size"][0] // stride, r["input_size"][1] // stride]
        assert r["latency_p90_ms"] >= r["latency_ms"]
    # MACs scale with the input area (fully convolutional network).
    assert abs(rows[2]["gmacs"] / rows[0]["gmacs"] - 1.5) < 0.02
    assert "GMACs = multiply-accumulates" in res.stdout.replace("\n", " ")


@pytest.mark.parametrize("args, needle", [(["bench", "nope"], "unknown model"),
                                          (["bench", "sbn-r18", "--input-size", "100x64"], "multiples of 32"),
                                          (["bench", "sbn-r18", "--setup", "turbo"], "unknown --setup"),
                                          (["bench", "sbn-r18", "--detector", "rtmdet-nano"],
                                           "--detector times the zoo's person detectors; MODEL belong to pose"),
                                          (["bench", "--detector", "nope"], "unknown --detector 'nope'"),
                                          (["bench", "--detector", "sbn-r50"], "unknown --detector 'sbn-r50'"),
                                          (["bench", "--detector", "rtmdet-nano", "--setup", "int8"],
                                           "--setup int8: not a detector set-up")])
def test_bench_cli_errors_are_one_line(args, needle, capsys):
    code, _, err = run_in_process(args, capsys)   # the console script's own entry point, in-process
    assert code == 2
    assert needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def _row(model, size, setup, ms, paper_ms=None):
    from dataclasses import fields
    from frpose_cli.deploy.bench import BenchResult
    values = {f.name: None for f in fields(BenchResult)}
    values.update(model=model, input_size=list(size), setup=setup, latency_ms=ms,
                  paper={"latency_ms": paper_ms} if paper_ms else {})
    return BenchResult(**values)


def test_latency_ratio_pairs_rows_by_size_and_setup_not_by_order():
    rows = [_row("sbn-r152", (256, 192), "fused", 4.0, 4.8), _row("frpose-r34", (384, 288), "eager", 50.0, 8.6),
            _row("sbn-r50", (256, 192), "eager", 1.0), _row("frpose-r34", (256, 192), "eager", 10.0, 3.5),
            _row("sbn-r152", (384, 288), "eager", 100.0, 11.8), _row("frpose-r34", (256, 192), "fused", 8.0, 3.5),
            _row("sbn-r152", (256, 192), "eager", 20.0, 4.8), _row("frpose-r34", (320, 256), "eager", 7.0)]
    got = {(tuple(q["input_size"]), q["setup"]): (q["ratio"], q["paper_ratio"]) for q in latency_ratios(rows)}
    assert got == {((256, 192), "eager"): (0.5, pytest.approx(3.5 / 4.8)),
                   ((256, 192), "fused"): (2.0, pytest.approx(3.5 / 4.8)),
                   ((384, 288), "eager"): (0.5, pytest.approx(8.6 / 11.8))}   # 320x256 has no partner


def test_macs_are_counted_for_convolutions_and_deconvolutions():
    # A single deconvolution of known cost: Cin·Cout·k²·Hin·Win MACs.
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1, bias=False), torch.nn.ConvTranspose2d(4, 5, 4, 2, 1, bias=False))
    assert count_macs(m, (8, 6)) == 3 * 4 * 48 + 4 * 5 * 16 * 48


def test_bench_reports_precision_ceiling_and_gate(tmp_path, capsys):
    """int8 beside fp32: each row set against its own precision's measured ceiling; the int8 row
    carries the gate's figures measured on the given trained weights; auto names its choice."""
    from frpose_cli.weights.checkpoint import save_checkpoint
    from helpers import randomised
    card = load_card("sbn-r18", (64, 64))
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "gate.pt", randomised(card.build_model()), card)
    out = tmp_path / "bench.json"
    res = run_verb(capsys, "bench", "sbn-r18", "--input-size", "64x64", "--setup", "fused", "--setup", "int8",
                   "--precision", "auto", "--gate-weights", str(ckpt), "--iters", "2", "--warmup", "0",
                   "--batch", "2", "--json", str(out))
    assert res.returncode == 0, res.stderr
    rows = {r["setup"]: r for r in json.loads(out.read_text())}
    # auto may add the set-up it chose: ONNX Runtime's, or OpenVINO's where it is installed
    assert {"fused", "int8"} <= set(rows) and set(rows) <= {"fused", "int8", "onnxruntime", "openvino", "openvino_bf16"}
    fp32, int8 = rows["fused"], rows["int8"]
    assert fp32["precision"] == "fp32" and int8["precision"] == "int8"
    for r in rows.values():
        assert r["gflops_per_s"] == r["achieved_gflops"] > 0 and r["ceiling_gflops"] > 0
        assert abs(r["pct_ceiling"] - 100 * r["gflops_per_s"] / r["ceiling_gflops"]) < 0.1
        assert "AVX" in r["machine"] or "no x86 SIMD" in r["machine"] or r["device"] != "cpu"
    assert fp32["gate_median_px"] is None and int8["gate_median_px"] is not None
    assert int8["gate_ap_delta"] is not None and isinstance(int8["gate_passed"], bool)
    assert fp32["ceiling_gflops"] != int8["ceiling_gflops"]      # one ceiling per precision
    text = res.stdout.replace("\n", " ")
    assert "fp32 ceiling" in text and "int8 ceiling" in text and "machine:" in text
    assert "precision auto:" in text and "gate: keypoint drift vs fp32" in text


def test_bench_weights_times_the_loaded_network(tmp_path, capsys, monkeypatch):
    """--weights goes through the one loader: the card and input size come from the checkpoint and the
    network timed is the loaded one, not a random one."""
    from frpose_cli.deploy import bench as bench_core
    from frpose_cli.weights.checkpoint import save_checkpoint
    from helpers import run_cli as run_in_process
    card = load_card("sbn-r18", (64, 32))
    torch.manual_seed(3)
    model = card.build_model()
    ckpt = save_checkpoint(tmp_path / "w.pt", model, card)
    seen = []
    real = bench_core.prepare_for_inference

    def spy(net, *args, **kwargs):
        seen.append(net.final_layer.weight.detach().clone())
        return real(net, *args, **kwargs)
    monkeypatch.setattr(bench_core, "prepare_for_inference", spy)
    code, out, err = run_in_process(["bench", "--weights", ckpt, "--setup", "eager", "--iters", "1", "--warmup", "0",
                                     "--batch", "1", "--json", tmp_path / "b.json"], capsys)
    assert code == 0, err
    [row] = json.loads((tmp_path / "b.json").read_text())
    assert (row["model"], row["input_size"]) == ("sbn-r18", [64, 32])
    assert seen and torch.equal(seen[0], model.final_layer.weight)
    code, _, err = run_in_process(["bench", "--weights", tmp_path / "missing.pt"], capsys)
    assert code == 2 and "weights not found" in err


def test_bench_reports_frpose_r34_at_table_2_size(tmp_path, capsys):
    """Issue 22's must-hold: params within 3 % of 33 M, GMACs within 5 % of 21.3 / 48.0, both sizes."""
    out = tmp_path / "t2.json"
    code, _, err = run_in_process(["bench", "frpose-r34", "--input-size", "256x192", "--input-size", "384x288",
                                   "--setup", "eager", "--iters", "1", "--warmup", "0", "--batch", "1",
                                   "--json", out], capsys)
    assert code == 0, err
    rows = {tuple(r["input_size"]): r for r in json.loads(out.read_text())}
    for size, gmacs in (((256, 192), 21.3), ((384, 288), 48.0)):
        assert abs(rows[size]["params_m"] - 33.0) / 33.0 <= 0.03
        assert abs(rows[size]["gmacs"] - gmacs) / gmacs <= 0.05


def test_bench_times_person_detectors_in_their_set_ups(tmp_path, capsys):
    """`frpose bench --detector`: each set-up asked for, its time per image, the float32 network's FLOPs as
    torch counts them, and its shares of the precision's ceiling and of the network's roofline."""
    out = tmp_path / "detectors.json"
    code, stdout, err = run_in_process(["bench", "--detector", "rtmdet-nano", "--setup", "fp32", "--setup", "fused",
                                        "--setup", "fp16", "--iters", "1", "--warmup", "1", "--json", out], capsys)
    assert code == 0, err
    rows = json.loads(out.read_text())
    assert [(r["detector"], r["setup"], r["precision"]) for r in rows] == [("rtmdet-nano", "fp32", "fp32"),
                                                                          ("rtmdet-nano", "fused", "fp32")]
    assert "rtmdet-nano fp16: skipped (fp16 runs on CUDA GPUs" in stdout   # named, never silently dropped
    for r in rows:
        assert r["input"] == "320x320 letterbox" and r["person_ap"] == 40.3
        assert abs(r["gflop_per_image"] - 0.62) < 0.02        # RTMDet-nano at 320: 0.31 G multiply-adds, published
        assert r["ms_per_image"] > 0 and r["gflops_per_s"] == pytest.approx(r["gflop_per_image"] / r["ms_per_image"]
                                                                            * 1000, rel=0.01)
        assert 0 < r["pct_ceiling"] < 100 and 0 < r["pct_roofline"] < 100
        assert r["roofline_gflops"] <= r["ceiling_gflops"] * 1.001
    assert "% roofline" in stdout and "machine:" in stdout
    code, _, err = run_in_process(["bench", "--detector", "rtmdet-nano", "--setup", "all", "--iters", "1",
                                   "--warmup", "1", "--json", tmp_path / "all.json"], capsys)
    assert code == 0, err   # all: every set-up this machine runs, fp32 among them, fp16 (CUDA only) left out quietly
    setups = [r["setup"] for r in json.loads((tmp_path / "all.json").read_text())]
    assert setups[:2] == ["fp32", "fused"] and "fp16" not in setups


def test_random_detector_files_load_and_find_nobody(tmp_path):
    """Timing files of the published shapes load into the zoo's detectors as the publishers' files do, and are
    sure of nobody, so that NMS is not what gets timed."""
    import numpy as np

    from frpose_cli.deploy.bench_detectors import random_detector_file, synthetic_images
    from frpose_cli.inference.detectors import build_detector
    image = synthetic_images()[0]
    for arch in ("rtmdet-nano", "ssdlite320-mobilenet-v3"):
        det = build_detector(arch, random_detector_file(arch, tmp_path), "cpu", 0.0, None, "fp32")
        boxes = det.detect_batch([image])[0] if hasattr(det, "detect_batch") else det(
            type("Item", (), {"image": image, "file_name": "x.jpg", "frame": None})())
        assert len(np.asarray(boxes)) == 0, arch
    with pytest.raises(ValueError, match="arch"):
        random_detector_file("sbn-r50", tmp_path)
    from frpose_cli.deploy.bench_detectors import bench_detectors
    with pytest.raises(ValueError, match="archs must name zoo detectors"):   # every name, before any is timed
        bench_detectors(["rtmdet-nano", "sbn-r50"], None, "cpu")
