"""Tracking on videos with ground truth: speed of ``--det-every``, identities, MOTA, smoothing, live latency.

    python scripts/bench_tracking.py ../shared/data/coco-mini --json docs/tracking_benchmarks.json

The videos are real COCO images (the people of ``--data``'s annotations) seen by a camera that pans at
a constant speed, written as mp4 and read back as `frpose predict` reads them, so every person's
keypoints and box are known in every frame.  No weights are downloaded: the detector and the pose
network are randomly initialised, run in full (their cost does not depend on the weights), and their
*outputs* are then replaced by the ground truth, the way ``scripts/bench_predict.py`` replaces the
detector's boxes: the detector's by the frame's true boxes, the pose network's by the true keypoints of
the person each crop shows, plus Gaussian jitter of ``--jitter`` of the person's height (unlabelled
keypoints get score 0.05).  So ``--det-every``'s propagated boxes and the tracker see what a trained
network would give them, and the timings are the real networks'.

Rows (one process, one machine, its ISA printed):

* **speed**: frames/s with the default detector (Faster R-CNN R50-FPN at 800 px, float32) and the default pose
  card (sbn-r50 256x192), ``--det-every 1`` and ``5`` alternately, ``--rounds`` times; the tracking and
  smoothing stages' share of the frame time.
* **identities** with given boxes (``--boxes`` per-frame JSON): identity switches and MOTA (motmetrics,
  box IoU ≥ 0.5), ``--det-every 1`` and ``5``; a person hidden for 20 frames (< the 30-frame lifetime)
  must come back with the same id.
* **smoothing**: frame-to-frame acceleration of the keypoints, raw, ``--smooth`` (online) and
  ``--smooth-offline``, and the mean error against the truth; a camera jump (a tenth of a person, no
  jitter) and the frames the smoothed keypoints take to come back within 10 % of it.
* **live**: the first video served as MJPEG over loopback HTTP at ``--live-fps`` (looped) for
  ``--live-seconds``, whole-image boxes (the network's own output, one pose pass a frame): latency from a
  frame's arrival to its overlay (median, p95, max; first and last 10 s), frames dropped, against one
  pose pass plus one frame interval.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]
from bench_predict import _sure_of_background  # noqa: E402

from tracking_video import FPS, SIZE, Oracle, TruthDetector, in_view, make_video, people_images  # noqa: E402

from frpose_cli.cards import load_card  # noqa: E402
from frpose_cli.inference.detectors import TorchvisionDetector, clip_boxes  # noqa: E402
from frpose_cli.inference.detector_archs import ARCHS  # noqa: E402
from frpose_cli.inference.predict import PredictOptions, run_predict  # noqa: E402
from frpose_cli.tracking.tracker import iou_matrix  # noqa: E402
from frpose_cli.weights.checkpoint import save_checkpoint  # noqa: E402


def predict(work, video, ckpt, label, detector=None, **options):
    opts = PredictOptions(source=str(video), weights=str(ckpt), out=str(work / label), progress=False,
                          save_vis=False, workers=0, **options)
    summary = run_predict(opts, log=lambda m: None, detector=detector)
    return summary, json.loads((work / label / "predictions.json").read_text())


def identity_metrics(records, truth):
    """Identity switches and MOTA against the true boxes (motmetrics, IoU ≥ 0.5)."""
    import motmetrics as mm
    acc = mm.MOTAccumulator(auto_id=True)
    for f, (_, boxes) in enumerate(truth):
        seen = in_view(boxes)
        gt_ids = [p for p in range(len(boxes)) if seen[p]]
        recs = [r for r in records if r.get("frame") == f and r.get("track_id", -1) >= 0]
        # a record on a person mostly out of view is neither a hit nor a false positive (MOT's ignored people)
        out_of_view = boxes[~seen & (boxes[:, 0] > -1e3)]
        if len(out_of_view) and recs:
            on_them = iou_matrix(np.array([r["bbox"] for r in recs]), out_of_view).max(1) >= 0.5
            recs = [r for r, skip in zip(recs, on_them) if not skip]
        visible = clip_boxes(np.concatenate([boxes[gt_ids], np.ones((len(gt_ids), 1))], 1), *SIZE)[:, :4]
        iou = iou_matrix(visible, np.array([r["bbox"] for r in recs]).reshape(-1, 4))
        dist = np.where(iou >= 0.5, 1 - iou, np.nan)   # motmetrics' iou_matrix(max_iou=0.5), which numpy 2 breaks
        acc.update(gt_ids, [r["track_id"] for r in recs], dist)
    m = mm.metrics.create().compute(acc, metrics=["num_switches", "mota", "num_misses", "num_false_positives"],
                                    return_dataframe=False)
    return {k: float(v) for k, v in m.items()}


def tracks_of(records, key):
    """track id → (frames, (F, 17, 3)) of the records' ``key`` keypoints."""
    out = {}
    for r in sorted(records, key=lambda r: r["frame"]):
        if r.get("track_id", -1) >= 0:
            out.setdefault(r["track_id"], []).append((r["frame"], np.array(r[key]).reshape(17, 3)))
    return {t: (np.array([f for f, _ in v]), np.stack([k for _, k in v])) for t, v in out.items()}


