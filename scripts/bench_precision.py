"""Precision benchmark (not a test): fp32 / bf16 / int8 latency at batch 1 and 8 for frpose-r34 and
sbn-r152 at 256x192 on this machine, against the measured ceilings, with the accuracy gate on
trained weights; writes docs/benchmarks.json and renders docs/benchmarks.md from it.

    python scripts/bench_precision.py --data ../shared/data/coco-mini --build-gate-weights
    python scripts/bench_precision.py --speed-only           # timings and ceilings, one run for both models
    python scripts/bench_precision.py --gate-only            # the gate, into the same JSON
    python scripts/bench_precision.py --render-only          # docs/benchmarks.md from the JSON

Trained weights for the gate are the approach of scripts/learnability.py: each card fitted on
the first 16 people of DATA's train split (60 epochs, batch 8, no augmentation, random
initialisation), cached in the user cache folder (frpose_cli.precision.gate.gate_weights_path), never in
the repository.  The gate runs on those fitted people (where the network is trained; on
people it never saw a 16-person network has flat heatmaps that say nothing about precision),
and int8 calibrates on the vendored train crops minus any gated person.  Set-ups are timed
round-robin (round r runs each set-up once at each batch) so a shared machine slows them
alike, and each is reported by its best round (the median is kept in the JSON): other jobs
only ever add time, and torch's two-thread parallel regions stall badly when another process
holds a core, so the best round is the one closest to the machine's own speed.  The ratios are
the figures to compare; the milliseconds belong to this machine.  Speed
does not depend on the weights, so both models are timed in one run with random weights (int8
calibrated on real crops, as always); the gate, which needs trained weights, can run later
into the same JSON.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.helpers import randomised  # noqa: E402  (the one helper: values do not change speed)
from frpose_cli.precision.autoselect import MIN_GAIN  # noqa: E402
from frpose_cli.deploy.bench import count_macs  # noqa: E402
from frpose_cli.cards import load_card  # noqa: E402
from frpose_cli.deploy.ceiling import measure_ceiling, raise_ceiling  # noqa: E402
from frpose_cli.precision.crops import calibration_crops, person_crops  # noqa: E402
from frpose_cli.precision.gate import THRESHOLDS, gate_setup, gate_weights_path, load_gate_network  # noqa: E402
from frpose_cli.hardware import detect  # noqa: E402
from frpose_cli.runtime.optimize import SETUP_PRECISION, input_memory_format, prepare_for_inference  # noqa: E402
from frpose_cli.precision.formats import unavailable_reason  # noqa: E402

MODELS = ("frpose-r34", "sbn-r152")
JSON = ROOT / "docs" / "benchmarks.json"
MD = ROOT / "docs" / "benchmarks.md"


def gate_network(card, data, build: bool, epochs: int, people: int):
    net, where = load_gate_network(card)
    if net is None and build:
        sys.path.insert(0, str(ROOT / "scripts"))
        from learnability import fit
        print(f"fitting gate weights for {card.name}: {where}", flush=True)
        fit(data, card.name, f"{card.input_size[0]}x{card.input_size[1]}", epochs, people, 8, 0,
            out=gate_weights_path(card).parent)
        net, where = load_gate_network(card)
    return net, where


def fitted_people(card, data):
    """The people the gate weights were fitted on (their run folder keeps the subset file)."""
    subset = gate_weights_path(card).parent / "train_subset.json"
    return person_crops(card, subset, Path(data) / "train2017", limit=None)


def time_rounds(models: dict, card, batches, rounds: int) -> dict:
    inputs = {b: torch.randn(b, 3, *card.input_size) for b in batches}
    times = {(s, b): [] for s in models for b in batches}
    with torch.inference_mode():
        for s, m in models.items():          # warm-up: kernel choice, ONNX Runtime arenas
            for b in batches:
                m(inputs[b].contiguous(memory_format=input_memory_format(s)))
        for r in range(rounds):
            for s, m in models.items():
                for b in batches:
                    x = inputs[b].contiguous(memory_format=input_memory_format(s))
                    start = time.perf_counter()
                    m(x)
                    times[(s, b)].append(time.perf_counter() - start)
            print(f"  round {r + 1}/{rounds}", flush=True)
    return {k: (min(v), statistics.median(v)) for k, v in times.items()}


def speed_model(card, setups, calib, ceilings, rounds, batches):
    torch.manual_seed(0)
    net = randomised(card.build_model())
    macs = count_macs(net, card.input_size)
    models = {s: prepare_for_inference(net, torch.device("cpu"), s, calib.inputs if s == "int8" else None)
              for s in setups}
    timed = time_rounds(models, card, batches, rounds)
    best = {k: v[0] for k, v in timed.items()}
    rows = []
    for s in setups:
        p = SETUP_PRECISION[s]
        row = {"setup": s, "precision": p}
        for b in batches:
            gflops = 2 * macs * b / best[(s, b)] / 1e9
            row[f"b{b}"] = {"ms": best[(s, b)] * 1e3, "median_ms": timed[(s, b)][1] * 1e3,
                            "vs_eager": best[("eager", b)] / best[(s, b)], "gflops_per_s": gflops,
                            "ceiling_gflops": ceilings[p].gflops, "pct_ceiling": 100 * gflops / ceilings[p].gflops}
        rows.append(row)
    return {"model": card.name, "input_size": list(card.input_size), "gmacs": macs / 1e9, "rows": rows,
            "calibration_crops": calib.describe()}


def auto_choice(entry, batch: int) -> str:
    """What `--precision auto` picks from these measurements (the rule of frpose_cli.precision.autoselect)."""
    rows = {r["setup"]: r for r in entry["rows"]}
    base = rows["onnxruntime"] if "onnxruntime" in rows else rows["fused"]
    best = base
    for r in rows.values():
        if r["precision"] != "fp32" and r.get("gate", {}).get("passed") and \
                r[f"b{batch}"]["ms"] * MIN_GAIN <= base[f"b{batch}"]["ms"] and r[f"b{batch}"]["ms"] < best[f"b{batch}"]["ms"]:
            best = r
    return best["setup"]


def measure_speed(args) -> dict:
    torch.set_num_threads(args.threads)
    hw = detect("cpu")
    setups = ["eager", "fused", "onnxruntime"]
    skipped = {}
    for s in ("bf16", "int8"):
        reason = unavailable_reason(SETUP_PRECISION[s], "cpu", hw)
        if reason is None:
            setups.append(s)
        else:
            skipped[s] = reason
    print(f"{hw.describe('cpu')}: set-ups {', '.join(setups)}", flush=True)
    ceilings = {p: measure_ceiling("cpu", p, hw) for p in dict.fromkeys(SETUP_PRECISION[s] for s in setups)}
    out = {"machine": hw.describe("cpu"), "isa": hw.cpu.isa, "cpu_model": hw.cpu.model, "family": hw.cpu.family,
           "model_number": hw.cpu.model_number, "signature": hw.signature("cpu"), "threads": args.threads,
           "date": time.strftime("%Y-%m-%d"), "rounds": args.rounds, "skipped": skipped, "models": [],
           "command": "python scripts/bench_precision.py " + " ".join(sys.argv[1:]), "thresholds": THRESHOLDS}
    for name in MODELS:
        card = load_card(name, (256, 192))
        print(f"timing {name}", flush=True)
        out["models"].append(speed_model(card, setups, calibration_crops(card), ceilings, args.rounds, (1, 8)))
    for p, c in ceilings.items():     # a model faster than the ceiling: measure the ceiling again
        fastest = max(r["b8"]["gflops_per_s"] for m in out["models"] for r in m["rows"] if r["precision"] == p)
        if fastest > c.gflops:
            ceilings[p] = raise_ceiling(c, fastest, hw)
            for m in out["models"]:
                for r in m["rows"]:
                    for b in (1, 8):
                        if r["precision"] == p:
                            r[f"b{b}"]["ceiling_gflops"] = ceilings[p].gflops
                            r[f"b{b}"]["pct_ceiling"] = 100 * r[f"b{b}"]["gflops_per_s"] / ceilings[p].gflops
    out["ceilings"] = {p: dict(c.to_dict(), method=c.method()) for p, c in ceilings.items()}
    return out


def measure_gate(args, data: dict) -> dict:
    """The gate of every reduced-precision row, on each model's trained weights and fitted people."""
    torch.set_num_threads(args.threads)
    for entry in data["models"]:
        if args.models and entry["model"] not in args.models:
            continue
        card = load_card(entry["model"], tuple(entry["input_size"]))
        net, where = gate_network(card, args.data, args.build_gate_weights, args.epochs, args.people)
        if net is None:
            print(f"{card.name}: not gated: {where} (--build-gate-weights fits them)", flush=True)
            entry.update(gate_weights=None, gate_note=where)
            continue
        crops = fitted_people(card, args.data)
        ap = None
        for row in entry["rows"]:
            if row["precision"] != "fp32":
                print(f"gating {card.name} {row['setup']} on {crops.describe()}", flush=True)
                row["gate"] = gate_setup(card, row["setup"], net, "cpu", crops=crops).to_dict()
                ap = row["gate"]["ap_reference"]
        calib = calibration_crops(card, exclude_ids=crops.ann_ids)
        entry.update(gate_weights=where, gate_crops=crops.describe(), gate_fp32_ap=ap,
                     gate_calibration_crops=calib.describe(), gate_date=time.strftime("%Y-%m-%d"),
                     gate_command=f"python scripts/bench_precision.py {' '.join(sys.argv[1:])}",
                     auto_choice_b8=auto_choice(entry, 8))
    return data


