"""Streaming check: many tiny generated images through `frpose predict --detector whole-image`,
with the peak memory of the run (not a timed test: memory must stay flat as the count grows).

    python scripts/bench_streaming.py --counts 10000 100000

For each count, the script writes that many small JPEGs (random colour blocks, 32×24 pixels,
1,000 per folder, as frame dumps usually are), then runs the real CLI in a child process on the
folder with a randomly initialised pose model (sbn-r18 at a tiny input size; the values of the
weights do not change what is held in memory) and samples the resident memory (VmRSS) of the
child and of its DataLoader workers every 0.2 s.  Printed per count: images/s, the peak RSS of
the main process, the peak of the sum over the process tree, and the kernel's own max RSS of
the largest process.  Bounded memory means these peaks do not grow with the count.

``--json FILE`` saves the figures with the machine's CPU and ISA.  Generated files go to a
temporary folder (``--workdir`` to choose it) and are deleted afterwards.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from frpose_cli.cards import load_card, parse_input_size   # noqa: E402
from frpose_cli.weights.checkpoint import save_checkpoint           # noqa: E402
from frpose_cli.hardware import detect_cpu                  # noqa: E402


def write_images(folder: Path, count: int, per_folder: int = 1000, seed: int = 0) -> None:
    """``count`` distinct 32×24 JPEGs: coloured blocks (8×6 random colours, scaled up)."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        sub = folder / f"d{i // per_folder:04d}"
        if i % per_folder == 0:
            sub.mkdir(parents=True, exist_ok=True)
        blocks = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        img = cv2.resize(blocks, (32, 24), interpolation=cv2.INTER_NEAREST)
        ok, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        (sub / f"{i:07d}.jpg").write_bytes(data.tobytes())


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants (DataLoader workers), from /proc."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return pids


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_predict(folder: Path, ckpt: Path, out: Path, args) -> dict:
    cmd = [sys.executable, "-m", "frpose_cli", "predict", str(folder), "-w", str(ckpt), "--detector", "whole-image",
           "--out", str(out), "--no-vis", "--no-progress", "--no-flip", "--backend", "torch",
           "--batch-size", str(args.batch_size), "--workers", str(args.workers)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    peak_main = peak_tree = 0
    samples = []
    while proc.poll() is None:
        pids = tree_pids(proc.pid)
        main, tree = rss_kb(proc.pid), sum(rss_kb(p) for p in pids)
        peak_main, peak_tree = max(peak_main, main), max(peak_tree, tree)
        samples.append((round(time.perf_counter() - start, 1), main))
        time.sleep(0.2)
    stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"predict failed ({proc.returncode}):\n{stderr[-3000:]}")
    images = len(json.loads((out / "images.json").read_text())["images"])
    # RSS at 10%, 50% and 90% of the run: flat when nothing accumulates
    marks = {f"{q}%": next((m for t, m in samples if t >= seconds * q / 100), samples[-1][1] if samples else 0)
             for q in (10, 50, 90)}
    return {"images": images, "seconds": round(seconds, 1), "images_per_s": round(images / seconds, 1),
            "peak_rss_main_mb": round(peak_main / 1024, 1), "peak_rss_tree_mb": round(peak_tree / 1024, 1),
            "rss_main_mb_at": {k: round(v / 1024, 1) for k, v in marks.items()},
            "summary": stdout.strip().splitlines()[:3]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--counts", type=int, nargs="+", default=[10000, 100000])
    p.add_argument("--input-size", default="64x32", help="the pose model's HxW (multiples of 32)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the run")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    cpu = detect_cpu()
    print(f"CPU: {cpu.describe()}; torch {torch.__version__}; {args.threads} thread(s), {args.workers} worker(s)")
    work = Path(tempfile.mkdtemp(prefix="frpose-stream-", dir=args.workdir))
    rows = []
    try:
        card = load_card("sbn-r18", parse_input_size(args.input_size))
        torch.manual_seed(0)
        ckpt = save_checkpoint(work / "sbn-r18.pt", card.build_model(), card)
        for count in args.counts:
            folder = work / f"imgs{count}"
            t0 = time.perf_counter()
            write_images(folder, count)
            print(f"{count} images written in {time.perf_counter() - t0:.0f} s")
            row = {"count": count, **run_predict(folder, ckpt, work / f"run{count}", args)}
            rows.append(row)
            print(f"{count:>7} images: {row['images_per_s']} images/s, peak RSS main {row['peak_rss_main_mb']} MB, "
                  f"process tree {row['peak_rss_tree_mb']} MB; main RSS at 10/50/90% of the run "
                  f"{'/'.join(str(v) for v in row['rss_main_mb_at'].values())} MB")
            shutil.rmtree(folder)
            shutil.rmtree(work / f"run{count}")
        kernel_max = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"kernel max RSS of the largest child over all runs: {kernel_max:.1f} MB")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu.describe(), "torch": torch.__version__, "threads": args.threads,
                                         "workers": args.workers, "input_size": args.input_size,
                                         "batch_size": args.batch_size, "runs": rows}, indent=1))


if __name__ == "__main__":
    main()
