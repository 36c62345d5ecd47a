"""OpenVINO, the optional CPU runtime: its heatmaps against torch's, the backend and `--precision auto`
with the package present and absent (mocked), the one-line error without it, IR export and reading
back, and bf16 refused without native bf16.  Timings are measured by `frpose bench`, never here."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from frpose_cli import hardware
from frpose_cli.cards import load_card
from frpose_cli.errors import FrposeError
from frpose_cli.hardware import CpuInfo, Hardware
from frpose_cli.load import load_pose_model
from frpose_cli.precision import autoselect
from frpose_cli.precision.autoselect import choose
from frpose_cli.precision.cache import read_cache
from frpose_cli.precision.formats import candidate_reason, candidates, setup_for
from frpose_cli.precision.runnable import runnable_model
from frpose_cli.runtime import ovrt
from frpose_cli.runtime.optimize import prepare_for_inference
from frpose_cli.weights.checkpoint import save_checkpoint
from frpose_cli.weights.loader import detect_file_kind
from helpers import randomised, run_cli

MISSING = 'frpose: error: --backend openvino needs the openvino package: pip install "frpose[openvino]"'
SIZE = (64, 64)
AVX2 = Hardware(CpuInfo("x86_64", "AuthenticAMD", "AMD EPYC", 25, 1, frozenset({"avx2", "fma"}), "AVX2", 2), threads=2)
ZEN4 = Hardware(CpuInfo("x86_64", "AuthenticAMD", "AMD EPYC 9R14", 25, 17,
                        frozenset({"avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni"}), "AVX512", 2), threads=2)
OLD_X86 = Hardware(CpuInfo("x86_64", "GenuineIntel", "Xeon E5-2670", 6, 45, frozenset(), "NO AVX", 2), threads=2)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """sbn-r18 at 64x64 with random weights (heatmaps far from flat) and its checkpoint."""
    card = load_card("sbn-r18", SIZE)
    torch.manual_seed(0)
    net = randomised(card.build_model())
    return net, card, save_checkpoint(tmp_path_factory.mktemp("ov") / "sbn-r18.pt", net, card)


@pytest.fixture
def image(coco_root):
    return coco_root / "val2017" / "000000000785.jpg"


def _largest_diff(module, reference, x):
    with torch.inference_mode():
        return float((module(x) - reference(x)).abs().max()), float(reference(x).abs().max())


# ---- the runtime itself ----------------------------------------------------------------------

def test_openvino_heatmaps_equal_torchs(small):
    """f32 within float rounding at any batch and input size (the in-memory graph is symbolic in both);
    OpenVINO's own default on a bf16 CPU is bf16, so this also proves the f32 hint is set."""
    pytest.importorskip("openvino")
    net, _, _ = small
    reference = prepare_for_inference(net, CPU, "eager")
    module = prepare_for_inference(net, CPU, "openvino")
    assert isinstance(module, ovrt.OpenVinoNet) and module.fixed_batch is None
    for shape in ((3, 3, 64, 64), (1, 3, 96, 64)):
        diff, peak = _largest_diff(module, reference, torch.randn(*shape))
        assert diff <= 1e-5 * max(peak, 1.0), (shape, diff, peak)
    compiled = module.compiled
    assert str(compiled.get_property("INFERENCE_PRECISION_HINT")) in ("<Type: 'float32'>", "f32", "float32")
    assert compiled.get_property("INFERENCE_NUM_THREADS") == torch.get_num_threads()


def test_openvino_bf16_is_close_to_torch_and_really_bf16(small):
    pytest.importorskip("openvino")
    if not hardware.detect("cpu").cpu.native_bf16:
        pytest.skip("this CPU has no native bf16; the refusal is tested with the hardware mocked")
    net, _, _ = small
    reference = prepare_for_inference(net, CPU, "eager")
    diff, peak = _largest_diff(prepare_for_inference(net, CPU, "openvino_bf16"), reference, torch.randn(4, 3, *SIZE))
    assert 1e-6 < diff <= 0.02 * peak, (diff, peak)   # moved (bf16 ran), but by less than 2 % of the peak


def test_compile_config_names_precision_latency_and_threads():
    assert ovrt.compile_config("fp32") == {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
                                           "INFERENCE_NUM_THREADS": torch.get_num_threads()}
    assert ovrt.compile_config("bf16", threads=3)["INFERENCE_PRECISION_HINT"] == "bf16"
    with pytest.raises(ValueError, match="precision"):
        ovrt.compile_config("int8")
    with pytest.raises(ValueError, match="threads"):
        ovrt.compile_config("fp32", threads=0)


