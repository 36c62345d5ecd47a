"""The measured ceiling (best of several kernels, per precision) and the ISA's theoretical peak."""
import pytest

from frpose_cli.deploy.ceiling import Ceiling, measure_ceiling, raise_ceiling, theoretical_peak
from frpose_cli.hardware import CpuInfo, GpuInfo, Hardware

ZEN3 = Hardware(CpuInfo("x86_64", "AuthenticAMD", "AMD EPYC", 25, 1, frozenset({"avx2", "fma"}), "AVX2", 2, 2.45,
                        "test"), threads=2)
ZEN4 = Hardware(CpuInfo("x86_64", "AuthenticAMD", "AMD EPYC 9R14", 25, 17,
                        frozenset({"avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni"}), "AVX512", 4, 3.0, "test"),
                threads=2)
SPR = Hardware(CpuInfo("x86_64", "GenuineIntel", "Xeon", 6, 143,
                       frozenset({"avx2", "fma", "avx512f", "amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni"}),
                       "AVX512", 8, 2.0, "test"), threads=4)


def test_theoretical_peak_from_the_isa():
    assert theoretical_peak(ZEN3, "fp32", "cpu")[0] == pytest.approx(32 * 2.45 * 2)
    assert theoretical_peak(ZEN3, "bf16", "cpu") == (None, "no native bf16")
    assert theoretical_peak(ZEN3, "int8", "cpu")[0] is None
    assert theoretical_peak(ZEN4, "bf16", "cpu")[0] == pytest.approx(2 * 32 * 3.0 * 2)
    assert theoretical_peak(ZEN4, "int8", "cpu")[0] == pytest.approx(4 * 32 * 3.0 * 2)
    assert theoretical_peak(SPR, "bf16", "cpu")[0] == pytest.approx(1024 * 2.0 * 4)
    assert theoretical_peak(SPR, "fp32", "cpu")[0] == pytest.approx(64 * 2.0 * 4)
    gpu = Hardware(ZEN3.cpu, GpuInfo("A100", (8, 0)), 2)
    assert theoretical_peak(gpu, "fp32", "cuda") == (None, "not computed for GPUs")
    value, how = theoretical_peak(ZEN3, "fp32", "cpu")
    assert "2.45 GHz" in how and "2 cores" in how and "2×256-bit" in how


def test_fp32_ceiling_is_the_best_of_torch_and_onnxruntime_kernels():
    c = measure_ceiling("cpu", "fp32", ZEN3, repeats=1, small=True)
    assert any(k.startswith("torch conv3x3") for k in c.kernels)
    assert any(k.startswith("torch GEMM") for k in c.kernels) and any(k.startswith("onnxruntime") for k in c.kernels)
    assert c.gflops == max(c.kernels.values()) > 0 and c.kernels[c.best_kernel] == c.gflops
    assert c.theoretical_gflops == pytest.approx(156.8)
    text = c.method()
    assert text.startswith("fp32 ceiling") and c.best_kernel in text and "ISA peak 157" in text


def test_int8_ceiling_measures_quantized_onnxruntime_kernels():
    c = measure_ceiling("cpu", "int8", ZEN3, repeats=1, small=True)
    assert c.kernels and all(k.startswith("onnxruntime int8") for k in c.kernels)
    assert "Gop/s" in c.method() and "not computed" in c.method()


def test_a_model_faster_than_the_ceiling_makes_it_measure_again():
    low = Ceiling("fp32", "cpu", 1e-6, "fake", {"torch GEMM 128³": 1e-6}, repeats=1)
    assert raise_ceiling(low, 1e-7) is low                     # not outrun: unchanged
    again = raise_ceiling(low, 1.0, ZEN3, small=True)
    assert again.remeasured and again.repeats == 3 and again.gflops > low.gflops
    assert again.kernels["torch GEMM 128³"] >= low.kernels["torch GEMM 128³"]
    assert "re-measured" in again.method()
    assert again.share(again.gflops) == pytest.approx(1.0)


def test_a_rate_above_the_isa_peak_names_the_clock_it_implies():
    c = Ceiling("fp32", "cpu", 196.0, "torch GEMM 2048³", {"torch GEMM 2048³": 196.0}, 3, 156.8, "32 × 2.45 GHz × 2",
                clock_ghz=2.45)
    assert "≥ 3.06 GHz" in c.method() and "125 % of it" in c.method()
    assert "GHz, above" not in Ceiling("fp32", "cpu", 100.0, "k", {"k": 100.0}, 3, 156.8, "x", clock_ghz=2.45).method()