def carry_gate(old: dict, new: dict) -> dict:
    """Keep the gate figures of an earlier run (they do not depend on speed) in a new speed run."""
    models = {m["model"]: m for m in old.get("models", [])}
    for entry in new["models"]:
        prev = models.get(entry["model"])
        if not prev or not prev.get("gate_weights"):
            continue
        entry.update({k: v for k, v in prev.items() if k.startswith("gate_")})
        gates = {r["setup"]: r["gate"] for r in prev["rows"] if "gate" in r}
        for row in entry["rows"]:
            if row["setup"] in gates:
                row["gate"] = gates[row["setup"]]
        entry["auto_choice_b8"] = auto_choice(entry, 8)
    return new


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "coco-mini"))
    p.add_argument("--build-gate-weights", action="store_true", help="fit missing gate weights (learnability.py)")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--people", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--speed-only", action="store_true", help="time and measure ceilings; keep no gate figures")
    p.add_argument("--gate-only", action="store_true", help="gate the rows of the existing JSON")
    p.add_argument("--render-only", action="store_true", help="re-render docs/benchmarks.md from the JSON")
    p.add_argument("--models", nargs="+", choices=MODELS, help="--gate-only: gate only these")
    args = p.parse_args()
    if not args.render_only:
        data = json.loads(JSON.read_text()) if args.gate_only else measure_speed(args)
        if args.speed_only and JSON.is_file():
            data = carry_gate(json.loads(JSON.read_text()), data)
        if not args.speed_only:
            data = measure_gate(args, data)
        JSON.write_text(json.dumps(data, indent=1) + "\n")
        print(f"wrote {JSON}")
    from render_benchmarks import load_table2, render
    MD.write_text(render(json.loads(JSON.read_text()), load_table2()))
    print(f"wrote {MD}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "scripts"))
    main()