# ---- present or absent: the backend, the candidates, the machine signature --------------------

def test_without_openvino_nothing_changes_and_asking_for_it_is_one_line(small, without_openvino):
    net, card, ckpt = small
    assert not ovrt.available()
    assert candidates("cpu", ZEN4) == ["fp32", "bf16", "int8"] and candidates("cpu", AVX2) == ["fp32", "int8"]
    assert "ov-" not in ZEN4.signature("cpu") and ZEN4.signature("cpu").endswith(f"|ort-{_ort()}")
    with pytest.raises(FrposeError) as e:
        load_pose_model(ckpt, backend="openvino", precision="fp32")
    assert f"frpose: error: {e.value}" == MISSING
    with pytest.raises(FrposeError, match="needs the openvino package"):
        runnable_model(net, card, "cpu", "fp32", backend="openvino")
    assert "needs the openvino package" in candidate_reason("openvino", "cpu", ZEN4)


def _ort():
    import onnxruntime
    return onnxruntime.__version__


def test_with_openvino_its_set_ups_join_auto_on_the_cpu_only():
    pytest.importorskip("openvino")
    assert candidates("cpu", ZEN4) == ["fp32", "bf16", "int8", "openvino", "openvino_bf16"]
    assert candidates("cpu", AVX2) == ["fp32", "int8", "openvino"]          # no native bf16: no bf16 hint either
    assert candidates("cpu", ZEN4, backend="torch") == ["fp32", "bf16"]      # a named backend keeps to itself
    assert candidates("cpu", ZEN4, backend="openvino") == ["fp32", "bf16"]
    assert [setup_for(p, "cpu", "openvino") for p in ("fp32", "bf16")] == ["openvino", "openvino_bf16"]
    gpu = Hardware(AVX2.cpu, hardware.GpuInfo("A100", (8, 0)), 2)
    assert "openvino" not in candidates("cuda", gpu)
    assert "|ov-" in ZEN4.signature("cpu")                                   # installing it decides again


@pytest.mark.parametrize("verb", ["predict", "eval", "bench", "export"])
def test_the_cli_says_one_line_without_the_package(verb, small, image, coco_root, tmp_path, capsys, without_openvino):
    _, _, ckpt = small
    args = {"predict": ["predict", image, "-w", ckpt, "--backend", "openvino", "--detector", "whole-image",
                        "--out", tmp_path / "p", "--no-progress"],
            "eval": ["eval", "-w", ckpt, "--data", coco_root, "--gt-boxes", "--backend", "openvino", "--workers", "0",
                     "--out", tmp_path / "e.json", "--no-progress"],
            "bench": ["bench", "sbn-r18", "--input-size", "64x64", "--setup", "openvino", "--iters", "1"],
            "export": ["export", "-w", ckpt, "--format", "openvino", "--out", tmp_path / "m.xml"]}[verb]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and 'needs the openvino package: pip install "frpose[openvino]"' in lines[0]
    if verb in ("predict", "eval"):
        assert lines[0] == MISSING
    assert not list(tmp_path.glob("*.xml")) and not list(tmp_path.glob("*.bin"))


