"""Benchmark the training data pipeline (not a test): samples/s per worker core.

    python scripts/bench_data.py ../shared/data/coco-mini --input-size 256x192 --samples 300

Measures, on the training split with the card's augmentation:
1. one process, ``dataset[i]`` in a loop, with full-resolution targets built on the CPU
   (``--targets loader``) and without them (``--targets device``), with a per-stage
   breakdown (JPEG decode, crop, normalise, heatmaps);
2. a DataLoader with 1..N workers (collation and inter-process transfer included);
3. the bytes per batch each way, and the time to build the same targets on the training
   device with ``HeatmapCodec.encode_torch``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from frpose_cli.data.normalize import crops_to_input
from frpose_cli.cards import load_card
from frpose_cli.data.codecs import codec_for_card
from frpose_cli.data.dataset import CocoPoseDataset
from frpose_cli.data.geometry import box_to_center_scale, crop_image


def per_sample(ds, n):
    t = time.perf_counter()
    for i in range(n):
        ds[i % len(ds)]
    return n / (time.perf_counter() - t)


def stages(ds, n):
    """Seconds per sample for each stage of __getitem__, measured separately."""
    h, w = ds.input_hw
    times = dict(decode=0.0, crop=0.0, normalise=0.0, heatmaps=0.0)
    for i in range(n):
        inst = ds.instances[i % len(ds)]
        t0 = time.perf_counter()
        img = cv2.imread(str(ds.image_dir / inst.file_name), cv2.IMREAD_COLOR)
        t1 = time.perf_counter()
        c, s = box_to_center_scale(inst.box, w / h)
        crop = cv2.cvtColor(crop_image(img, c, s, 10.0, (w, h)), cv2.COLOR_BGR2RGB)
        t2 = time.perf_counter()
        crops_to_input(torch.from_numpy(np.ascontiguousarray(crop))[None], ds.card.normalize)
        t3 = time.perf_counter()
        ds.codec.encode(np.random.default_rng(i).uniform(0, [w, h], (17, 2)), np.ones(17))
        t4 = time.perf_counter()
        for k, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            times[k] += dt
    return {k: v / n for k, v in times.items()}


def loader_rate(ds, workers, batch, n_batches):
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                         persistent_workers=False, generator=torch.Generator().manual_seed(0))
    it = iter(loader)
    next(it)                                  # workers started and warm
    t, seen = time.perf_counter(), 0
    for _ in range(n_batches):
        try:
            b = next(it)
        except StopIteration:
            it = iter(loader)
            b = next(it)
        seen += b["image"].shape[0]
    return seen / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", default=str(Path(__file__).resolve().parents[1] / "tests/data/coco"))
    ap.add_argument("--model", default="frpose-r18")
    ap.add_argument("--input-size", default="256x192")
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-workers", type=int, default=2)
    args = ap.parse_args()
    cv2.setNumThreads(0)          # one core per worker, as in training
    torch.set_num_threads(1)
    card = load_card(args.model, args.input_size)
    codec = codec_for_card(card)
    root = Path(args.data)
    kw = dict(ann_file=root / "annotations/person_keypoints_train2017.json", image_dir=root / "train2017",
              card=card, codec=codec, train=True)
    with_t, without_t = CocoPoseDataset(**kw), CocoPoseDataset(**kw, build_targets=False)
    k, (h, w), (hh, wh) = card.keypoints.num_keypoints, card.input_size, codec.heatmap_size
    print(f"{args.model} {h}x{w}: {len(with_t)} training people in {root}; targets {k}×{hh}×{wh} float32 = "
          f"{k * hh * wh * 4 / 1e6:.2f} MB a sample; {args.samples} samples per measurement")
    per_sample(with_t, 20)        # warm the page cache
    st = stages(with_t, args.samples)
    print("one process, per sample: " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in st.items()))
    a, b = per_sample(with_t, args.samples), per_sample(without_t, args.samples)
    print(f"one process: {a:.0f} samples/s with CPU targets, {b:.0f} samples/s with targets left to the device")
    nb = max(2, args.samples // args.batch_size)
    for workers in range(1, args.max_workers + 1):
        ra = loader_rate(with_t, workers, args.batch_size, nb)
        rb = loader_rate(without_t, workers, args.batch_size, nb)
        print(f"DataLoader, {workers} worker(s), batch {args.batch_size}: {ra:.0f} samples/s "
              f"({ra / workers:.0f}/worker) with CPU targets; {rb:.0f} samples/s ({rb / workers:.0f}/worker) "
              "with device targets")
    B = args.batch_size
    img_bytes, tgt_bytes, kp_bytes = B * 3 * h * w * 4, B * k * (hh * wh + 1) * 4, B * k * 3 * 4
    print(f"bytes per batch of {B} to the device: images {img_bytes / 1e6:.1f} MB + targets {tgt_bytes / 1e6:.1f} MB "
          f"(CPU targets) vs + keypoints {kp_bytes / 1e3:.1f} kB (device targets)")
    kp = torch.rand(B, k, 2) * torch.tensor([w, h])
    vis = torch.ones(B, k)
    codec.encode_torch(kp, vis)
    t = time.perf_counter()
    for _ in range(5):
        codec.encode_torch(kp, vis)
    print(f"encode_torch on cpu (1 thread): {(time.perf_counter() - t) / 5 * 1e3:.1f} ms a batch of {B}"
          + ("; on a GPU this is a few kernels" if not torch.cuda.is_available() else ""))


if __name__ == "__main__":
    main()
