"""Capability detection from /proc/cpuinfo text (three real CPU types), the non-Linux fallback,
CUDA capability rules and the machine signature."""
import torch
from hypothesis import given, strategies as st

from frpose_cli import hardware
from frpose_cli.hardware import CpuInfo, GpuInfo, Hardware, cpu_from_cpuinfo, cpu_from_torch

BASE = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr sse sse2 ht syscall nx lm pni ssse3 sse4_1 sse4_2 avx f16c"


def cpuinfo(vendor, family, model, name, flags, mhz="2445.404"):
    return (f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
            f"model name\t: {name}\ncpu MHz\t\t: {mhz}\nflags\t\t: {BASE} {flags}\n\n"
            f"processor\t: 1\nvendor_id\t: {vendor}\nflags\t\t: nothing\n")


# This machine (AMD EPYC Milan, AVX2 only), a Zen 4 EPYC (AVX-512, BF16, VNNI), a Sapphire Rapids Xeon (AMX).
ZEN3 = cpuinfo("AuthenticAMD", 25, 1, "AMD EPYC", "fma avx2 bmi2 sha_ni vaes")
ZEN4 = cpuinfo("AuthenticAMD", 25, 17, "AMD EPYC 9R14", "fma avx2 avx512f avx512dq avx512bw avx512vl avx512_bf16 "
               "avx512_vnni avx512_bitalg")
SPR = cpuinfo("GenuineIntel", 6, 143, "Intel(R) Xeon(R) Platinum 8481C", "fma avx2 avx512f avx512_bf16 avx512_vnni "
              "avx_vnni amx_tile amx_bf16 amx_int8 avx512_fp16", mhz="2600.000")


def test_avx2_machine_has_no_bf16_and_avx2_int8():
    cpu = cpu_from_cpuinfo(ZEN3, "AVX2", 2, arch="x86_64")
    assert cpu.features == {"avx2", "fma"}
    assert not cpu.native_bf16 and cpu.int8_dot == "avx2"
    assert cpu.vector_bits == 256 and cpu.fma_datapath == (2, 256) and cpu.fp32_flops_per_cycle == 32
    assert cpu.isa == "AVX2+FMA" and cpu.model == "AMD EPYC" and cpu.family == 25
    assert cpu.clock_ghz == 2.445404 and "nominal" in cpu.clock_source
    assert "no AVX-512, no VNNI, no native bf16" in cpu.describe()


def test_zen4_has_bf16_and_vnni_on_256_bit_units():
    cpu = cpu_from_cpuinfo(ZEN4, "AVX512", 2, arch="x86_64")
    assert cpu.native_bf16 and cpu.int8_dot == "vnni"
    assert cpu.vector_bits == 512 and cpu.fma_datapath == (2, 256)   # Zen 4 splits 512-bit ops
    assert cpu.isa == "AVX-512F+AVX512-BF16+AVX512-VNNI"


def test_sapphire_rapids_has_amx_and_full_width_units():
    cpu = cpu_from_cpuinfo(SPR, "AVX512", 8, cpufreq_ghz=3.8, arch="x86_64")
    assert cpu.native_bf16 and cpu.int8_dot == "amx" and cpu.fp32_flops_per_cycle == 64
    assert cpu.clock_ghz == 3.8 and cpu.clock_source.startswith("cpufreq")
    assert "AMX-BF16" in cpu.isa and "AVX-VNNI" in cpu.isa


