"""The honest ceiling: the fastest rate this machine reaches, per precision, with the libraries
frpose runs on — set beside each model's achieved rate.

A 2048³ ``torch.mm`` alone is a poor reference: on some CPUs oneDNN's convolutions run far
above torch's GEMM, and a network then shows 120-380 % "of peak", which tells a user
nothing.  So the ceiling is the best of several kernels, each the best of ``repeats`` timed
calls:

* float32 / bf16 / fp16: 3×3 convolutions through torch (oneDNN on CPU, cuDNN on GPU), channels
  last as the ``fused`` set-up runs them, at three shapes of equal cost (many channels on a
  small map to few channels on a large one), and square GEMMs of two sizes;
* float32 on CPU also ONNX Runtime's convolution (the ``onnxruntime`` set-up), and int8 ONNX
  Runtime's quantized (QDQ) convolution and GEMM, built by the same quantizer as the network.

Rates are GFLOP/s (2 × multiply-accumulates per second; for int8, giga-operations).  If a
network outruns its ceiling, :func:`raise_ceiling` measures again, longer, and keeps the
best; a share above 100 % survives only if the network still outruns it.

The theoretical peak comes from the ISA (:mod:`frpose_cli.hardware`): FLOPs per cycle per
core × clock × threads.  The clock is the one the system reports; when the measured rate is
above the peak, only a faster running (boost) clock explains it, and the footer says which
clock the measurement implies at least.  bf16: AVX512-BF16 doubles float32's rate, AMX-BF16 is 1024 FLOPs
per cycle; int8: VNNI quadruples it, AMX-INT8 is 2048 ops per cycle; int8 without VNNI
(a three-instruction sequence) and GPUs are not computed.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from frpose_cli.device import synchronize

# (batch, channels, height, width) of 3x3 same-padding convolutions: 3.6 GFLOP each.
CONV_SHAPES = ((4, 128, 64, 48), (4, 256, 32, 24), (4, 512, 16, 12))
GEMM_SIZES = (1024, 2048)
SMALL_CONV_SHAPES = ((1, 64, 16, 12),)     # tests: the same code paths in milliseconds
SMALL_GEMM_SIZES = (128,)
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Ceiling:
    precision: str
    device: str
    gflops: float                         # best measured rate
    best_kernel: str
    kernels: dict = field(default_factory=dict)   # kernel → its best rate
    repeats: int = 3
    theoretical_gflops: float | None = None
    theoretical_method: str = ""
    remeasured: bool = False
    clock_ghz: float | None = None        # the clock the theoretical peak assumed (reported, not measured)

    def share(self, achieved_gflops: float) -> float:
        return achieved_gflops / self.gflops if self.gflops > 0 else float("nan")

    def method(self) -> str:
        """One line for a table footer: what the ceiling is and how it was measured."""
        unit = "Gop/s" if self.precision == "int8" else "GFLOP/s"
        line = (f"{self.precision} ceiling {self.gflops:.0f} {unit}: best of {len(self.kernels)} kernels "
                f"({self.best_kernel} fastest), best of {self.repeats} calls each"
                + (", re-measured after a model outran it" if self.remeasured else ""))
        if self.theoretical_gflops:
            line += (f"; ISA peak {self.theoretical_gflops:.0f} ({self.theoretical_method}), measured "
                     f"{100 * self.gflops / self.theoretical_gflops:.0f} % of it")
            if self.gflops > self.theoretical_gflops and self.clock_ghz:
                # Only a faster clock explains a rate above the peak: the measurement bounds the running clock.
                line += (f" — the cores run at ≥ {self.clock_ghz * self.gflops / self.theoretical_gflops:.2f} GHz, "
                         "above the reported clock")
        elif self.theoretical_method:
            line += f"; ISA peak not computed ({self.theoretical_method})"
        return line

    def to_dict(self) -> dict:
        return asdict(self)


def _best_rate(fn, flops: float, device, repeats: int) -> float:
    fn()                                   # warm-up: kernel selection, allocation
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return flops / best / 1e9


def _torch_kernels(device, dtype, conv_shapes, gemm_sizes, repeats) -> dict:
    out = {}
    g = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for n, c, h, w in conv_shapes:
            x = torch.randn(n, c, h, w, generator=g).to(device, dtype).contiguous(memory_format=torch.channels_last)
            wt = torch.randn(c, c, 3, 3, generator=g).to(device, dtype).contiguous(memory_format=torch.channels_last)
            flops = 2 * n * c * c * 9 * h * w
            out[f"torch conv3x3 {c}ch {h}x{w} b{n}"] = _best_rate(
                lambda: torch.nn.functional.conv2d(x, wt, padding=1), flops, device, repeats)
        for s in gemm_sizes:
            a = torch.randn(s, s, generator=g).to(device, dtype)
            b = torch.randn(s, s, generator=g).to(device, dtype)
            out[f"torch GEMM {s}³"] = _best_rate(lambda: torch.mm(a, b), 2 * s ** 3, device, repeats)
    return out


def _onnx_conv(n, c, h, w) -> bytes:
    from onnx import TensorProto, helper, numpy_helper
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((c, c, 3, 3), np.float32) * 0.05, "w")
    node = helper.make_node("Conv", ["images", "w"], ["out"], pads=[1, 1, 1, 1], name="conv")
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [n, c, h, w])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [n, c, h, w])], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _onnx_gemm(s) -> bytes:
    from onnx import TensorProto, helper, numpy_helper
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((s, s), np.float32) * 0.05, "w")
    node = helper.make_node("MatMul", ["images", "w"], ["out"], name="gemm")
    graph = helper.make_graph([node], "gemm", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [s, s])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [s, s])], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _ort_kernels(int8: bool, conv_shapes, gemm_sizes, repeats, hw) -> dict:
    from frpose_cli.runtime.quantize import quantize_int8, reduce_range_for
    from frpose_cli.runtime.onnxrt import ort_session
    out = {}
    rng = np.random.default_rng(0)
    graphs = [(f"conv3x3 {c}ch {h}x{w} b{n}", _onnx_conv(n, c, h, w), (n, c, h, w), 2 * n * c * c * 9 * h * w)
              for n, c, h, w in conv_shapes[1:2] or conv_shapes]
    if int8:   # the network's GEMMs are its 1x1 convolutions; quantized MatMul is measured for int8 only
        graphs += [(f"GEMM {s}³", _onnx_gemm(s), (s, s), 2 * s ** 3) for s in gemm_sizes]
    for name, graph, shape, flops in graphs:
        x = rng.standard_normal(shape, np.float32)
        if int8:
            # The output stays float when it is the graph's output; quantize it too here (keep_output_float=False)
            # so the kernel is the fused int8-in/int8-out one the network's inner layers use.
            graph = quantize_int8(graph, [x], reduce_range_for(hw), keep_output_float=False)
        session = ort_session(graph)
        out[f"onnxruntime {'int8 ' if int8 else ''}{name}"] = _best_rate(
            lambda: session.run(None, {"images": x}), flops, torch.device("cpu"), repeats)
    return out


def theoretical_peak(hw, precision: str, device) -> tuple[float | None, str]:
    """(GFLOP/s, how) from the ISA, FMA units and clock; (None, why not) where it is not computable."""
    if torch.device(device).type != "cpu":
        return None, "not computed for GPUs"
    cpu = hw.cpu
    if cpu.arch not in ("x86_64", "AMD64", "x86"):
        return None, f"FMA units of {cpu.arch} CPUs are not tabulated"
    if not cpu.clock_ghz:
        return None, "clock unknown"
    per_cycle, what = cpu.fp32_flops_per_cycle, "float32 FMA"
    if precision == "bf16":
        if cpu.has("amx_bf16"):
            per_cycle, what = 1024, "AMX-BF16"
        elif cpu.has("avx512_bf16"):
            per_cycle, what = 2 * per_cycle, "AVX512-BF16 (2× float32)"
        else:
            return None, "no native bf16"
    elif precision == "int8":
        if cpu.int8_dot == "amx":
            per_cycle, what = 2048, "AMX-INT8"
        elif cpu.int8_dot == "vnni":
            per_cycle, what = 4 * per_cycle, "VNNI (4× float32)"
        else:
            return None, "int8 without VNNI/AMX is a three-instruction sequence with no single peak rate"
    elif precision == "fp16":
        return None, "fp16 runs on GPUs"
    cores = min(hw.threads, cpu.logical_cpus)
    units, bits = cpu.fma_datapath
    return (per_cycle * cpu.clock_ghz * cores,
            f"{per_cycle} {what} FLOP/cycle ({units}×{bits}-bit units) × {cpu.clock_ghz:.2f} GHz "
            f"[{cpu.clock_source}] × {cores} cores")


def measure_ceiling(device, precision: str = "fp32", hw=None, repeats: int = 3, small: bool = False) -> Ceiling:
    """Measure the ceiling of ``precision`` on ``device`` (see the module docstring)."""
    from frpose_cli.hardware import detect
    device = torch.device(device)
    hw = hw or detect(device)
    convs, gemms = (SMALL_CONV_SHAPES, SMALL_GEMM_SIZES) if small else (CONV_SHAPES, GEMM_SIZES)
    kernels = {}
    if precision in _DTYPES:
        kernels.update(_torch_kernels(device, _DTYPES[precision], convs, gemms, repeats))
    if device.type == "cpu" and precision in ("fp32", "int8"):
        try:
            kernels.update(_ort_kernels(precision == "int8", convs, gemms, repeats, hw))
        except ImportError:
            pass                           # no onnxruntime: its set-ups cannot run either
    if not kernels:
        raise ValueError(f"no {precision} kernels to measure on {device}")
    best = max(kernels, key=kernels.get)
    peak, how = theoretical_peak(hw, precision, device)
    return Ceiling(precision, str(device), kernels[best], best, kernels, repeats, peak, how,
                   clock_ghz=hw.cpu.clock_ghz if peak else None)


def raise_ceiling(ceiling: Ceiling, achieved_gflops: float, hw=None, small: bool = False) -> Ceiling:
    """When a network outran ``ceiling``, measure again with three times the repeats and keep the
    best of both measurements per kernel."""
    if achieved_gflops <= ceiling.gflops:
        return ceiling
    again = measure_ceiling(ceiling.device, ceiling.precision, hw, repeats=3 * ceiling.repeats, small=small)
    kernels = {k: max(v, ceiling.kernels.get(k, 0.0)) for k, v in again.kernels.items()}
    best = max(kernels, key=kernels.get)
    return Ceiling(ceiling.precision, ceiling.device, kernels[best], best, kernels, again.repeats,
                   ceiling.theoretical_gflops, ceiling.theoretical_method, remeasured=True, clock_ghz=ceiling.clock_ghz)
