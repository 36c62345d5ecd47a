"""What the machine can do: CPU instruction-set features, vector width, clock, CUDA capability.

Speed code asks this module, never the CPU directly, so tests can hand it any machine
(:func:`detect` takes ``cpuinfo_text``; the dataclasses can be built by hand).

CPU features come from the ``flags`` line of ``/proc/cpuinfo`` (Linux); elsewhere from
``torch.backends.cpu.get_cpu_capability()`` ("AVX2", "AVX512", ...), which cannot tell the
AVX-512 extensions apart, so there only oneDNN's own bf16 check adds ``avx512_bf16``.

Peak arithmetic (:attr:`CpuInfo.fp32_flops_per_cycle`) needs the width of the FMA datapath
and the number of FMA units, which no flag states.  We use the published
micro-architecture figures by vendor and family: AMD Zen 1 (family 0x17, model < 0x30)
2 × 128-bit, Zen 2-4 (0x17 model ≥ 0x30, 0x19) 2 × 256-bit (Zen 4 splits 512-bit ops in
two halves), Zen 5 (0x1A) 2 × 512-bit; Intel with AVX-512 2 × 512-bit (Xeon Gold/Platinum
and most cloud parts; Silver/Bronze have one unit, so the peak is then an upper bound),
Intel AVX2 2 × 256-bit; anything else one unit of its widest vector.  The clock is the
kernel's ``cpuinfo_max_freq`` when cpufreq is present, else the "cpu MHz" of
``/proc/cpuinfo`` (in virtual machines the host's nominal clock); a user-space process cannot
read the running (boost) clock, so the source is always named beside the figure.

A user can cap the kernels below what the CPU has: ``ATEN_CPU_CAPABILITY`` (torch's own kernels) and
``ONEDNN_MAX_CPU_ISA`` / ``DNNL_MAX_CPU_ISA`` (oneDNN's, which run the convolutions).  The features
above a cap are then not usable, so they are dropped (:func:`capped_features`) and the cap is named
in :meth:`CpuInfo.describe`: with ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` an AVX-512
machine is, for frpose's choices and its figures, an AVX2 machine.
"""
from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

import torch

# /proc/cpuinfo flag names of the features frpose's speed code cares about.
FEATURES = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile", "amx_bf16",
            "amx_int8", "avx512_fp16")
_FEATURE_NAMES = {"avx2": "AVX2", "fma": "FMA", "avx512f": "AVX-512F", "avx512_bf16": "AVX512-BF16",
                  "avx512_vnni": "AVX512-VNNI", "avx_vnni": "AVX-VNNI", "amx_tile": "AMX", "amx_bf16": "AMX-BF16",
                  "amx_int8": "AMX-INT8", "avx512_fp16": "AVX512-FP16"}
_AVX512_FAMILY = frozenset(f for f in FEATURES if f.startswith(("avx512", "amx")))
# oneDNN's ISA cap names (its docs' "CPU ISA hints") → the features of FEATURES above it.
_ONEDNN_CAPS = (("AVX512_CORE_AMX", frozenset()), ("AVX10_1_512_AMX", frozenset()),
                ("AVX512_CORE_FP16", {"amx_tile", "amx_bf16", "amx_int8"}),
                ("AVX10_1_512", {"amx_tile", "amx_bf16", "amx_int8"}),
                ("AVX512_CORE_BF16", {"amx_tile", "amx_bf16", "amx_int8", "avx512_fp16"}),
                ("AVX512_CORE_VNNI", {"amx_tile", "amx_bf16", "amx_int8", "avx512_fp16", "avx512_bf16"}),
                ("AVX512_CORE", {"amx_tile", "amx_bf16", "amx_int8", "avx512_fp16", "avx512_bf16", "avx512_vnni"}),
                ("AVX2_VNNI", _AVX512_FAMILY), ("AVX2", _AVX512_FAMILY | {"avx_vnni"}),
                ("AVX", _AVX512_FAMILY | {"avx_vnni", "avx2", "fma"}), ("SSE", _AVX512_FAMILY | {"avx_vnni", "avx2", "fma"}))
