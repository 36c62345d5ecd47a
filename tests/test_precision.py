"""Which precisions run where (detection mocked), `--precision auto`'s decision and its cache."""
import json

import pytest
import torch

from frpose_cli.precision import autoselect, cache
from frpose_cli import hardware
from frpose_cli.precision.autoselect import choose, select
from frpose_cli.precision.cache import cache_key, read_cache
from frpose_cli.cards import load_card
from frpose_cli.errors import FrposeError
from frpose_cli.precision.gate import GateReport
from frpose_cli.hardware import CpuInfo, GpuInfo, Hardware
from frpose_cli.precision.runnable import runnable_model
from frpose_cli.precision.formats import candidates, default_precision, unavailable_reason
from helpers import randomised, run_cli

AVX2 = Hardware(CpuInfo("x86_64", "AuthenticAMD", "AMD EPYC", 25, 1, frozenset({"avx2", "fma"}), "AVX2", 2, 2.45),
                threads=2)
ZEN4 = Hardware(CpuInfo("x86_64", "AuthenticAMD", "AMD EPYC 9R14", 25, 17,
                        frozenset({"avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni"}), "AVX512", 2, 2.6),
                threads=2)
ARM = Hardware(CpuInfo("aarch64", "", "Neoverse", None, None, frozenset(), "DEFAULT", 2), threads=2)
OLD_X86 = Hardware(CpuInfo("x86_64", "GenuineIntel", "Xeon E5-2670", 6, 45, frozenset(), "NO AVX", 2), threads=2)


@pytest.fixture(autouse=True)
def _as_without_openvino(without_openvino):
    """The decision as on a machine without the optional openvino package (its set-ups join the
    candidates where it is installed: tests/test_openvino.py)."""


def test_candidates_follow_the_hardware():
    assert candidates("cpu", AVX2) == ["fp32", "int8"]           # no bf16: never a candidate
    assert candidates("cpu", ZEN4) == ["fp32", "bf16", "int8"]   # native bf16: considered
    assert candidates("cpu", ZEN4, backend="torch") == ["fp32", "bf16"]
    assert candidates("cpu", ZEN4, backend="onnxruntime") == ["fp32", "int8"]
    assert candidates("cpu", ARM) == ["fp32", "int8"]           # ONNX Runtime's ARM int8 kernels
    assert candidates("cpu", OLD_X86) == ["fp32"]                # no AVX2: no int8 path
    assert candidates("cuda", Hardware(AVX2.cpu, GpuInfo("A100", (8, 0)), 2)) == ["fp32", "bf16", "fp16"]
    assert candidates("cuda", Hardware(AVX2.cpu, GpuInfo("T4", (7, 5)), 2)) == ["fp32", "fp16"]
    assert "no native bf16" in unavailable_reason("bf16", "cpu", AVX2)
    assert "CUDA" in unavailable_reason("fp16", "cpu", ZEN4)


def test_default_precision_is_auto_on_cpu_and_env_overrides(monkeypatch):
    monkeypatch.delenv("FRPOSE_PRECISION", raising=False)
    assert default_precision("cpu") == "auto" and default_precision("cuda") == "fp32"
    monkeypatch.setenv("FRPOSE_PRECISION", "int8")
    assert default_precision("cpu") == "int8"
    monkeypatch.setenv("FRPOSE_PRECISION", "fp8")
    with pytest.raises(FrposeError, match="FRPOSE_PRECISION"):
        default_precision("cpu")


def _report(precision, passed=True, median=0.1):
    return GateReport(precision, 12, 150, median, 2 * median, 3 * median, 80.0, 80.0, 0.0, passed,
                      "" if passed else f"median drift {median} px > 0.5 px")


def _run_select(hw, speeds, gates=None):
    built = []

    def build(p):
        built.append(p)
        return p   # stands in for a module

    gates = gates or {}
    sel, module = select(candidates("cpu", hw), build, lambda p, m: gates.get(p, _report(p)),
                         lambda mods: {p: speeds[p] for p in mods})
    return sel, module, built


