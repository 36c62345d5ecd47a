"""How fast `frpose predict` starts on one photo: a checkpoint (`.pt`) against the same network's
exported `.onnx`, and `frpose --help`.

    python scripts/bench_start.py [--model frpose-r34] [--rounds 3] [--json docs/start_benchmarks.json]

Each row is the wall time of a fresh process, as a user's shell or script pays it:
``frpose predict IMG --weights W --detector whole-image --no-vis``.  The `.pt` runs twice per
round: first with an empty frpose cache (``FRPOSE_HOME``: the ONNX Runtime graph is exported and
kept, runtime/export_cache.py), then with the graph kept; the `.onnx` beside them.  Rounds
alternate the rows so machine noise falls on all; the medians and their ratios are printed with
the machine's ISA.  Random weights: start-up does not depend on their values.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
IMAGE = ROOT / "tests" / "data" / "coco" / "val2017"


def wall(args, env) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "frpose_cli", *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="frpose-r34")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    a = parser.parse_args()
    from frpose_cli.cards import load_card
    from frpose_cli.hardware import detect
    from frpose_cli.weights.checkpoint import save_checkpoint
    image = sorted(IMAGE.glob("*.jpg"))[0]
    work = Path(tempfile.mkdtemp(prefix="frpose-start-"))
    try:
        card = load_card(a.model)
        torch.manual_seed(0)
        pt = save_checkpoint(work / "best.pt", card.build_model(), card)
        env = {**os.environ, "FRPOSE_HOME": str(work / "home"), "FRPOSE_OFFLINE": "1"}
        wall(["export", a.model, "-w", str(pt), "-o", str(work / "best.onnx")], env)
        rows = {"help": [], "onnx": [], "pt_first": [], "pt_again": []}
        for r in range(a.rounds):
            def predict(weights, name):
                return wall(["predict", str(image), "-w", str(weights), "--detector", "whole-image", "--no-vis",
                             "--no-progress", "--out", str(work / f"out-{name}-{r}")], env)
            rows["help"].append(wall(["--help"], env))
            rows["onnx"].append(predict(work / "best.onnx", "onnx"))
            shutil.rmtree(work / "home" / "onnx", ignore_errors=True)   # an empty graph cache
            rows["pt_first"].append(predict(pt, "first"))
            rows["pt_again"].append(predict(pt, "again"))
        med = {k: statistics.median(v) for k, v in rows.items()}
        report = {"model": a.model, "input_size": list(card.input_size), "rounds": a.rounds,
                  "machine": detect("cpu").describe(), "wall_s": rows, "median_s": med,
                  "pt_first_over_onnx": med["pt_first"] / med["onnx"],
                  "pt_again_over_onnx": med["pt_again"] / med["onnx"]}
        print(f"machine: {report['machine']}")
        for k, v in med.items():
            print(f"{k:10s} {v:6.2f} s (median of {a.rounds})")
        print(f".pt first run / .onnx: {report['pt_first_over_onnx']:.2f}×; .pt again / .onnx: "
              f"{report['pt_again_over_onnx']:.2f}×")
        if a.json:
            a.json.write_text(json.dumps(report, indent=1) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