def smoothing_metrics(records, truth, jump_at=None, jump=0.0):
    """Mean |second difference| of the visible keypoints (px/frame²), raw and smoothed, their mean error
    against the truth (px), and after a jump the frames until the smoothed keypoints are within 10 %."""
    out = {"raw": {"accel": [], "error": []}, "smooth": {"accel": [], "error": []}}
    for key, name in (("keypoints_raw", "raw"), ("keypoints", "smooth")):
        for t, (frames, k) in tracks_of(records, key).items():
            seen = k[..., 2] >= 0.3
            steady = np.ones(len(frames), bool) if jump_at is None else np.abs(frames - jump_at) > 8
            run = np.flatnonzero(steady & (np.r_[0, np.diff(frames)] == 1))
            run = run[(run >= 2) & np.isin(run - 1, run) & np.isin(run - 2, run)]
            acc = np.linalg.norm(k[run, :, :2] - 2 * k[run - 1, :, :2] + k[run - 2, :, :2], axis=-1)
            out[name]["accel"] += list(acc[seen[run]])
            for i, f in enumerate(frames):
                kp, boxes = truth[f]
                p = int(np.argmin(np.abs(kp[:, :, :2] - k[i, :, :2]).sum(-1).mean(-1, where=kp[:, :, 2] > 0)))
                ok = seen[i] & (kp[p, :, 2] > 0)
                out[name]["error"] += list(np.linalg.norm(k[i, ok, :2] - kp[p, ok, :2], axis=-1))
    summary = {n: {"accel_px": float(np.mean(v["accel"])), "error_px": float(np.mean(v["error"]))}
               for n, v in out.items() if v["accel"]}
    if summary["raw"]["accel_px"] > 0:
        summary["accel_cut"] = 1 - summary["smooth"]["accel_px"] / summary["raw"]["accel_px"]
    if jump_at is not None:   # frames from the step until the smoothed error is back within 10 % of it
        lag = []
        for t, (frames, k) in tracks_of(records, "keypoints").items():
            if not all(f in frames for f in range(jump_at - 5, jump_at + 7)):
                continue

            def error(f):
                i = list(frames).index(f)
                kp, _ = truth[f]
                p = int(np.argmin(np.abs(kp[:, :, :2] - k[i, :, :2]).sum(-1).mean(-1, where=kp[:, :, 2] > 0)))
                ok = (k[i, :, 2] >= 0.3) & (kp[p, :, 2] > 0)
                return float(np.median(np.linalg.norm(k[i, ok, :2] - kp[p, ok, :2], axis=-1)))
            before = np.mean([error(f) for f in range(jump_at - 5, jump_at)])   # the lag of the pan itself
            lag.append(next((n + 1 for n in range(7) if error(jump_at + n) <= before + 0.1 * jump), None))
        summary["step_px"], summary["step_frames"] = jump, lag
    return summary