def test_no_native_bf16_never_builds_or_chooses_bf16():
    sel, module, built = _run_select(AVX2, {"fp32": 10.0, "bf16": 100.0, "int8": 12.0})
    assert "bf16" not in built and sel.precision == "int8" and module == "int8"


def test_native_bf16_is_gated_timed_and_chosen_when_fastest():
    sel, module, built = _run_select(ZEN4, {"fp32": 10.0, "bf16": 22.0, "int8": 19.0})
    assert built == ["fp32", "bf16", "int8"] and sel.precision == "bf16" and module == "bf16"
    assert set(sel.gates) == {"bf16", "int8"} and "int8" in sel.rejected   # passed the gate, but slower


def test_a_candidate_that_fails_to_build_is_rejected_not_fatal():
    def build(p):
        if p == "int8":
            raise RuntimeError("quantizer broke\nsecond line")
        return p
    sel, module = select(["fp32", "int8"], build, lambda p, m: _report(p), lambda mods: {p: 1.0 for p in mods})
    assert sel.precision == "fp32" and module == "fp32"
    assert sel.rejected["int8"] == "failed: RuntimeError: quantizer broke"


def test_gate_rejection_and_small_gains_keep_fp32():
    sel, _, _ = _run_select(ZEN4, {"fp32": 10.0, "bf16": 30.0, "int8": 10.5},
                            gates={"bf16": _report("bf16", passed=False, median=0.9)})
    assert sel.precision == "fp32"
    assert sel.rejected["bf16"].startswith("gate: median drift") and "needs 1.10x" in sel.rejected["int8"]


def test_explicit_bf16_without_native_support_is_refused(monkeypatch):
    monkeypatch.setattr(hardware, "detect", lambda device="cpu": AVX2)
    card = load_card("sbn-r18", (64, 64))
    with pytest.raises(FrposeError, match="no native bf16"):
        runnable_model(card.build_model().eval(), card, "cpu", "bf16")


def test_cache_key_changes_with_the_machine_signature():
    keys = {cache_key("frpose-r18@abc", (128, 96), hw.signature("cpu")) for hw in (AVX2, ZEN4, ARM, OLD_X86)}
    assert len(keys) == 4
    assert cache_key("frpose-r18@abc", (128, 96), AVX2.signature()) != cache_key("frpose-r18@abc", (256, 192),
                                                                                  AVX2.signature())


def test_auto_gates_times_once_then_uses_the_cache(tmp_path, monkeypatch):
    """Real pieces on a small network: the first call gates int8 on real crops and times both; the
    second reads the cache (no gate, no timing); another machine signature decides again."""
    card = load_card("sbn-r18", (64, 64))
    torch.manual_seed(0)
    net = randomised(card.build_model())
    path = tmp_path / "precision.json"
    logs = []
    sel, module = choose(net, card, "cpu", "auto", AVX2, log=logs.append, cache_path=path)
    assert not sel.cached and "int8" in sel.gates and sel.gates["int8"]["crops"] == 12
    assert sel.precision in ("fp32", "int8") and ("int8" in sel.rejected) == (sel.precision == "fp32")
    entry = read_cache(path)[sel.key]
    assert entry["precision"] == sel.precision and "AVX2" in entry["machine"]
    assert module(torch.randn(1, 3, 64, 64)).shape == (1, 17, 16, 16)

    def must_not_run(*a, **k):
        raise AssertionError("a cached choice must not gate or time again")
    monkeypatch.setattr(autoselect, "select", must_not_run)
    again, _ = choose(net, card, "cpu", "auto", AVX2, cache_path=path)
    assert again.cached and again.precision == sel.precision and again.key == sel.key
    with pytest.raises(AssertionError, match="cached choice"):
        choose(net, card, "cpu", "auto", Hardware(AVX2.cpu, threads=1), cache_path=path)
    assert "gating and timing fp32, int8" in logs[0]


def test_corrupt_cache_is_rebuilt(tmp_path):
    path = tmp_path / "precision.json"
    path.write_text("{not json")
    assert read_cache(path) == {}
    cache.write_cache_entry(path, "k", {"precision": "fp32"})
    assert json.loads(path.read_text())["entries"] == {"k": {"precision": "fp32"}}


