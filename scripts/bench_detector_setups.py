"""Each RTMDet set-up alone, warm, on real COCO images: torch fp32 / fused / bf16, ONNX Runtime, OpenVINO f32 / bf16.

    python scripts/bench_detector_setups.py ../shared/data/coco-mini/val2017 --limit 6 --json docs/detector_setups.json

Random weights of the published shapes (frpose_cli/deploy/bench_detectors.py, which `frpose bench --detector`
runs too: He-initialised, sure of nobody); each set-up runs the images once to build its kernels, then is timed
over ``--rounds`` passes (the median pass), all in one process.
Prints ms per image (network + letterbox + decoding) per detector and set-up, with the machine's ISA, and
each set-up's rate against two ceilings: its precision's measured one (frpose_cli/deploy/ceiling.py, a large
dense convolution) and the network's own roofline (frpose_cli/deploy/roofline.py: each layer at the slower of
that rate and the copy bandwidth measured at its working set).  ``--no-ceiling`` skips both.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from frpose_cli import hardware
from frpose_cli.data.images import read_image
from frpose_cli.deploy.bench_detectors import bench_detectors, random_detector_file


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--limit", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--detectors", default="rtmdet-nano,rtmdet-m")
    ap.add_argument("--setups", default="fp32,fused,bf16,onnxruntime,openvino,openvino_bf16")
    ap.add_argument("--pipeline", type=int, default=0, help="also time N images inside predict, batched against one "
                    "image per call (0: skip)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (scripts/gpu_check.sh: fp32,fused,fp16 on cuda)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    images = [read_image(p)[0] for p in sorted(args.folder.glob("*.jpg"))[:args.limit]]
    hw = hardware.detect(args.device)
    out = {"machine": hw.describe(args.device), "threads": torch.get_num_threads(), "images": len(images),
           "command": " ".join(["python scripts/bench_detector_setups.py", *(sys.argv[1:] if argv is None else argv)]),
           "date": time.strftime("%Y-%m-%d"), "ms_per_image": {}, "rates": {}}
    print(f"{len(images)} images, {out['machine']}, {out['threads']} threads", flush=True)
    rows, ceilings = bench_detectors(args.detectors.split(","), args.setups.split(","), args.device, images,
                                     rounds=args.rounds, hw=hw, log=lambda m: print(m, flush=True))
    for r in rows:
        ms = out["ms_per_image"].setdefault(r.detector, {})
        ms[r.setup] = round(r.ms_per_image, 1)
        out["rates"].setdefault(r.detector, {})[r.setup] = {
            k: getattr(r, k) for k in ("gflops_per_s", "precision", "pct_ceiling", "roofline_gflops", "pct_roofline",
                                       "memory_bound_flops_pct")}
        print(f"{r.detector:12s} {r.setup:14s} {r.ms_per_image:8.1f} ms an image ({ms['fp32'] / r.ms_per_image:.2f}x "
              f"fp32), {r.gflops_per_s:.0f} GFLOP/s: {r.pct_ceiling:.0f} % of the {r.precision} ceiling, "
              f"{r.pct_roofline:.0f} % of the network's roofline ({r.memory_bound_flops_pct:.0f} % of its FLOPs "
              "memory-bound)" if "fp32" in ms else "", flush=True)
    out["ceilings"] = {k: ({str(s): v for s, v in c.items()} if isinstance(c, dict) else c) for k, c in ceilings.items()}
    if args.pipeline and args.device == "cpu":
        with tempfile.TemporaryDirectory() as tmp:
            out["predict_ms_per_image"] = pipeline_rows(args, Path(tmp))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


def pipeline_rows(args, tmp: Path) -> dict:
    """Inside `predict` (no --overlap, sbn-r18 64x48 pose: the detector's share dominates), each RTMDet in its
    reduced-precision set-ups, one image per call against its ``detect_batch_size``, alternating, two rounds:
    ms per image of the whole run and of the detect stage."""
    from frpose_cli.cards import load_card
    from frpose_cli.inference import rtmdet_detector as rd
    from frpose_cli.inference.predict import PredictOptions, run_predict
    from frpose_cli.weights.checkpoint import save_checkpoint
    images = sorted(args.folder.glob("*.jpg"))[:args.pipeline]
    (tmp / "list.txt").write_text("\n".join(str(p.resolve()) for p in images) + "\n")
    card = load_card("sbn-r18", (64, 48))
    torch.manual_seed(0)
    pose = save_checkpoint(tmp / "pose.pt", card.build_model(), card)
    batched = rd.RTMDetDetector.detect_batch_size
    rows = {}
    try:
        for name, setup in (("rtmdet-nano", "bf16"), ("rtmdet-nano", "openvino_bf16"), ("rtmdet-m", "openvino_bf16")):
            path = random_detector_file(name, tmp)
            for rnd in range(2):
                for mode in ("one at a time", "batched"):
                    rd.RTMDetDetector.detect_batch_size = property(lambda self: 1) if mode == "one at a time" else batched
                    det = rd.RTMDetDetector(path, arch=name, setup=setup)
                    if det._unavailable(setup, hardware.detect("cpu")):
                        continue
                    opts = PredictOptions(source=str(tmp / "list.txt"), weights=str(pose), progress=False,
                                          out=str(tmp / f"{name}-{setup}-{mode}-{rnd}".replace(" ", "_")),
                                          save_vis=False, overlap=False)
                    summary = run_predict(opts, log=lambda m: None, detector=det)
                    row = rows.setdefault(f"{name} {setup}", {}).setdefault(mode, [])
                    row.append([round(summary.seconds / summary.images * 1000, 1),
                                round(summary.timings["detect"] / summary.images * 1000, 1)])
            if f"{name} {setup}" in rows:
                print(f"{name} {setup}: ms an image (whole, detect) {rows[f'{name} {setup}']}", flush=True)
    finally:
        rd.RTMDetDetector.detect_batch_size = batched
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