# torch's coarse capability → the flags it implies (non-Linux fallback).
_CAPABILITY_FLAGS = {"AVX2": {"avx2", "fma"}, "AVX512": {"avx2", "fma", "avx512f"}}


@dataclass(frozen=True)
class CpuInfo:
    arch: str                                   # platform.machine(): x86_64, aarch64, arm64, ...
    vendor: str                                 # GenuineIntel, AuthenticAMD, ... ("" when unknown)
    model: str                                  # "AMD EPYC", "Intel(R) Xeon(R) Platinum 8481C", ...
    family: int | None                          # x86 family number (25 = 0x19 = AMD Zen 3/4)
    model_number: int | None
    features: frozenset = field(default_factory=frozenset)   # subset of FEATURES
    torch_capability: str = ""                  # torch.backends.cpu.get_cpu_capability()
    logical_cpus: int = 1
    clock_ghz: float | None = None
    clock_source: str = "unknown"
    source: str = "/proc/cpuinfo"               # where the features were read
    capped_by: str = ""                         # e.g. "ONEDNN_MAX_CPU_ISA=AVX2": a user's cap dropped features

    def has(self, feature: str) -> bool:
        return feature in self.features

    @property
    def native_bf16(self) -> bool:
        """bf16 dot products in hardware (AVX512-BF16 or AMX-BF16); without them oneDNN emulates bf16."""
        return self.has("avx512_bf16") or self.has("amx_bf16")

    @property
    def int8_dot(self) -> str | None:
        """How int8 dot products run: ``amx``, ``vnni`` (one instruction), ``avx2`` (a three-instruction
        multiply-add sequence whose 16-bit sums can saturate), ``neon`` (64-bit ARM, where ONNX
        Runtime has int8 kernels too), or None."""
        if self.has("amx_int8"):
            return "amx"
        if self.has("avx512_vnni") or self.has("avx_vnni"):
            return "vnni"
        if self.has("avx2"):
            return "avx2"
        return "neon" if self.arch in ("aarch64", "arm64") else None

    @property
    def vector_bits(self) -> int:
        return 512 if self.has("avx512f") else 256 if self.has("avx2") else 128

    @property
    def fma_datapath(self) -> tuple[int, int]:
        """(FMA units per core, bits per unit): see the module docstring for the sources."""
        if self.vendor == "AuthenticAMD" and self.family is not None:
            if self.family == 0x17:
                return (2, 128) if (self.model_number or 0) < 0x30 else (2, 256)
            if self.family == 0x19:
                return 2, 256
            if self.family >= 0x1A:
                return 2, min(512, self.vector_bits)
        if self.vendor == "GenuineIntel" and self.has("avx2"):
            return 2, self.vector_bits
        return 1, self.vector_bits

    @property
    def fp32_flops_per_cycle(self) -> int:
        """Per core: FMA units × float32 lanes × 2 (a fused multiply-add is two FLOPs)."""
        units, bits = self.fma_datapath
        return units * (bits // 32) * 2

    @property
    def isa(self) -> str:
        """Short human name of the vector ISA, e.g. ``AVX2+FMA`` or ``AVX-512F+AVX512-BF16+AVX512-VNNI``."""
        implied = {"avx2", "fma", "amx_tile"} if self.has("avx512f") else {"amx_tile"}   # AVX-512F implies them
        names = [_FEATURE_NAMES[f] for f in FEATURES if f in self.features and f not in implied]
        return "+".join(names) if names else (self.torch_capability or "no x86 SIMD")

    def describe(self) -> str:
        """e.g. ``AMD EPYC, x86_64 AVX2+FMA (no AVX-512, no VNNI, no native bf16)``."""
        lacks = [name for name, present in (("AVX-512", self.has("avx512f")),
                                            ("VNNI", self.int8_dot in ("vnni", "amx")),
                                            ("native bf16", self.native_bf16)) if not present]
        no = f" (no {', no '.join(lacks)})" if lacks and self.arch in ("x86_64", "AMD64") else ""
        cap = f", capped by {self.capped_by}" if self.capped_by else ""
        return f"{self.model or 'unknown CPU'}, {self.arch} {self.isa}{no}{cap}"


@dataclass(frozen=True)
class GpuInfo:
    name: str
    capability: tuple[int, int]

    @property
    def native_bf16(self) -> bool:
        return self.capability >= (8, 0)            # Ampere and later: bf16 tensor cores

    @property
    def native_fp16(self) -> bool:
        # Fast fp16: P100 (6.0) and every GPU with tensor cores (7.0+); other Pascal parts run it at 1/64 rate.
        return self.capability == (6, 0) or self.capability >= (7, 0)

    def describe(self) -> str:
        return f"{self.name} (compute capability {self.capability[0]}.{self.capability[1]})"


@dataclass(frozen=True)
class Hardware:
    cpu: CpuInfo
    gpu: GpuInfo | None = None                  # the CUDA device in use, if any
    threads: int = 1                            # torch's intra-op threads at detection time

    def signature(self, device: torch.device | str = "cpu") -> str:
        """One string naming what decides speed: the device, its ISA or capability, threads and
        the library versions whose kernels run the network (a different one may choose differently)."""
        device = torch.device(device)
        try:
            import onnxruntime
            ort = onnxruntime.__version__
        except ImportError:
            ort = "none"
        libs = f"torch-{torch.__version__}|ort-{ort}" + _openvino_tag()
        if device.type == "cuda" and self.gpu is not None:
            return f"cuda|{self.gpu.name}|sm{self.gpu.capability[0]}{self.gpu.capability[1]}|{libs}"
        feats = ",".join(sorted(self.cpu.features)) or self.cpu.torch_capability or "none"
        return f"cpu|{self.cpu.arch}|{self.cpu.model}|{feats}|t{self.threads}|{libs}"

    def describe(self, device: torch.device | str = "cpu") -> str:
        device = torch.device(device)
        if device.type == "cuda" and self.gpu is not None:
            return self.gpu.describe()
        return f"{self.cpu.describe()}, {self.threads} threads"


def _openvino_tag() -> str:
    """``|ov-VERSION`` where the optional openvino package is installed (its set-ups join ``--precision
    auto``'s candidates, so installing or upgrading it decides again), else nothing: a machine without
    it keeps the signature, and the cached choices, it had before OpenVINO was supported."""
    try:
        if importlib.util.find_spec("openvino") is None:
            return ""
        return f"|ov-{importlib.metadata.version('openvino')}"
    except (ImportError, ValueError, importlib.metadata.PackageNotFoundError):
        return ""


def parse_cpuinfo(text: str) -> dict:
    """The first processor block of /proc/cpuinfo as {key: value} (keys lower-case)."""
    out = {}
    for line in text.splitlines():
        if not line.strip():
            if out:
                break
            continue
        key, _, value = line.partition(":")
        out.setdefault(key.strip().lower(), value.strip())
    return out


def _int(value) -> int | None:
    try:
        return int(value, 0) if isinstance(value, str) and value.startswith("0x") else int(value)
    except (TypeError, ValueError):
        return None


def _torch_capability() -> str:
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return ""


def _onednn_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _cpufreq_max_ghz() -> float | None:
    try:
        return int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()) / 1e6
    except (OSError, ValueError):
        return None