def live_latency(work, video, ckpt, fps: float, seconds: float, **options):
    """The video served as MJPEG over loopback at ``fps`` (looped) for ``seconds``; predict reads it live."""
    import signal
    import threading

    from mjpeg_server import MjpegServer
    cap, frames = cv2.VideoCapture(str(video)), []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    stopper = threading.Timer(seconds, lambda: signal.raise_signal(signal.SIGINT))
    with MjpegServer(frames, fps=fps, loop=True) as url:
        opts = PredictOptions(source=url, weights=str(ckpt), out=str(work / "live"), progress=False, workers=0,
                              **options)
        lat = []
        from frpose_cli.inference import stream
        write = stream.PredictLoop._write

        def timed_write(loop, item, *args):
            write(loop, item, *args)
            lat.append((item.timestamp, loop.latencies[-1]))
        stream.PredictLoop._write = timed_write
        stopper.start()
        try:
            summary = run_predict(opts, log=lambda m: None)
        finally:
            stream.PredictLoop._write = write
            stopper.cancel()
    first = [v for t, v in lat if t <= 10]
    last = [v for t, v in lat if t >= seconds - 10]
    return {"frames": summary.images, "dropped": summary.frames_dropped, **{k: round(v * 1000, 1) for k, v in
            summary.latency.items()}, "first_10s_median_ms": round(statistics.median(first) * 1000, 1) if first else None,
            "last_10s_median_ms": round(statistics.median(last) * 1000, 1) if last else None,
            "pose_ms_per_frame": round(summary.timings["pose"] / max(summary.images, 1) * 1000, 1),
            "frame_interval_ms": round(1000 / fps, 1), "end": summary.stream_end}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="a COCO root (annotations/, val2017/, train2017/)")
    ap.add_argument("--videos", type=int, default=2)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--speed", type=float, default=3.0, help="camera pan, px per frame")
    ap.add_argument("--jitter", type=float, default=0.01, help="keypoint jitter, a fraction of the person's height")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--pose-card", default="sbn-r50")
    ap.add_argument("--precision", default="fp32", help="the pose network's --precision")
    ap.add_argument("--detector-setup", default="fp32", help="the detector's set-up (fp32, fused, bf16: "
                    "frpose_cli/inference/detector_setups.py)")
    ap.add_argument("--live-fps", type=float, default=15.0)
    ap.add_argument("--live-seconds", type=float, default=60.0)
    ap.add_argument("--smooth-params", default=None, help="MIN_CUTOFF,BETA,D_CUTOFF (default: frpose's)")
    ap.add_argument("--skip", default="", help="comma list of rows to skip: speed, ids, smooth, live")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--merge", action="store_true", help="keep the sections of an existing --json that this run "
                    "skips (each section records the command that measured it)")
    args = ap.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    if args.smooth_params:
        from frpose_cli.inference.predict_options import parse_smooth_params
        args.smooth_params = parse_smooth_params(args.smooth_params)
    from frpose_cli import hardware
    machine = hardware.detect("cpu").describe("cpu")
    work = Path(tempfile.mkdtemp(prefix="bench_tracking_"))
    results = {"machine": machine, "date": time.strftime("%Y-%m-%d"), "threads": torch.get_num_threads(),
               "command": " ".join(["python scripts/bench_tracking.py", *(sys.argv[1:] if argv is None else argv)]),
               "frames": args.frames, "fps": FPS, "pan_px_per_frame": args.speed, "jitter": args.jitter,
               "live_seconds": args.live_seconds}
    print(f"on {machine}", flush=True)
    try:
        sources = people_images(args.data, args.videos)
        card = load_card(args.pose_card, (256, 192))
        torch.manual_seed(0)
        ckpt = save_checkpoint(work / "pose.pt", card.build_model(), card)
        videos = []
        for i, (image, people) in enumerate(sources):
            hide = (0, 10, 29) if i == 0 else None
            truth, decoded = make_video(work / f"v{i}.mp4", image, people, args.frames, args.speed, hide=hide)
            videos.append((work / f"v{i}.mp4", truth, decoded, hide, image.name, len(people)))
        results["videos"] = [{"image": v[4], "people": v[5]} for v in videos]
        if "speed" not in skip:
            key = "speed" if (args.detector_setup, args.precision) == ("fp32", "fp32") else \
                f"speed {args.detector_setup} detector, {args.precision} pose"
            results[key] = speed_rows(work, videos, ckpt, args)
        if "ids" not in skip:
            results["identities"] = identity_rows(work, videos, ckpt, args)
        if "smooth" not in skip:
            results["smoothing"] = smoothing_rows(work, sources[0], ckpt, args)
        if "live" not in skip:
            results["live"] = live_latency(work, videos[0][0], ckpt, args.live_fps, args.live_seconds,
                                           detector="whole-image", precision=args.precision)
            print("live:", json.dumps(results["live"], indent=1), flush=True)
        if args.json:
            sections = lambda d: [k for k in d if k.startswith("speed") or k in ("identities", "smoothing", "live")]  # noqa: E731
            results["commands"] = dict.fromkeys(sections(results), results["command"])
            if args.merge and args.json.is_file():
                old = json.loads(args.json.read_text())
                kept = {k: old[k] for k in sections(old) if k not in results}
                results["commands"] = {**{k: old.get("commands", {}).get(k, old["command"]) for k in kept},
                                       **results["commands"]}
                results.update(kept)
            args.json.write_text(json.dumps(results, indent=1) + "\n")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def speed_rows(work, videos, ckpt, args):
    det_file = work / "r50.pth"
    torch.manual_seed(0)
    model = ARCHS["fasterrcnn-r50-fpn"][0](91)
    _sure_of_background(model)
    torch.save(model.state_dict(), det_file)
    real = TorchvisionDetector(det_file, score_thr=0.3, min_size=800, max_size=1333, setup=args.detector_setup)
    rows = {1: [], 5: []}
    for r in range(args.rounds):
        for every in (1, 5):
            frames = seconds = track = 0.0
            for video, truth, decoded, *_ in videos:
                with Oracle(truth, decoded, args.jitter) as oracle:
                    s, _ = predict(work, video, ckpt, f"speed{every}-{r}-{video.stem}", TruthDetector(real, oracle),
                                   det_every=every, smooth=True, precision=args.precision)
                frames += s.images
                seconds += s.seconds
                track += s.timings.get("track", 0.0)
            rows[every].append({"fps": frames / seconds, "track_share": track / seconds})
            print(f"speed round {r} det-every {every}: {frames / seconds:.3f} frames/s, tracking+smoothing "
                  f"{100 * track / seconds:.2f} % of the time", flush=True)
    best = {e: max(v, key=lambda x: x["fps"]) for e, v in rows.items()}
    out = {"detector": f"fasterrcnn-r50-fpn {args.detector_setup} 800 px (random weights, true boxes)",
           "pose": f"{args.pose_card} 256x192 "
           f"{args.precision} flip", "rows": {str(k): v for k, v in rows.items()},
           "ratio_best": best[5]["fps"] / best[1]["fps"],
           "ratio_per_round": [b["fps"] / a["fps"] for a, b in zip(rows[1], rows[5])],
           "track_share_max": max(x["track_share"] for v in rows.values() for x in v)}
    print(f"det-every 5 / det-every 1: {out['ratio_best']:.2f}x (per round {out['ratio_per_round']})", flush=True)
    return out