def test_predict_precision_option(tmp_path, capsys, monkeypatch, coco_root):
    from frpose_cli.weights.checkpoint import save_checkpoint
    card = load_card("sbn-r18", (64, 64))
    ckpt = save_checkpoint(tmp_path / "m.pt", card.build_model(), card)
    image = coco_root / "val2017" / "000000000785.jpg"
    monkeypatch.setattr(hardware, "detect", lambda device="cpu": AVX2)
    code, _, err = run_cli(["predict", image, "-w", ckpt, "--precision", "bf16", "--out", tmp_path / "a"], capsys)
    assert code == 2 and "no native bf16" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["predict", image, "-w", ckpt, "--precision", "int8", "--backend", "torch",
                            "--out", tmp_path / "b"], capsys)
    assert code == 2 and "int8 runs on ONNX Runtime" in err
    code, _, err = run_cli(["predict", image, "-w", ckpt, "--precision", "int8", "--out", tmp_path / "c",
                            "--no-vis", "--no-progress"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "c" / "images.json").read_text())["precision"] == "int8"


def test_predict_and_eval_choose_with_auto_and_say_so(tmp_path, capsys, monkeypatch, coco_root):
    from frpose_cli.weights.checkpoint import save_checkpoint
    card = load_card("sbn-r18", (64, 64))
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "m.pt", randomised(card.build_model()), card)
    monkeypatch.setattr(hardware, "detect", lambda device="cpu": AVX2)
    monkeypatch.setenv("FRPOSE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FRPOSE_PRECISION")                     # the CPU default: auto
    image = coco_root / "val2017" / "000000000785.jpg"
    # a one-image run does not wait for the choice (issue 21): float32 now, and it says how the choice is made
    code, _, err = run_cli(["predict", image, "-w", ckpt, "--out", tmp_path / "q", "--no-vis", "--no-progress"], capsys)
    assert code == 0, err
    assert "precision auto: fp32" in err and "not decided yet" in err and "gating and timing" not in err
    assert json.loads((tmp_path / "q" / "images.json").read_text())["precision"] == "fp32"
    assert read_cache(tmp_path / "home" / "precision.json") == {}
    # asked for by name, it is decided now (and cached)
    code, _, err = run_cli(["predict", image, "-w", ckpt, "--precision", "auto", "--out", tmp_path / "p", "--no-vis",
                            "--no-progress"], capsys)
    assert code == 0, err
    assert "precision auto: gating and timing fp32, int8" in err and "precision auto: " in err.splitlines()[1]
    chosen = json.loads((tmp_path / "p" / "images.json").read_text())["precision"]
    entry, = read_cache(tmp_path / "home" / "precision.json").values()
    assert entry["precision"] == chosen and "int8" in entry["gates"]
    # eval is the measurement: fp32 unless asked, on the CPU too (issue 19); --precision auto reuses the choice.
    code, _, err = run_cli(["eval", "-w", ckpt, "--data", coco_root, "--gt-boxes", "--out", tmp_path / "e.json",
                            "--workers", "0", "--no-progress"], capsys)
    assert code == 0, err
    assert "precision auto" not in err and "in fp32: boxes ground truth" in err
    code, _, err = run_cli(["eval", "-w", ckpt, "--data", coco_root, "--gt-boxes", "--out", tmp_path / "e2.json",
                            "--workers", "0", "--no-progress", "--precision", "auto"], capsys)
    assert code == 0, err
    assert "[cached choice]" in err and f"in {chosen}: boxes ground truth" in err


# ---- the cache holds what was gated (issue 20): the int8 model itself, keyed by the calibration source
VNNI = Hardware(CpuInfo("x86_64", "GenuineIntel", "Xeon Gold 6248", 6, 85,
                        frozenset({"avx2", "fma", "avx512f", "avx512_vnni"}), "AVX512", 2, 2.5), threads=2)
