"""CPU inference paths side by side, interleaved so a shared, noisy machine hits them alike.

For one card and size: every float32 set-up (eager, channels_last, folded, fused, compile,
onnxruntime, openvino where installed; bf16 where the CPU has it natively, or by name) is timed round-robin — round r
runs each set-up once at each batch — and the medians are reported as ratios to eager and as
a share of the float32 matmul peak, which is measured in the same rounds.  (int8 and the
precision comparison with trained weights: scripts/bench_precision.py.)  Then each set-up's decoded keypoints on the vendored real
images (ground-truth boxes, flip test) are compared with eager's: a set-up is "correct"
when no keypoint moves 0.5 px or more.

    python scripts/bench_cpu_paths.py --model frpose-r34 --input-size 256x192 --threads 2 --rounds 5

Untrained weights are used (with random BN statistics and head, so heatmaps have distinct
peaks); speed does not depend on the values, the drift check is a proxy for a trained model.
"""
from __future__ import annotations

import argparse
import sys
import json
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from frpose_cli.deploy.bench import count_macs
from frpose_cli.cards import load_card, parse_input_size
from frpose_cli.data.codecs import codec_for_card
from frpose_cli.data.geometry import box_to_center_scale, crop_image
from frpose_cli.data.normalize import crops_to_input
from frpose_cli.runtime.topdown import decode_to_image, run_heatmaps
from frpose_cli.hardware import detect
from frpose_cli.runtime import ovrt
from frpose_cli.runtime.optimize import SETUP_PRECISION, SETUP_TABLE, SETUPS, input_memory_format, prepare_for_inference
from frpose_cli.load import PoseModel

ROOT = Path(__file__).resolve().parent.parent / "tests" / "data" / "coco"
sys.path.insert(0, str(ROOT.parent.parent))   # tests/: the one randomised() helper
from helpers import randomised  # noqa: E402


def real_crops(card):
    """Normalised crops of every annotated person in the vendored val images, with centres/scales."""
    ann = json.loads((ROOT / "annotations" / "person_keypoints_val2017.json").read_text())
    files = {im["id"]: im["file_name"] for im in ann["images"]}
    h, w = card.input_size
    crops, centers, scales = [], [], []
    for a in ann["annotations"]:
        path = ROOT / "val2017" / files[a["image_id"]]
        if a.get("num_keypoints", 0) == 0 or not path.is_file():
            continue
        image = cv2.imread(str(path))[:, :, ::-1]
        c, s = box_to_center_scale(a["bbox"], w / h)
        crops.append(crop_image(image, c, s, 0, (w, h)))
        centers.append(c)
        scales.append(s)
    return crops_to_input(torch.from_numpy(np.stack(crops)), card.normalize), np.array(centers), np.array(scales)


def build(setup, net, card):
    return PoseModel(prepare_for_inference(net, torch.device("cpu"), setup), card, None,
                     SETUP_TABLE[setup].backend, setup)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="frpose-r34")
    p.add_argument("--input-size", default="256x192")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--rounds", type=int, default=5)
    hw = detect("cpu")
    fp32 = [s for s in SETUPS if SETUP_PRECISION[s] == "fp32" and (SETUP_TABLE[s].backend != "openvino"
                                                                   or ovrt.available())]
    fp32 += ["bf16"] if hw.cpu.native_bf16 else []
    p.add_argument("--setups", nargs="+", default=fp32, help="eager first: ratios are to it")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    card = load_card(args.model, parse_input_size(args.input_size))
    torch.manual_seed(0)
    net = randomised(card.build_model())
    macs = count_macs(net, card.input_size)
    setups = list(args.setups)
    print(f"{card.name} {args.input_size}, {args.threads} threads, {macs / 1e9:.2f} GMACs; "
          f"{hw.describe('cpu')}", flush=True)

    models = {s: build(s, net, card) for s in setups}
    inputs = {b: torch.randn(b, 3, *card.input_size) for b in args.batches}
    a, bmat = torch.randn(2048, 2048), torch.randn(2048, 2048)
    times = {(s, b): [] for s in setups for b in args.batches}
    peak_times = []
    with torch.inference_mode():
        for s in setups:   # warm-up (torch.compile compiles here, once per batch size)
            start = time.perf_counter()
            for b in args.batches:
                models[s](inputs[b])
            print(f"warm-up {s}: {time.perf_counter() - start:.1f} s", flush=True)
        for r in range(args.rounds):
            for s in setups:
                for b in args.batches:
                    x = inputs[b].contiguous(memory_format=input_memory_format(s))
                    start = time.perf_counter()
                    models[s](x)
                    times[(s, b)].append(time.perf_counter() - start)
            start = time.perf_counter()
            torch.mm(a, bmat)
            peak_times.append(time.perf_counter() - start)
            print(f"round {r + 1}/{args.rounds} done", flush=True)
    peak = 2 * 2048 ** 3 / min(peak_times) / 1e9

    crops, centers, scales = real_crops(card)
    codec = codec_for_card(card)
    flip_index = card.keypoints.flip_index()
    kpts = {}
    for s in setups:
        heat = run_heatmaps(models[s], crops, flip=True, flip_index=flip_index, codec=codec)
        kpts[s] = decode_to_image(codec, heat, centers, scales)[0]

    rows = []
    print(f"\nfloat32 matmul peak {peak:.0f} GFLOP/s (2048³, best of {args.rounds}); "
          f"drift: max keypoint move vs eager over {len(crops)} real person crops (image px)")
    print(f"{'set-up':14s}" + "".join(f"{f'b{b} ms':>10s}{'×eager':>8s}{'%peak':>7s}" for b in args.batches)
          + f"{'drift px':>10s}")
    eager = {b: statistics.median(times[(setups[0], b)]) for b in args.batches}
    for s in setups:
        drift = float(np.linalg.norm(kpts[s] - kpts[setups[0]], axis=-1).max())
        row = {"setup": s, "drift_px": drift}
        line = f"{s:14s}"
        for b in args.batches:
            med = statistics.median(times[(s, b)])
            share = 2 * macs * b / med / 1e9 / peak
            row[f"b{b}"] = {"ms": med * 1e3, "vs_eager": eager[b] / med, "peak_share": share}
            line += f"{med * 1e3:10.1f}{eager[b] / med:8.2f}{100 * share:6.0f}%"
        rows.append(row)
        print(line + f"{drift:10.3f}")
    if args.json:
        args.json.write_text(json.dumps({"card": card.name, "input_size": list(card.input_size),
                                         "threads": args.threads, "peak_gflops": peak, "gmacs": macs / 1e9,
                                         "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