def capped_features(features, env) -> tuple[frozenset, str]:
    """``features`` less those above the user's caps in ``env`` (a mapping like os.environ), and the caps
    that dropped any, e.g. ``"ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2"``."""
    from frpose_cli.settings import isa_cap_ignored   # a value torch/oneDNN do not know caps nothing
    has, usable, caps = frozenset(features), frozenset(features), []
    aten = env.get("ATEN_CPU_CAPABILITY", "").strip()
    aten = "" if isa_cap_ignored("ATEN_CPU_CAPABILITY", aten) else aten
    above = {f"ATEN_CPU_CAPABILITY={aten}": _AVX512_FAMILY if aten and not aten.lower().startswith("avx512") else set()}
    for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        cap = env.get(var, "").strip()
        cap = "" if isa_cap_ignored(var, cap) else cap
        above[f"{var}={cap}"] = next((drop for name, drop in _ONEDNN_CAPS if cap and cap.upper().startswith(name)), set())
    for cap, drop in above.items():
        if has & drop:        # named when it hides something this CPU has
            usable, caps = usable - drop, caps + [cap]
    return usable, ", ".join(caps)


def cpu_from_cpuinfo(text: str, torch_capability: str = "", logical_cpus: int = 1,
                     cpufreq_ghz: float | None = None, arch: str | None = None, env=None) -> CpuInfo:
    info = parse_cpuinfo(text)
    flags = set(info.get("flags", "").split())
    features, capped_by = capped_features(flags & set(FEATURES), env if env is not None else {})
    mhz = info.get("cpu mhz")
    clock, source = (cpufreq_ghz, "cpufreq cpuinfo_max_freq") if cpufreq_ghz else (
        (float(mhz) / 1000, "/proc/cpuinfo 'cpu MHz' (nominal, not the boost clock)") if mhz else (None, "unknown"))
    return CpuInfo(arch=arch or platform.machine(), vendor=info.get("vendor_id", ""),
                   model=info.get("model name", ""), family=_int(info.get("cpu family")),
                   model_number=_int(info.get("model")), features=features,
                   torch_capability=torch_capability, logical_cpus=logical_cpus, clock_ghz=clock,
                   clock_source=source, source="/proc/cpuinfo", capped_by=capped_by)