def identity_rows(work, videos, ckpt, args):
    out = []
    for video, truth, decoded, hide, name, people in videos:
        boxes = {"frames": {str(f): [[*b, 0.95] for b in bx[in_view(bx)]] for f, (_, bx) in enumerate(truth)}}
        (work / "boxes.json").write_text(json.dumps(boxes))
        for every in (1, 5):
            with Oracle(truth, decoded, args.jitter):
                _, records = predict(work, video, ckpt, f"ids{every}-{video.stem}", boxes=str(work / "boxes.json"),
                                     det_every=every, precision=args.precision, flip=False)
            m = identity_metrics(records, truth)
            row = {"video": name, "people": people, "det_every": every, **m,
                   "tracks": len({r["track_id"] for r in records if r["track_id"] >= 0})}
            if hide:
                before = {r["track_id"] for r in records if r["frame"] < hide[1]
                          and iou_matrix(truth[r["frame"]][1][hide[0]:hide[0] + 1], [r["bbox"]])[0, 0] >= 0.5}
                after = {r["track_id"] for r in records if r["frame"] > hide[2]
                         and iou_matrix(truth[r["frame"]][1][hide[0]:hide[0] + 1], [r["bbox"]])[0, 0] >= 0.5}
                row["hidden_frames"] = hide[2] - hide[1] + 1
                row["same_id_after_hiding"] = before == after and len(before) == 1
            out.append(row)
            print("identities:", row, flush=True)
    return out


def smoothing_rows(work, source, ckpt, args):
    image, people = source
    out = {}
    height = float(np.median([a["bbox"][3] for a in people]))
    for label, jump_at, jitter in (("steady", None, args.jitter), ("step", args.frames // 2, 0.0)):
        jump = 0.1 * height if jump_at is not None else 0.0   # a tenth of a person: the same person to the tracker
        truth, decoded = make_video(work / f"s-{label}.mp4", image, people, args.frames, args.speed, jump_at, jump)
        boxes = {"frames": {str(f): [[*b, 0.95] for b in bx[in_view(bx)]] for f, (_, bx) in enumerate(truth)}}
        (work / "sboxes.json").write_text(json.dumps(boxes))
        for how, options in (("", {"smooth": True, "smooth_params": args.smooth_params}),
                             (" offline", {"smooth_offline": True})):
            with Oracle(truth, decoded, jitter):
                _, records = predict(work, work / f"s-{label}.mp4", ckpt, f"smooth-{label}{how.strip()}",
                                     boxes=str(work / "sboxes.json"), precision=args.precision, flip=False, **options)
            out[label + how] = smoothing_metrics(records, truth, jump_at, jump)
            print(f"smoothing {label}{how}:", out[label + how], flush=True)
    return out


if __name__ == "__main__":
    sys.exit(main())