FRESH_PROCESS = """
import sys
sys.modules["openvino"] = None              # as the parent test: a machine without the openvino package
from frpose_cli import hardware
from frpose_cli.precision import crops
from frpose_cli.runtime import quantize
from frpose_cli.hardware import CpuInfo, Hardware
VNNI = Hardware(CpuInfo("x86_64", "GenuineIntel", "Xeon Gold 6248", 6, 85,
                        frozenset({"avx2", "fma", "avx512f", "avx512_vnni"}), "AVX512", 2, 2.5), threads=2)
hardware.detect = lambda device="cpu": VNNI
crops.vendored_root = lambda: None          # an installed wheel: no tests/data/coco
def must_not_quantize(*a, **k):
    raise AssertionError("quantized again")
quantize.quantize_int8 = must_not_quantize
from frpose_cli.cli.app import main
sys.argv = ["frpose", *sys.argv[1:]]
main()
"""


@pytest.fixture
def int8_wins(monkeypatch):
    """A CPU with VNNI (mocked), a gate that passes and timing where int8 is 2x fp32, so the choice
    is int8 whatever the random network; returns the list the real quantizer appends to per call."""
    from frpose_cli.precision import gate as gate_module
    from frpose_cli.runtime import quantize
    calls, real = [], quantize.quantize_int8
    monkeypatch.setattr(hardware, "detect", lambda device="cpu": VNNI)
    monkeypatch.setattr(gate_module, "run_gate", lambda ref, cand, card, crops, precision, codec_name=None:
                        _report(precision))
    monkeypatch.setattr(autoselect, "time_interleaved", lambda mods, *a, **k: {p: 20.0 if p == "int8" else 10.0
                                                                                 for p in mods})
    monkeypatch.setattr(quantize, "quantize_int8", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    return calls


@pytest.fixture
def small():
    card = load_card("sbn-r18", (64, 64))
    torch.manual_seed(0)
    return randomised(card.build_model()), card


def test_int8_chosen_with_calib_data_runs_in_a_fresh_process_without_quantizing(tmp_path, monkeypatch, coco_root,
                                                                                 int8_wins):
    """After a --calib-data run chose int8, a plain predict in a new process (no crops at all: a wheel)
    runs the stored, gated model: no quantization, no error."""
    import hashlib
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path
    from frpose_cli.load import load_pose_model
    from frpose_cli.weights.checkpoint import save_checkpoint
    home, calib = tmp_path / "home", shutil.copytree(coco_root, tmp_path / "calib")
    monkeypatch.setenv("FRPOSE_HOME", str(home))
    card = load_card("sbn-r18", (64, 64))
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "m.pt", randomised(card.build_model()), card)
    model = load_pose_model(ckpt, device="cpu", precision="auto", calib_data=calib)
    assert model.precision == "int8" and len(int8_wins) == 1
    (key, entry), = read_cache(home / "precision.json").items()
    assert key.endswith(f"|calib:{cache.calibration_source(calib)[0]}") and entry["base"] in key
    art = home / entry["artefact"]["file"]
    assert hashlib.sha256(art.read_bytes()).hexdigest() == entry["artefact"]["sha256"]
    env = {k: v for k, v in os.environ.items() if k != "FRPOSE_PRECISION"} | {"FRPOSE_HOME": str(home)}
    root = Path(__file__).resolve().parent.parent
    res = subprocess.run([sys.executable, "-c", FRESH_PROCESS, "predict", coco_root / "val2017" / "000000000785.jpg",
                          "-w", ckpt, "--out", tmp_path / "p", "--no-vis", "--no-progress"],
                         cwd=root, env=env | {"PYTHONPATH": str(root)}, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "precision auto: int8" in res.stderr and "[cached choice]" in res.stderr
    assert json.loads((tmp_path / "p" / "images.json").read_text())["precision"] == "int8"


def test_calibration_sources_are_distinct_entries_and_a_plain_run_reuses_the_newest(tmp_path, coco_root, small,
                                                                                    int8_wins):
    import shutil
    net, card = small
    path, calib = tmp_path / "precision.json", shutil.copytree(coco_root, tmp_path / "calib")
    plain, _ = choose(net, card, "cpu", "auto", VNNI, cache_path=path)
    other, module = choose(net, card, "cpu", "auto", VNNI, calib_data=calib, cache_path=path)
    assert plain.precision == other.precision == "int8" and plain.key != other.key and len(int8_wins) == 2
    entries = read_cache(path)
    assert set(entries) == {plain.key, other.key} and entries[plain.key]["base"] == entries[other.key]["base"]
    assert entries[plain.key]["artefact"]["file"] != entries[other.key]["artefact"]["file"]
    again, reused = choose(net, card, "cpu", "auto", VNNI, cache_path=path)   # newest entry, its stored model
    assert again.cached and again.key == other.key and len(int8_wins) == 2
    assert reused.onnx_bytes == module.onnx_bytes
    same, _ = choose(net, card, "cpu", "auto", VNNI, calib_data=calib, cache_path=path)
    assert same.cached and same.key == other.key and len(int8_wins) == 2
    with pytest.raises(FrposeError, match="no such folder"):
        choose(net, card, "cpu", "auto", VNNI, calib_data=tmp_path / "nowhere", cache_path=path)


def test_corrupt_artefact_is_gated_again_or_runs_fp32(tmp_path, monkeypatch, capsys, small, int8_wins):
    from frpose_cli.precision import crops
    net, card = small
    path = tmp_path / "precision.json"
    first, _ = choose(net, card, "cpu", "auto", VNNI, cache_path=path)
    art = tmp_path / read_cache(path)[first.key]["artefact"]["file"]
    capsys.readouterr()
    art.write_bytes(b"not the gated model")
    sel, _ = choose(net, card, "cpu", "auto", VNNI, cache_path=path)          # crops here: gate again
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "corrupt (sha256 mismatch); gating again" in err[0]
    assert not sel.cached and sel.precision == "int8" and len(int8_wins) == 2
    art.unlink()
    monkeypatch.setattr(crops, "vendored_root", lambda: None)                 # and now no crops at all
    sel, module = choose(net, card, "cpu", "auto", VNNI, cache_path=path)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is missing and no real person crops" in err[0] and err[0].endswith("running fp32")
    assert sel.precision == "fp32" and "missing" in sel.rejected["int8"] and len(int8_wins) == 2
    assert module(torch.randn(1, 3, 64, 64)).shape == (1, 17, 16, 16)


def test_auto_without_any_crops_skips_reduced_precisions_and_says_why(tmp_path, monkeypatch, small, int8_wins):
    from frpose_cli.precision import crops
    net, card = small
    monkeypatch.setattr(crops, "vendored_root", lambda: None)                 # a wheel, no --calib-data
    assert cache.calibration_source(None) == ("none", [])
    logs = []
    sel, module = choose(net, card, "cpu", "auto", ZEN4, log=logs.append, cache_path=tmp_path / "precision.json")
    assert sel.precision == "fp32" and set(sel.rejected) == {"bf16", "int8"} and not int8_wins
    assert sel.rejected["int8"].startswith("not tried: no real person crops")
    assert len(logs) == 1 and "int8: not tried: no real person crops" in logs[0]
    assert module(torch.randn(1, 3, 64, 64)).shape == (1, 17, 16, 16)
    again, _ = choose(net, card, "cpu", "auto", ZEN4, cache_path=tmp_path / "precision.json")
    assert again.cached and again.key.endswith("|calib:none")


def test_a_short_run_does_not_wait_for_the_precision_choice(tmp_path):
    """issue 21: undecided `auto` is decided before a run only when asked for by name or when the run
    earns it back (a video, or DECIDE_AT_IMAGES images); shorter runs start at once in float32."""
    from types import SimpleNamespace
    from frpose_cli.data.sources import Source
    from frpose_cli.inference.predict import DECIDE_AT_IMAGES, _worth_deciding
    few, many, video = tmp_path / "few", tmp_path / "many", tmp_path / "video"
    for folder, names in ((few, [f"{i}.jpg" for i in range(3)]),
                          (many, [f"{i}.jpg" for i in range(DECIDE_AT_IMAGES)]), (video, ["a.jpg", "clip.mp4"])):
        folder.mkdir()
        for name in names:
            (folder / name).write_bytes(b"")
    default, named = SimpleNamespace(precision=None), SimpleNamespace(precision="auto")
    assert not _worth_deciding(default, Source(few)) and _worth_deciding(named, Source(few))
    assert _worth_deciding(default, Source(many)) and _worth_deciding(default, Source(video))