def cpu_from_torch(torch_capability: str, onednn_bf16: bool = False, logical_cpus: int = 1) -> CpuInfo:
    """Where /proc/cpuinfo is missing (macOS, Windows): torch's coarse capability only."""
    feats = set(_CAPABILITY_FLAGS.get(torch_capability, set()))
    if onednn_bf16 and "avx512f" in feats:
        feats.add("avx512_bf16")
    return CpuInfo(arch=platform.machine(), vendor="", model=platform.processor() or platform.machine(),
                   family=None, model_number=None, features=frozenset(feats), torch_capability=torch_capability,
                   logical_cpus=logical_cpus, source="torch.backends.cpu.get_cpu_capability()")


def detect_cpu(cpuinfo_path: str = "/proc/cpuinfo") -> CpuInfo:
    cap, cpus = _torch_capability(), os.cpu_count() or 1
    try:
        text = Path(cpuinfo_path).read_text()
    except OSError:
        return cpu_from_torch(cap, _onednn_bf16(), cpus)
    if "flags" not in text:      # e.g. ARM's /proc/cpuinfo says "Features"
        base = cpu_from_torch(cap, _onednn_bf16(), cpus)
        return CpuInfo(**{**base.__dict__, "model": parse_cpuinfo(text).get("model name", base.model)})
    return cpu_from_cpuinfo(text, cap, cpus, _cpufreq_max_ghz(), env=os.environ)


def detect_gpu(device: torch.device | str) -> GpuInfo | None:
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    return GpuInfo(torch.cuda.get_device_name(index), tuple(torch.cuda.get_device_capability(index)))


@functools.lru_cache(maxsize=None)
def _detect_cached(device: str, threads: int) -> Hardware:
    return Hardware(cpu=detect_cpu(), gpu=detect_gpu(device), threads=threads)


def detect(device: torch.device | str = "cpu") -> Hardware:
    """This machine (cached per device and thread count)."""
    return _detect_cached(str(torch.device(device)), torch.get_num_threads())
