"""Each RTMDet set-up alone, warm, on real COCO images: torch fp32 / fused / bf16, ONNX Runtime, OpenVINO f32 / bf16.

    python scripts/bench_detector_setups.py ../shared/data/coco-mini/val2017 --limit 6 --json docs/detector_setups.json

Random weights of the published shapes (He-initialised: speed does not depend on the values, but torch's
default init shrinks activations into float32 denormals, which a trained network's never are); each set-up
runs the images once to build its kernels, then is timed over ``--rounds`` passes, all in one process.
Prints ms per image (network + letterbox + decoding) per detector and set-up, with the machine's ISA, and
each set-up's rate against two ceilings: its precision's measured one (frpose_cli/deploy/ceiling.py, a large
dense convolution) and the network's own roofline (frpose_cli/deploy/roofline.py: each layer at the faster of
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
from frpose_cli.inference.rtmdet_detector import RTMDetDetector
from frpose_cli.net.rtmdet import PUBLISHED, RTMDet, spec_for


def random_file(name: str, folder: Path) -> Path:
    torch.manual_seed(0)
    model = RTMDet(spec_for(**PUBLISHED[name]))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.normal_(0, (2.0 / m.weight[0].numel()) ** 0.5)
        for conv in model.bbox_head.rtm_cls:   # sure of "nobody": NMS is not what is timed
            conv.bias.fill_(-20.0)
    path = folder / f"{name}.pth"
    torch.save({"meta": {}, "state_dict": model.state_dict()}, path)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--limit", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--detectors", default="rtmdet-nano,rtmdet-m")
    ap.add_argument("--setups", default="fp32,fused,bf16,onnxruntime,openvino,openvino_bf16")
    ap.add_argument("--pipeline", type=int, default=0, help="also time N images inside predict, batched against one "
                    "image per call (0: skip)")
    ap.add_argument("--no-ceiling", action="store_true", help="skip the rates against the ceilings")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (scripts/gpu_check.sh: fp32,fused,fp16 on cuda)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    images = [read_image(p)[0] for p in sorted(args.folder.glob("*.jpg"))[:args.limit]]
    hw = hardware.detect(args.device)
    out = {"machine": hw.describe(args.device), "threads": torch.get_num_threads(), "images": len(images),
           "command": " ".join(["python scripts/bench_detector_setups.py", *(sys.argv[1:] if argv is None else argv)]),
           "date": time.strftime("%Y-%m-%d"), "ms_per_image": {}}
    print(f"{len(images)} images, {out['machine']}, {out['threads']} threads", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.detectors.split(","):
            det = RTMDetDetector(random_file(name, Path(tmp)), arch=name, score_thr=0.3, device=args.device)
            row = out["ms_per_image"].setdefault(name, {})
            for setup in args.setups.split(","):
                why = det._unavailable(setup, hw)
                if why:
                    print(f"{name} {setup}: skipped ({why})", flush=True)
                    continue
                model = det._build_setup(setup)
                for im in images:
                    det.detect_batch([im], model)
                start = time.perf_counter()
                for _ in range(args.rounds):
                    for im in images:
                        det.detect_batch([im], model)
                row[setup] = round((time.perf_counter() - start) / (args.rounds * len(images)) * 1000, 1)
                print(f"{name:12s} {setup:14s} {row[setup]:8.1f} ms an image "
                      f"({row['fp32'] / row[setup]:.2f}x fp32)" if "fp32" in row else "", flush=True)
            if not args.no_ceiling:
                out.setdefault("rates", {})[name] = rates(det, row, hw, out.setdefault("ceilings", {}))
        if args.pipeline and args.device == "cpu":
            out["predict_ms_per_image"] = pipeline_rows(args, Path(tmp))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


def rates(det: RTMDetDetector, row: dict, hw, ceilings: dict) -> dict:
    """Per set-up of ``det``: GFLOP/s (the network's FLOPs at its canvas over the measured time an image) and the
    shares of its precision's ceiling and of the network's roofline.  ``ceilings`` keeps each precision's
    measurement (and the bandwidth curve) for the next detector and the JSON."""
    from frpose_cli.deploy.ceiling import measure_ceiling
    from frpose_cli.deploy.roofline import layer_costs, measure_bandwidth, roofline
    from frpose_cli.runtime.optimize import SETUP_PRECISION
    if "bandwidth_gb_s" not in ceilings:
        ceilings["bandwidth_gb_s"] = measure_bandwidth(device=det.device)
    curve = ceilings["bandwidth_gb_s"]
    costs = layer_costs(det.model, torch.zeros(1, 3, det.size, det.size, device=det.device))
    out = {}
    for setup, ms in row.items():
        precision = SETUP_PRECISION.get(setup, setup)
        if precision not in ceilings:
            ceilings[precision] = measure_ceiling(det.device, precision, hw).gflops
        bound = roofline(costs, precision, ceilings[precision], curve)
        rate = bound.flops / (ms / 1000) / 1e9
        out[setup] = {"gflops_per_s": round(rate, 1), "precision": precision,
                      "pct_ceiling": round(100 * rate / ceilings[precision], 1),
                      "roofline_gflops": round(bound.gflops, 1), "pct_roofline": round(100 * bound.share(ms / 1000), 1),
                      "memory_bound_flops_pct": round(100 * bound.memory_bound_flops_share, 1)}
        print(f"{det.arch:12s} {setup:14s} {rate:7.0f} GFLOP/s: {out[setup]['pct_ceiling']:.0f} % of the {precision} "
              f"ceiling ({ceilings[precision]:.0f}), {out[setup]['pct_roofline']:.0f} % of the network's roofline "
              f"({bound.gflops:.0f}; {out[setup]['memory_bound_flops_pct']:.0f} % of its FLOPs memory-bound)",
              flush=True)
    return out


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
            path = tmp / f"{name}.pth"
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
