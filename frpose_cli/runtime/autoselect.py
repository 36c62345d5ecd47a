"""``--precision auto``: gate and time the candidate precisions once, cache the choice, use the fastest.

Once per (model, input size, machine signature, backend):

1. the candidates are the precisions native here (:func:`frpose_cli.runtime.precision.candidates`:
   never bf16 on a CPU without AVX512-BF16/AMX);
2. each reduced-precision candidate is built and passes the accuracy gate
   (:mod:`frpose_cli.runtime.gate`) against float32 on real crops, or is rejected with the reason;
3. float32 and the survivors are timed round-robin (``ROUNDS`` rounds at batch
   ``TIMING_BATCH``, so a noisy machine slows them alike) and the fastest is chosen — a
   reduced precision only if it is at least ``MIN_GAIN`` × float32's throughput, a margin
   above the run-to-run noise of a shared machine;
4. the choice, every throughput, gate figure and reason goes to ``precision.json`` in the
   user cache folder (written atomically), so later runs start at once.

"Model" is the card name plus a hash of the network's tensors (the gate's verdict belongs to
the trained weights), "machine signature" is :meth:`frpose_cli.runtime.hardware.Hardware.signature`
(CPU model, ISA flags, threads, torch and ONNX Runtime versions).
"""
from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from frpose_cli.errors import FrposeError
from frpose_cli.fileio import atomic_write_json
from frpose_cli.home import frpose_home

MIN_GAIN = 1.10
TIMING_BATCH = 8
ROUNDS = 3
CACHE_VERSION = 1


def cache_file() -> Path:
    return frpose_home() / "precision.json"


def cache_key(model_key: str, input_size, signature: str, backend: str = "auto") -> str:
    return f"{model_key}|{input_size[0]}x{input_size[1]}|{backend}|{signature}"