def test_frpose_never_imports_openvino_by_itself():
    code = ("import sys\nimport frpose_cli.cli.app, frpose_cli.load, frpose_cli.deploy.bench, frpose_cli.deploy.export\n"
            "from frpose_cli import hardware\nfrom frpose_cli.precision.formats import candidates\n"
            "candidates('cpu', hardware.detect('cpu')); hardware.detect('cpu').signature('cpu')\n"
            "assert 'openvino' not in sys.modules, 'imported at start'\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


# ---- --precision auto ------------------------------------------------------------------------

def test_auto_gates_times_and_caches_openvino_then_forgets_it_when_uninstalled(small, tmp_path, monkeypatch):
    """A CPU without AVX2 (mocked): candidates fp32 (ONNX Runtime) and openvino.  The real gate runs on
    the vendored crops; timing is mocked so OpenVINO wins.  The cache remembers the set-up under a key
    naming the backend asked for; without the package the entry is not used and nothing tries it."""
    pytest.importorskip("openvino")
    net, card, _ = small
    path = tmp_path / "precision.json"
    monkeypatch.setattr(autoselect, "time_interleaved", lambda mods, *a, **k: {p: 20.0 if p == "openvino" else 10.0
                                                                                 for p in mods})
    logs = []
    sel, module = choose(net, card, "cpu", "auto", OLD_X86, log=logs.append, cache_path=path)
    assert "gating and timing fp32, openvino" in logs[0]
    assert (sel.precision, sel.setup, sel.candidate) == ("fp32", "openvino", "openvino")
    assert isinstance(module, ovrt.OpenVinoNet) and sel.gates["openvino"]["passed"]
    assert sel.gates["openvino"]["median_px"] < 0.01       # float32 on another runtime: the same keypoints
    entry = read_cache(path)[sel.key]
    assert entry["setup"] == "openvino" and "|auto|" in sel.key and "|ov-" in sel.key

    def must_not_run(*a, **k):
        raise AssertionError("a cached choice must not gate or time again")
    real_select = autoselect.select
    monkeypatch.setattr(autoselect, "select", must_not_run)
    again, module = choose(net, card, "cpu", "auto", OLD_X86, cache_path=path)
    assert again.cached and again.setup == "openvino" and isinstance(module, ovrt.OpenVinoNet)

    monkeypatch.setattr(autoselect, "select", real_select)
    monkeypatch.setitem(sys.modules, "openvino", None)      # uninstalled: another signature, only fp32 left
    gone, module = choose(net, card, "cpu", "auto", OLD_X86, cache_path=path)
    assert not gone.cached and gone.setup == "onnxruntime" and gone.key != sel.key
    assert not isinstance(module, ovrt.OpenVinoNet)


def test_a_cached_openvino_choice_is_not_reused_without_the_package(small, tmp_path, monkeypatch):
    """The entry an auto run writes when OpenVINO won, under a key whose signature does not change
    (mocked): used while the package is there, decided again (not run) once it is gone."""
    pytest.importorskip("openvino")
    from frpose_cli.precision.cache import cache_key, calibration_source, write_cache_entry
    from frpose_cli.precision.formats import weights_fingerprint
    net, card, _ = small
    path = tmp_path / "precision.json"
    monkeypatch.setattr(Hardware, "signature", lambda self, device="cpu": "fixed")
    base = cache_key(f"{card.name}@{weights_fingerprint(net)}", card.input_size, "fixed", "auto")
    key = cache_key(f"{card.name}@{weights_fingerprint(net)}", card.input_size, "fixed", "auto",
                    calibration_source()[0])
    write_cache_entry(path, key, {"precision": "fp32", "setup": "openvino", "candidate": "openvino", "key": key,
                                  "base": base, "throughput": {"fp32": 10.0, "openvino": 20.0}, "gates": {},
                                  "rejected": {}})
    sel, module = choose(net, card, "cpu", "auto", OLD_X86, cache_path=path)
    assert sel.cached and sel.setup == "openvino" and isinstance(module, ovrt.OpenVinoNet)
    monkeypatch.setitem(sys.modules, "openvino", None)
    sel, module = choose(net, card, "cpu", "auto", OLD_X86, cache_path=path)
    assert not sel.cached and sel.setup == "onnxruntime" and sel.key == key
    assert not isinstance(module, ovrt.OpenVinoNet)


# ---- bf16 without native bf16 -----------------------------------------------------------------

def test_bf16_is_refused_without_native_bf16(small, image, tmp_path, capsys, monkeypatch):
    pytest.importorskip("openvino")
    net, card, ckpt = small
    monkeypatch.setattr(hardware, "detect", lambda device="cpu": AVX2)
    with pytest.raises(FrposeError, match="no native bf16"):
        runnable_model(net, card, "cpu", "bf16", backend="openvino")
    code, _, err = run_cli(["predict", image, "-w", ckpt, "--backend", "openvino", "--precision", "bf16",
                            "--detector", "whole-image", "--out", tmp_path / "p", "--no-progress"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "--precision bf16" in lines[0] and "no native bf16" in lines[0]


# ---- IR files ---------------------------------------------------------------------------------

def test_export_to_ir_and_read_it_back(small, tmp_path, capsys, monkeypatch):
    """`frpose export --format openvino`: .xml + .bin with the ONNX export's metadata, nothing else left
    in the folder, parity checked; loaded back it runs the same network (static batch: in chunks)."""
    pytest.importorskip("openvino")
    net, card, ckpt = small
    out = tmp_path / "sbn.xml"
    code, stdout, err = run_cli(["export", "-w", ckpt, "--format", "openvino", "--static-batch", "--batch", "2",
                                 "--out", out], capsys)
    assert code == 0, err
    assert "parity: max |heatmap diff|" in stdout and "PASS" in stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sbn.bin", "sbn.xml"]   # no temp folder left
    assert detect_file_kind(out) == "openvino"
    meta = json.loads(ovrt.file_metadata(ovrt.read_model(out)))
    from frpose_cli.runtime.export_format import export_metadata
    expected = json.loads(json.dumps(export_metadata(card, "sbn", "openvino", False, 2, 17, str(ckpt))))
    assert meta == expected      # what the ONNX export carries, with "export": "openvino"
    loaded = load_pose_model(out)
    assert (loaded.backend, loaded.setup, loaded.precision, loaded.fixed_batch) == ("openvino", "openvino", "fp32", 2)
    assert loaded.card == card and loaded.codec_name == "sbn"
    x = torch.randn(5, 3, *SIZE)
    with torch.no_grad():
        assert np.allclose(loaded(x).numpy(), net(x).numpy(), atol=1e-4)
    with pytest.raises(FrposeError, match="--backend openvino"):
        load_pose_model(out, backend="torch")
    with pytest.raises(FrposeError, match="give its sbn.xml"):
        load_pose_model(tmp_path / "sbn.bin")
    code, _, err = run_cli(["export", "-w", ckpt, "--format", "openvino", "--out", tmp_path / "other.xml"], capsys)
    assert code == 0
    (tmp_path / "third.bin").write_bytes(b"someone's file")
    code, _, err = run_cli(["export", "-w", ckpt, "--format", "openvino", "--out", tmp_path / "third.xml"], capsys)
    assert code == 2 and "third.bin exists" in err and (tmp_path / "third.bin").read_bytes() == b"someone's file"
    monkeypatch.setattr(hardware, "detect", lambda device="cpu": AVX2)
    with pytest.raises(FrposeError, match="no native bf16"):
        load_pose_model(out, precision="bf16")


def test_predict_eval_and_bench_run_an_ir_file(small, image, coco_root, tmp_path, capsys, monkeypatch):
    pytest.importorskip("openvino")
    net, card, ckpt = small
    out = tmp_path / "m.xml"
    assert run_cli(["export", "-w", ckpt, "--format", "openvino", "--out", out, "--no-check"], capsys)[0] == 0
    code, _, err = run_cli(["predict", image, "-w", out, "--detector", "whole-image", "--out", tmp_path / "p",
                            "--no-vis", "--no-progress"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "p" / "images.json").read_text())["backend"] == "openvino"
    code, _, err = run_cli(["eval", "-w", out, "--data", coco_root, "--gt-boxes", "--workers", "0",
                            "--out", tmp_path / "e.json", "--no-progress"], capsys)
    assert code == 0, err
    assert "openvino" in err
    from frpose_cli.deploy import ceiling   # the ceiling is measured elsewhere (tests/test_ceiling.py): a fixed one
    monkeypatch.setattr(ceiling, "measure_ceiling", lambda device, precision, hw: ceiling.Ceiling(
        precision, str(device), 1e6, "fake", {"torch GEMM 2048³": 1e6}))
    code, _, err = run_cli(["bench", "-w", out, "--iters", "1", "--warmup", "0", "--batch", "2",
                            "--json", tmp_path / "b.json"], capsys)
    assert code == 0, err
    (row,) = json.loads((tmp_path / "b.json").read_text())
    assert (row["model"], row["input_size"], row["setup"], row["precision"]) == ("sbn-r18", list(SIZE), "openvino", "fp32")
    assert row["gmacs"] > 0 and row["latency_ms"] > 0


def test_bench_times_the_openvino_set_up(small, capsys):
    pytest.importorskip("openvino")
    from frpose_cli.deploy.bench import bench_card, bench_setups
    _, card, _ = small
    r = bench_card(card, CPU, "openvino", batch=2, warmup=0, iters=1)
    assert (r.setup, r.precision, r.batch) == ("openvino", "fp32", 2) and r.latency_ms > 0 and r.gmacs > 0
    assert {"openvino", "onnxruntime"} <= set(bench_setups(["all"], CPU, hardware.detect("cpu"), log=print))


def test_bench_all_names_openvino_skipped_without_it(without_openvino):
    from frpose_cli.deploy.bench import bench_setups
    logs = []
    chosen = bench_setups(["all"], CPU, ZEN4, log=logs.append)
    assert "openvino" not in chosen and "openvino_bf16" not in chosen and "onnxruntime" in chosen
    assert any(line.startswith("openvino skipped: the openvino backend needs the openvino package") for line in logs)