def test_a_users_isa_caps_hide_the_features_above_them_and_are_named():
    """ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA below what the CPU has: frpose chooses as on the capped machine."""
    capped = cpu_from_cpuinfo(SPR, "AVX2", 8, arch="x86_64",
                              env={"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert capped.features == {"avx2", "fma"} and not capped.native_bf16 and capped.int8_dot == "avx2"
    assert capped.fma_datapath == (2, 256)
    assert capped.describe().endswith("capped by ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2")
    vnni = cpu_from_cpuinfo(SPR, "AVX512", 8, arch="x86_64", env={"DNNL_MAX_CPU_ISA": "avx512_core_vnni"})
    assert vnni.int8_dot == "vnni" and not vnni.native_bf16 and "avx512f" in vnni.features
    bf16 = cpu_from_cpuinfo(SPR, "AVX512", 8, arch="x86_64", env={"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"})
    assert bf16.native_bf16 and bf16.int8_dot == "vnni" and not bf16.has("amx_bf16")
    # caps at or above the CPU's own ISA, or none, change nothing and are not named
    for env in ({}, {"ONEDNN_MAX_CPU_ISA": "ALL"}, {"ATEN_CPU_CAPABILITY": "avx512"},
                {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}):
        cpu = cpu_from_cpuinfo(SPR, "AVX512", 8, arch="x86_64", env=env)
        assert cpu.int8_dot == "amx" and cpu.capped_by == "" and "capped" not in cpu.describe()
    zen3 = cpu_from_cpuinfo(ZEN3, "AVX2", 2, arch="x86_64", env={"ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert zen3.features == {"avx2", "fma"} and zen3.capped_by == ""


def test_without_proc_cpuinfo_torch_capability_is_used(monkeypatch, tmp_path):
    monkeypatch.setattr(hardware, "_torch_capability", lambda: "AVX512")
    monkeypatch.setattr(hardware, "_onednn_bf16", lambda: True)
    cpu = hardware.detect_cpu(str(tmp_path / "missing"))
    assert cpu.source.startswith("torch") and cpu.features == {"avx2", "fma", "avx512f", "avx512_bf16"}
    assert cpu_from_torch("DEFAULT").features == frozenset()
    assert CpuInfo("x86_64", "", "old", None, None).int8_dot is None
    assert CpuInfo("aarch64", "", "Neoverse", None, None).int8_dot == "neon"
    assert not cpu_from_torch("AVX2", onednn_bf16=True).native_bf16   # oneDNN's claim needs AVX-512 to count


def test_gpu_capabilities():
    assert GpuInfo("A100", (8, 0)).native_bf16 and GpuInfo("A100", (8, 0)).native_fp16
    assert not GpuInfo("T4", (7, 5)).native_bf16 and GpuInfo("T4", (7, 5)).native_fp16
    assert GpuInfo("P100", (6, 0)).native_fp16 and not GpuInfo("GTX 1080", (6, 1)).native_fp16


def test_signature_names_what_decides_speed():
    zen3, zen4 = cpu_from_cpuinfo(ZEN3, "AVX2", 2), cpu_from_cpuinfo(ZEN4, "AVX512", 2)
    sig = Hardware(zen3, threads=2).signature("cpu")
    assert "AMD EPYC" in sig and "avx2" in sig and "t2" in sig and torch.__version__ in sig
    assert sig != Hardware(zen4, threads=2).signature("cpu")
    assert sig != Hardware(zen3, threads=1).signature("cpu")
    gpu = Hardware(zen3, GpuInfo("A100", (8, 0)), 2)
    assert gpu.signature("cuda").startswith("cuda|A100|sm80") and gpu.signature("cpu") == sig


def test_this_machine_is_detected():
    hw = hardware.detect("cpu")
    assert isinstance(hw.cpu, CpuInfo) and hw.threads == torch.get_num_threads()
    assert hw.signature() == hardware.detect("cpu").signature()


@given(st.sets(st.sampled_from(hardware.FEATURES)),
       st.lists(st.from_regex(r"[a-z][a-z0-9_]{1,12}", fullmatch=True), max_size=20))
def test_parsed_features_are_exactly_the_known_flags_present(known, other):
    flags = sorted(set(other) - set(hardware.FEATURES)) + sorted(known)
    text = f"processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: {' '.join(flags)}\n"
    cpu = cpu_from_cpuinfo(text, arch="x86_64")
    assert cpu.features == known
    assert cpu.native_bf16 == bool(known & {"avx512_bf16", "amx_bf16"})
