"""``--precision auto``: gate and time the candidate precisions once, cache what was gated, use the fastest.

Once per (model, input size, machine signature, backend, calibration source):

1. the candidates are the precisions native here (:func:`frpose_cli.precision.formats.candidates`:
   never bf16 on a CPU without AVX512-BF16/AMX), and with ``--backend auto`` on a CPU where openvino
   is installed the ``openvino`` and ``openvino_bf16`` set-ups; without any real person crops (an
   installed wheel, no ``--calib-data``) only the float32 reference runs, and the line says so;
2. every candidate but the float32 reference is built and passes the accuracy gate
   (:mod:`frpose_cli.precision.gate`) against float32 on real crops, or is rejected with the reason;
3. float32 and the survivors are timed round-robin (``ROUNDS`` rounds at batch
   ``TIMING_BATCH``, so a noisy machine slows them alike) and the fastest is chosen — a
   candidate other than the reference only if it is at least ``MIN_GAIN`` × its throughput, a margin
   above the run-to-run noise of a shared machine;
4. the choice, every throughput, gate figure and reason goes to ``precision.json`` in the
   user cache folder (written atomically); a chosen int8 model is stored beside it
   (``precision-<hash of the key>.int8.onnx``, its sha256 in the entry), so later runs load the
   very model that was gated instead of quantizing again from whatever crops they have.

"Model" is the card name plus a hash of the network's tensors (the gate's verdict belongs to
the trained weights), "backend" is ``--backend`` (auto, torch, onnxruntime, openvino: each decides
among its own candidates), "machine signature" is :meth:`frpose_cli.hardware.Hardware.signature`
(CPU model, ISA flags, threads, torch, ONNX Runtime and, where installed, OpenVINO versions),
"calibration source" is
:func:`frpose_cli.precision.cache.calibration_source` (the crop roots and their annotation files).  A run with
``--calib-data`` uses the entry of its own source (or decides); a run without it uses the newest
entry for the model, size, machine and backend, whichever source gated it — so a plain run after
a ``--calib-data`` run runs what that run gated, even where no crops exist.  A stored model that
is missing or corrupt is gated again where crops exist, else the run falls back to float32.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from frpose_cli.errors import FrposeError, warn
from frpose_cli.precision.cache import (cache_file, cache_key, calibration_source, find_entry, load_artefact, read_cache,
                                        store_artefact, write_cache_entry)

MIN_GAIN = 1.10
TIMING_BATCH = 8
ROUNDS = 3
UNDECIDED = ("not decided yet for these weights on this machine (deciding costs 15-60 s, more than a "
             "short run saves): it is made before runs of 100+ images, with --precision auto, or once by "
             "`frpose bench MODEL --weights W --precision auto`; later runs use it")
NO_CROPS = ("no real person crops to calibrate and gate on (an installed wheel ships none): "
            "give --calib-data COCO_ROOT")


@dataclass
class Selection:
    """What ``auto`` chose.  Candidates are named as :func:`frpose_cli.precision.formats.candidates`
    names them: a precision (on its set-up) or an OpenVINO set-up; ``candidate`` is the chosen one
    ("" in entries written before OpenVINO: the precision)."""
    precision: str
    setup: str
    key: str = ""
    throughput: dict = field(default_factory=dict)    # candidate → images/s at TIMING_BATCH
    gates: dict = field(default_factory=dict)         # candidate → GateReport.to_dict()
    rejected: dict = field(default_factory=dict)      # candidate → reason it was not chosen
    cached: bool = False
    candidate: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("cached")
        return d

    def line(self) -> str:
        base, chosen = self.throughput.get("fp32"), self.candidate or self.precision
        gain = (f", {self.throughput[chosen] / base:.2f}x the fp32 reference at batch {TIMING_BATCH}"
                if base and chosen in self.throughput and chosen != "fp32" else "")
        gate = self.gates.get(chosen)
        gate_txt = f"; gate median {gate['median_px']:.2f} px, p95 {gate['p95_px']:.2f} px" if gate else ""
        grouped: dict = {}   # precisions rejected for the same reason are named together
        for p, r in self.rejected.items():
            grouped.setdefault(r, []).append(p)
        why = "; ".join(f"{', '.join(ps)}: {r}" for r, ps in grouped.items())
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
    best = "fp32"   # the reference; any other candidate must beat it by min_gain
    for p in modules:
        if p != "fp32" and throughput[p] >= min_gain * throughput["fp32"] and throughput[p] > throughput.get(best, 0):
            best = p
    for p in modules:
        if p not in ("fp32", best):
            rejected[p] = (f"passed the gate but ran {throughput[p] / throughput['fp32']:.2f}x fp32 "
                           f"(needs {min_gain:.2f}x and the fastest)")
    return Selection(best, "", throughput=throughput, gates=gates, rejected=rejected, candidate=best), modules[best]


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


def _reuse(entry, path, net, gate_net, card, device, backend, calib_data, codec_name, roots):
    """A cached entry → (Selection, module, say its line), or None to decide again.  An int8 entry
    runs its stored model; when that is unusable and no crops are here to gate another, float32."""
    from frpose_cli.precision.formats import build_setup, candidate_setup, setup_for
    candidate = entry.get("candidate") or entry["precision"]
    sel = Selection(**{k: entry[k] for k in ("precision", "key", "throughput", "gates", "rejected")},
                    setup=candidate_setup(candidate, device, backend), cached=True, candidate=candidate)
    if sel.setup != "int8":
        return sel, build_setup(net, card, device, sel.setup, codec_name=codec_name), True
    if gate_net is not net:   # bench times another network than the gated one: calibrate that one
        return sel, build_setup(net, card, device, "int8", calib_data, codec_name=codec_name), True
    from frpose_cli.runtime.quantize import int8_net_from_bytes
    data, why = load_artefact(path, entry)
    if data is not None:
        try:
            return sel, int8_net_from_bytes(data), True
        except FrposeError as e:
            why = f"the gated int8 model cannot be loaded: {e}"
    if roots:
        warn(f"precision auto: {why}; gating again")
        return None
    warn(f"precision auto: {why} and no real person crops are here to gate another "
         "(give --calib-data COCO_ROOT): running fp32")
    fp32 = setup_for("fp32", device, backend)
    return (Selection("fp32", fp32, key=sel.key, rejected={"int8": why}, cached=True),
            build_setup(net, card, device, fp32, codec_name=codec_name), False)


def choose(net, card, device, backend, hw, calib_data=None, codec_name=None, log=None, cache_path=None,
           model_key: str | None = None, gate_net=_SAME, decide: bool = True):
    """``--precision auto`` for the float32 network ``net``: (Selection, prepared module).

    ``gate_net`` is the trained network the gate compares on (default ``net`` itself; ``bench``
    times a random network and gates trained weights of the same card; None rejects every
    reduced precision).  Uses the cached entry (module docstring says which) when there is one;
    without one, ``decide=False`` runs float32 and says how the choice is made (a short run that
    would spend longer choosing than the choice saves: :data:`UNDECIDED`)."""
    from frpose_cli.precision.gate import run_gate
    from frpose_cli.runtime.optimize import SETUP_TABLE, input_memory_format, prepare_for_inference
    from frpose_cli.precision.formats import build_setup, candidate_reason, candidate_setup, candidates, \
        setup_for, weights_fingerprint, wrap
    device = torch.device(device)
    path = Path(cache_path) if cache_path else cache_file()
    gate_net = net if gate_net is _SAME else gate_net
    model_key = model_key or f"{card.name}@{weights_fingerprint(gate_net if gate_net is not None else net)}"
    source, roots = calibration_source(calib_data)
    base = cache_key(model_key, card.input_size, hw.signature(device), backend)
    key = cache_key(model_key, card.input_size, hw.signature(device), backend, source)
    cached = find_entry(read_cache(path), base, key if calib_data else None)
    # an entry whose choice cannot run here now (openvino uninstalled, say) is decided again
    if cached and candidate_reason(cached.get("candidate") or cached.get("precision", ""), device, hw, backend) is None:
        reused = _reuse(cached, path, net, gate_net, card, device, backend, calib_data, codec_name, roots)
        if reused is not None:
            sel, module, say = reused
            if log and say:
                log(sel.line())
            return sel, module
    cands = candidates(device, hw, backend)
    if not decide and len(cands) > 1 and roots:
        sel = Selection("fp32", setup_for("fp32", device, backend), key=key,
                        rejected=dict.fromkeys(cands[1:], UNDECIDED))
        if log:
            log(sel.line())
        return sel, build_setup(net, card, device, sel.setup, codec_name=codec_name)
    if len(cands) > 1 and roots and log:
        log(f"precision auto: gating and timing {', '.join(cands)} for {card.name} "
            f"{card.input_size[0]}x{card.input_size[1]} on {hw.describe(device)} (once; cached in {path})")
    crops_cache, gated = {}, {}   # the crops are cut once; `gated`: the module each precision's gate ran

    def crops(kind):
        if kind not in crops_cache:
            from frpose_cli.precision.crops import calibration_crops, gate_crops
            crops_cache[kind] = (gate_crops(card, calib_data, codec_name=codec_name) if kind == "gate" else
                                 calibration_crops(card, calib_data, exclude_ids=crops("gate").ann_ids,
                                                   codec_name=codec_name))
        return crops_cache[kind]

    def build_for(network, p):
        setup = candidate_setup(p, device, backend)
        if setup == "int8":   # calibrated on people other than the gate's
            return prepare_for_inference(network, device, "int8", crops("calibration").inputs)
        return build_setup(network, card, device, setup, codec_name=codec_name)

    def build(p):
        if p != "fp32" and gate_net is None:   # nothing to gate with: do not spend time building it
            raise FrposeError("not gated: no trained weights for this card (docs/deployment.md says how to build them)")
        if p != "fp32" and not roots:
            raise FrposeError(f"not tried: {NO_CROPS}")
        return build_for(net, p)

    reference = (prepare_for_inference(gate_net, device, "eager")
                 if len(cands) > 1 and roots and gate_net is not None else None)

    def gate(p, module):
        gated[p] = module if gate_net is net else build_for(gate_net, p)
        return run_gate(reference, wrap(gated[p], candidate_setup(p, device, backend), card, codec_name), card,
                        crops("gate"), precision=p, codec_name=codec_name)

    formats = {p: input_memory_format(candidate_setup(p, device, backend)) for p in cands}
    sel, module = select(cands, build, gate,
                         lambda mods: time_interleaved(mods, card.input_size, memory_formats=formats))
    sel.setup, sel.key = candidate_setup(sel.candidate, device, backend), key
    sel.precision = SETUP_TABLE[sel.setup].precision
    if gate_net is not None:   # without a gated network nothing was decided: nothing to remember
        entry = {**sel.to_dict(), "base": base, "machine": hw.describe(device),
                 "calibration": {"source": source, "roots": [str(r) for r in roots],
                                 **{f"{k}_crops": c.describe() for k, c in crops_cache.items()}},
                 "when": time.strftime("%Y-%m-%dT%H:%M:%S")}
        keep = True
        if sel.setup == "int8":   # remember the gated model itself, or nothing (it is gated again)
            data = getattr(gated.get("int8"), "onnx_bytes", None)
            entry["artefact"] = store_artefact(path, key, data) if data is not None else None
            keep = entry["artefact"] is not None
        if keep:
            write_cache_entry(path, key, entry)
    if log:
        log(sel.line())
    return sel, module


