"""Which precisions run where (detection mocked), `--precision auto`'s decision and its cache."""
import json

import pytest
import torch

from frpose_cli.runtime import autoselect
from frpose_cli.runtime import hardware
from frpose_cli.runtime.autoselect import cache_key, choose, read_cache, select
from frpose_cli.cards import load_card
from frpose_cli.errors import FrposeError
from frpose_cli.runtime.gate import GateReport
from frpose_cli.runtime.hardware import CpuInfo, GpuInfo, Hardware
from frpose_cli.runtime.autoselect import runnable_model
from frpose_cli.runtime.precision import candidates, default_precision, unavailable_reason
from helpers import randomised, run_cli

AVX2 = Hardware(CpuInfo("x86_64", "AuthenticAMD", "AMD EPYC", 25, 1, frozenset({"avx2", "fma"}), "AVX2", 2, 2.45),
                threads=2)
ZEN4 = Hardware(CpuInfo("x86_64", "AuthenticAMD", "AMD EPYC 9R14", 25, 17,
                        frozenset({"avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni"}), "AVX512", 2, 2.6),
                threads=2)
ARM = Hardware(CpuInfo("aarch64", "", "Neoverse", None, None, frozenset(), "DEFAULT", 2), threads=2)
OLD_X86 = Hardware(CpuInfo("x86_64", "GenuineIntel", "Xeon E5-2670", 6, 45, frozenset(), "NO AVX", 2), threads=2)


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
    autoselect.write_cache_entry(path, "k", {"precision": "fp32"})
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
    code, _, err = run_cli(["predict", coco_root / "val2017" / "000000000785.jpg", "-w", ckpt, "--out",
                            tmp_path / "p", "--no-vis", "--no-progress"], capsys)
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