def read_cache(path: Path) -> dict:
    """The cached entries; an unreadable or foreign file counts as empty (it is rebuilt, not trusted)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or not isinstance(data.get("entries"), dict):
        return {}
    return data["entries"]


def write_cache_entry(path: Path, key: str, entry: dict) -> None:
    entries = read_cache(path)
    entries[key] = entry
    try:
        atomic_write_json(path, {"version": CACHE_VERSION, "entries": entries}, indent=1)
    except OSError as e:   # a read-only cache must not stop inference: the choice is simply made again
        print(f"frpose: warning: cannot write the precision cache {path} ({e.strerror or e})")


@dataclass
class Selection:
    precision: str
    setup: str
    key: str = ""
    throughput: dict = field(default_factory=dict)    # precision → images/s at TIMING_BATCH
    gates: dict = field(default_factory=dict)         # precision → GateReport.to_dict()
    rejected: dict = field(default_factory=dict)      # precision → reason it was not chosen
    cached: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("cached")
        return d

    def line(self) -> str:
        base = self.throughput.get("fp32")
        gain = (f", {self.throughput[self.precision] / base:.2f}x fp32 at batch {TIMING_BATCH}"
                if base and self.precision in self.throughput and self.precision != "fp32" else "")
        gate = self.gates.get(self.precision)
        gate_txt = f"; gate median {gate['median_px']:.2f} px, p95 {gate['p95_px']:.2f} px" if gate else ""
        why = "; ".join(f"{p}: {r}" for p, r in self.rejected.items())
        return (f"precision auto: {self.precision} ({self.setup}{gain}{gate_txt})"
                + (" [cached choice]" if self.cached else "") + (f"; not chosen: {why}" if why else ""))


def select(candidates: list[str], build, gate, time_all, min_gain: float = MIN_GAIN):
    """The decision itself, on injected parts (tests give fakes): ``build(precision) -> module``,
    ``gate(precision, module) -> GateReport`` and ``time_all({precision: module}) -> {precision: img/s}``.
    A candidate whose build or gate fails is rejected with the error (auto must never stop a run
    that float32 can do).  Returns ``(Selection, the chosen module)``."""
    if not candidates or candidates[0] != "fp32":
        raise ValueError("candidates must start with fp32, the reference")
    modules, gates, rejected = {"fp32": build("fp32")}, {}, {}
    for p in candidates[1:]:
        try:
            module = build(p)
            report = gate(p, module)
        except FrposeError as e:
            rejected[p] = str(e)
            continue
        except Exception as e:  # e.g. a quantizer failing on an unusual graph
            rejected[p] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            continue
        gates[p] = report.to_dict()
        if report.passed:
            modules[p] = module
        else:
            rejected[p] = f"gate: {report.reason}"
    throughput = time_all(modules) if len(modules) > 1 else {}
    best = "fp32"
    for p in modules:
        if p != "fp32" and throughput[p] >= min_gain * throughput["fp32"] and throughput[p] > throughput.get(best, 0):
            best = p
    for p in modules:
        if p not in ("fp32", best):
            rejected[p] = (f"passed the gate but ran {throughput[p] / throughput['fp32']:.2f}x fp32 "
                           f"(needs {min_gain:.2f}x and the fastest)")
    return Selection(best, "", throughput=throughput, gates=gates, rejected=rejected), modules[best]


def time_interleaved(modules: dict, input_size, batch: int = TIMING_BATCH, rounds: int = ROUNDS,
                     memory_formats: dict | None = None) -> dict:
    """Images/s of each module, timed round-robin after one warm-up call each."""
    x = torch.randn(batch, 3, *input_size)
    fmt = memory_formats or {}
    inputs = {p: x.contiguous(memory_format=fmt.get(p, torch.contiguous_format)) for p in modules}
    times = {p: [] for p in modules}
    with torch.inference_mode():
        for p, m in modules.items():
            m(inputs[p])
        for _ in range(rounds):
            for p, m in modules.items():
                start = time.perf_counter()
                m(inputs[p])
                times[p].append(time.perf_counter() - start)
    return {p: batch / statistics.median(t) for p, t in times.items()}


_SAME = object()


def choose(net, card, device, backend, hw, calib_data=None, codec_name=None, log=None, cache_path=None,
           model_key: str | None = None, gate_net=_SAME):
    """``--precision auto`` for the float32 network ``net``: (Selection, prepared module).

    ``gate_net`` is the trained network the gate compares on (default ``net`` itself; ``bench``
    times a random network and gates trained weights of the same card; None rejects every
    reduced precision).  Uses the cached choice when there is one for this model, input size,
    machine and backend."""
    from frpose_cli.runtime.gate import run_gate
    from frpose_cli.runtime.optimize import input_memory_format, prepare_for_inference
    from frpose_cli.runtime.precision import build_setup, candidates, setup_for, unavailable_reason, weights_fingerprint
    device = torch.device(device)
    path = Path(cache_path) if cache_path else cache_file()
    gate_net = net if gate_net is _SAME else gate_net
    model_key = model_key or f"{card.name}@{weights_fingerprint(gate_net if gate_net is not None else net)}"
    key = cache_key(model_key, card.input_size, hw.signature(device), backend)
    cached = read_cache(path).get(key)
    if cached and unavailable_reason(cached.get("precision", ""), device, hw, backend) is None:
        sel = Selection(**{k: cached[k] for k in ("precision", "key", "throughput", "gates", "rejected")},
                        setup=setup_for(cached["precision"], device, backend), cached=True)
        if log:
            log(sel.line())
        return sel, build_setup(net, card, device, sel.setup, calib_data, codec_name=codec_name)
    cands = candidates(device, hw, backend)
    if len(cands) > 1 and log:
        log(f"precision auto: gating and timing {', '.join(cands)} for {card.name} "
            f"{card.input_size[0]}x{card.input_size[1]} on {hw.describe(device)} (once; cached in {path})")
    crops_cache = {}

    def gate_crops_once():
        if "crops" not in crops_cache:
            from frpose_cli.runtime.crops import gate_crops
            crops_cache["crops"] = gate_crops(card, calib_data, codec_name=codec_name)
        return crops_cache["crops"]

    def build(p):
        if p != "fp32" and gate_net is None:   # nothing to gate with: do not spend time building it
            raise FrposeError("not gated: no trained weights for this card (docs/deployment.md says how to build them)")
        ids = gate_crops_once().ann_ids if p == "int8" else ()
        return build_setup(net, card, device, setup_for(p, device, backend), calib_data, ids, codec_name)

    reference = prepare_for_inference(gate_net, device, "eager") if len(cands) > 1 and gate_net is not None else None

    def gate(p, module):
        from frpose_cli.runtime.precision import wrap
        setup = setup_for(p, device, backend)
        if gate_net is not net:
            module = build_setup(gate_net, card, device, setup, calib_data, gate_crops_once().ann_ids, codec_name)
        return run_gate(reference, wrap(module, setup, card, codec_name), card, gate_crops_once(), precision=p,
                        codec_name=codec_name)

    formats = {p: input_memory_format(setup_for(p, device, backend)) for p in cands}
    sel, module = select(cands, build, gate,
                         lambda mods: time_interleaved(mods, card.input_size, memory_formats=formats))
    sel.setup, sel.key = setup_for(sel.precision, device, backend), key
    if gate_net is not None:   # without a gated network nothing was decided: nothing to remember
        write_cache_entry(path, key, {**sel.to_dict(), "machine": hw.describe(device),
                                      "when": time.strftime("%Y-%m-%dT%H:%M:%S")})
    if log:
        log(sel.line())
    return sel, module


def runnable_model(net: torch.nn.Module, card, device, precision: str | None = None, backend: str = "auto",
                   codec_name: str | None = None, source: str = "", calib_data=None, log=None, hw=None):
    """The float32 network ``net`` (eval mode, any device) → a runnable PoseModel in ``precision``
    (None: :func:`default_precision`).  ``auto`` runs :func:`choose`."""
    from frpose_cli.runtime.hardware import detect
    from frpose_cli.runtime.precision import BACKENDS, build_setup, check_precision, default_precision, setup_for, \
        unavailable_reason, wrap
    device = torch.device(device)
    precision = check_precision(precision or default_precision(device))
    if backend not in BACKENDS:
        raise FrposeError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    hw = hw or detect(device)
    if precision == "auto":
        selection, module = choose(net, card, device, backend, hw, calib_data=calib_data, codec_name=codec_name,
                                   log=log)
        model = wrap(module, selection.setup, card, codec_name, source)
        model.selection = selection
        return model
    reason = unavailable_reason(precision, device, hw, backend)
    if reason:
        raise FrposeError(f"--precision {precision}: {reason}")
    setup = setup_for(precision, device, backend)
    return wrap(build_setup(net, card, device, setup, calib_data, codec_name=codec_name), setup, card,
                codec_name, source)
