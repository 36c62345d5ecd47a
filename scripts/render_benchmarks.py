"""docs/benchmarks.md from docs/benchmarks.json (written by scripts/bench_precision.py).

Every benchmark figure lives in the JSON and is shown once, on this page; the README and the
other docs link here instead of copying numbers.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _short(text: str) -> str:
    """Paths as a reader can find them: the repository's own files relative, the cache under ~."""
    text = re.sub(r"/\S*?/(tests/data/)", r"\1", text)
    return re.sub(r"/root/|/home/[^/]+/", "~/", text)


def _f(value, fmt="{:.1f}"):
    return "–" if value is None else fmt.format(value)


def _gate(row):
    g = row.get("gate")
    if not g:
        return ("reference", "–", "–") if row["precision"] == "fp32" else ("–", "–", "not gated")
    ap = "–" if g["ap_delta"] is None else f"{g['ap_delta']:+.2f} ({g['ap_reference']:.1f} → {g['ap_candidate']:.1f})"
    verdict = "pass" if g["passed"] else f"reject: {g['reason']}"
    return f"{g['median_px']:.3f} / {g['p95_px']:.3f}", ap, verdict


def render_table2(rows: list) -> list[str]:
    """The `frpose bench` JSON of the paper's Table 2 set (``docs/table2.json``) as a table."""
    first = rows[0]
    lines = ["## Table 2 set: `frpose bench`", "",
             f"`frpose bench --setup eager --setup fused --setup onnxruntime --json docs/table2.json` on {first['machine']}: "
             "batch-1 latency (median/p90 over 20 calls), throughput at batch 8, % of the measured ceiling; the "
             "paper's figures in brackets (its latencies are GPU figures: compare ratios). The ceiling of this run "
             "is in the JSON (`ceiling_gflops`).", "",
             "| model | input | set-up | params M | GMACs | latency b1 ms med/p90 | img/s b8 | × eager b1/b8 | GFLOP/s | "
             "% ceiling |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    eager = {(r["model"], tuple(r["input_size"])): r for r in rows if r["setup"] == "eager"}
    for r in rows:
        e = eager.get((r["model"], tuple(r["input_size"])))
        paper = r.get("paper", {})
        ref = lambda v, k, fmt="{:.1f}": fmt.format(v) + (f" ({fmt.format(paper[k])})" if k in paper else "")  # noqa: E731
        vs = f"{e['latency_ms'] / r['latency_ms']:.2f}/{r['throughput_ips'] / e['throughput_ips']:.2f}" if e else "–"
        lines.append(f"| {r['model']} | {r['input_size'][0]}x{r['input_size'][1]} | {r['setup']} | "
                     f"{ref(r['params_m'], 'params_m')} | {ref(r['gmacs'], 'gmacs')} | "
                     f"{r['latency_ms']:.1f}/{r['latency_p90_ms']:.1f}"
                     + (f" ({paper['latency_ms']})" if "latency_ms" in paper else "")
                     + f" | {r['throughput_ips']:.1f} | {vs} | {r['gflops_per_s']:.0f} | {_f(r['pct_ceiling'], '{:.0f} %')} |")
    lines += ["", "frpose-r34 ÷ sbn-r152 latency (paper: 0.73):", ""]
    by = {(r["model"], tuple(r["input_size"]), r["setup"]): r for r in rows}
    for (model, size, setup), r in by.items():
        d = by.get(("sbn-r152", size, setup))
        if model == "frpose-r34" and d:
            lines.append(f"- {size[0]}x{size[1]} {setup}: {r['latency_ms'] / d['latency_ms']:.2f} at batch 1, "
                         f"{d['throughput_ips'] / r['throughput_ips']:.2f} at batch {r['batch']}")
    return lines + [""]


OPENVINO_COMMAND = ("frpose bench frpose-r34 --setup fused --setup bf16 --setup onnxruntime --setup openvino "
                    "--setup openvino_bf16 --batch 8 --json docs/openvino_benchmarks.json")


def render_openvino(rows: list) -> list[str]:
    """The OpenVINO section from ``docs/openvino_benchmarks.json`` (``frpose bench --json``, one run)."""
    first = rows[0]
    lines = ["## OpenVINO beside torch and ONNX Runtime", "",
             f"`{OPENVINO_COMMAND}` (one run, set-ups one after another) on **{first['machine']}**: "
             f"{first['model']} {first['input_size'][0]}x{first['input_size'][1]}, random weights (speed does not "
             "depend on them). Batch 1: median/p90 over 20 calls; batch 8: the median time of one call of 8 crops. "
             "× torch: the row's speed over torch's set-up of the same precision (`fused` for fp32, `bf16` for bf16), "
             "same run. GFLOP/s and % ceiling at batch 8, against the measured ceiling of the row's precision "
             "(`ceiling_gflops` in the JSON). OpenVINO runs with its inference precision hint (f32 or bf16), "
             "performance hint LATENCY and torch's thread count (frpose_cli/runtime/ovrt.py).", "",
             "| set-up | backend | precision | b1 ms med/p90 | b8 ms | img/s b8 | × torch b1 / b8 | GFLOP/s b8 | "
             "% ceiling b8 |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    backend = {"fused": "torch", "bf16": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino",
               "openvino_bf16": "openvino"}
    torch_rows = {r["precision"]: r for r in rows if r["setup"] in ("fused", "bf16")}
    for r in rows:
        t = torch_rows.get(r["precision"])
        vs = (f"{t['latency_ms'] / r['latency_ms']:.2f} / {t['batch_latency_ms'] / r['batch_latency_ms']:.2f}"
              if t else "–")
        lines.append(f"| {r['setup']} | {backend.get(r['setup'], '?')} | {r['precision']} | "
                     f"{r['latency_ms']:.1f}/{r['latency_p90_ms']:.1f} | {r['batch_latency_ms']:.1f} | "
                     f"{r['throughput_ips']:.2f} | {vs} | {r['gflops_per_s']:.0f} | {_f(r['pct_ceiling'], '{:.0f} %')} |")
    by = {r["setup"]: r for r in rows}
    pairs = [("openvino", "fused"), ("openvino", "onnxruntime"), ("openvino_bf16", "bf16")]
    said = [f"{a} {by[b]['latency_ms'] / by[a]['latency_ms']:.2f}× {b} at batch 1, "
            f"{by[b]['batch_latency_ms'] / by[a]['batch_latency_ms']:.2f}× at batch 8"
            for a, b in pairs if a in by and b in by]
    if said:
        lines += ["", "Speed of OpenVINO over the other set-ups, same run: " + "; ".join(said) + "."]
    return lines


def render(data: dict, table2: list | None = None) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `scripts/render_benchmarks.py` from [benchmarks.json](benchmarks.json), which "
        f"`{data['command']}` wrote on {data['date']}. Do not edit by hand: every figure lives in the JSON "
        "and appears only here; the README and the other pages link to this one.",
        "",
        "## Machine",
        "",
        f"- **{data['machine']}** (CPU family {data['family']}, model {data['model_number']}); set-ups timed "
        f"round-robin, {data['rounds']} rounds, best round of each (medians in the JSON).",
        f"- Machine signature (the `--precision auto` cache key): `{data['signature']}`",
        "- The machine is shared with other jobs: compare the ratios, which were measured in the same rounds.",
        "",
        "### Ceilings",
        "",
        "The rate every row is compared with: the best of several kernels measured with the libraries the set-ups "
        "run on (frpose_cli/deploy/ceiling.py), and the ISA's theoretical peak where it is computable.",
        "",
    ]
    for p, c in data["ceilings"].items():
        lines.append(f"- {c['method']}.")
        lines.append("  Kernels: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(c["kernels"].items(),
                                                                                   key=lambda kv: -kv[1])) + ".")
    lines += ["", "## Latency by precision, 256×192", "",
              "Batch 1 and batch 8 (the time of one call of 8 crops). × eager: the plain PyTorch network's time "
              "divided by the set-up's, same round. GFLOP/s at batch 8 (int8: giga-operations); % ceiling: of "
              "the ceiling of the row's precision.", "",
              "| model | precision | set-up | b1 ms | b8 ms | × eager b1 / b8 | GFLOP/s b8 | % ceiling b8 | "
              "gate drift px median / p95 | gate ΔAP (fp32 → candidate) | gate |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for m in data["models"]:
        for r in m["rows"]:
            drift, ap, verdict = _gate(r)
            lines.append(f"| {m['model']} | {r['precision']} | {r['setup']} | {r['b1']['ms']:.1f} | "
                         f"{r['b8']['ms']:.1f} | {r['b1']['vs_eager']:.2f} / {r['b8']['vs_eager']:.2f} | "
                         f"{r['b8']['gflops_per_s']:.0f} | {r['b8']['pct_ceiling']:.0f} % | {drift} | {ap} | {verdict} |")
        for s, reason in data["skipped"].items():
            lines.append(f"| {m['model']} | {s} | – | – | – | – | – | – | – | – | not run: {reason} |")
    lines += ["", "### frpose-r34 ÷ sbn-r152", "",
              "Latency ratio per precision (the paper's Table 2 GPU ratio is 0.73; a CPU runs a network about as "
              "fast as its MAC count allows, and frpose-r34 has 1.6× the MACs of SBN-152).", "",
              "| precision | set-up | batch 1 | batch 8 |", "|---|---|---:|---:|"]
    by = {m["model"]: {r["setup"]: r for r in m["rows"]} for m in data["models"]}
    if {"frpose-r34", "sbn-r152"} <= set(by):
        for s, r in by["frpose-r34"].items():
            d = by["sbn-r152"].get(s)
            if d and s != "eager":
                lines.append(f"| {r['precision']} | {s} | {r['b1']['ms'] / d['b1']['ms']:.2f} | "
                             f"{r['b8']['ms'] / d['b8']['ms']:.2f} |")
    t = data["thresholds"]
    lines += ["", "## Accuracy gate", "",
              f"Each reduced-precision set-up against float32 on the same trained network and real crops (flip test "
              f"as in `eval`): keypoint drift in input pixels and the OKS-AP change on those people. Rejected beyond "
              f"median {t['median_px']} px, p95 {t['p95_px']} px or an AP drop of {t['ap_drop']} points (or the "
              f"finest AP step the crops resolve, if larger); reasons in frpose_cli/precision/gate.py. The trained weights are "
              f"each card fitted on the first 16 people of coco-mini's train split (60 epochs, random "
              f"initialisation) by `python scripts/bench_precision.py --build-gate-weights`; the gate runs on "
              f"those people, where the network is trained.", ""]
    for m in data["models"]:
        if not m.get("gate_weights"):
            lines.append(f"- **{m['model']}**: not gated ({m.get('gate_note', 'no trained weights')}).")
            continue
        lines.append(_short(
                     f"- **{m['model']}**: trained weights `{m['gate_weights']}` (float32 AP {m['gate_fp32_ap']:.1f} on "
                     f"the gated people); gate on {m['gate_crops']}; int8 calibrated on {m['gate_calibration_crops']}. "
                     f"`--precision auto` on these measurements: **{m['auto_choice_b8']}** (the fastest set-up that "
                     f"passes the gate, if at least 1.10× float32 at batch 8)."))
    if table2:
        lines += [""] + render_table2(table2)
    predict = ROOT / "docs" / "predict_benchmarks.json"
    if predict.is_file():
        lines += [""] + render_predict(json.loads(predict.read_text()))
    capped = ROOT / "docs" / "predict_benchmarks_avx2.json"
    if capped.is_file():
        lines += [""] + render_predict(json.loads(capped.read_text()), AVX2_HEADING)
    runtimes = ROOT / "docs" / "predict_benchmarks_runtimes.json"
    if runtimes.is_file():
        lines += [""] + render_predict(json.loads(runtimes.read_text()), RUNTIMES_HEADING)
    tracking = ROOT / "docs" / "tracking_benchmarks.json"
    if tracking.is_file():
        lines += [""] + render_tracking(json.loads(tracking.read_text()))
    openvino = ROOT / "docs" / "openvino_benchmarks.json"
    if openvino.is_file():
        lines += [""] + render_openvino(json.loads(openvino.read_text()))
    start = ROOT / "docs" / "start_benchmarks.json"
    if start.is_file():
        lines += [""] + render_start(json.loads(start.read_text()))
    return "\n".join(lines) + "\n"


def render_start(run: dict) -> list[str]:
    """The start-up section from docs/start_benchmarks.json (scripts/bench_start.py --json)."""
    m = run["median_s"]
    size = f"{run['input_size'][0]}×{run['input_size'][1]}"
    return ["## Start-up: one photo from a checkpoint, and `frpose --help`", "",
            f"`python scripts/bench_start.py --rounds {run['rounds']} --json docs/start_benchmarks.json` ({run['model']} "
            f"{size}, random weights; each figure the median wall time of a fresh process, rows alternated; "
            f"{run['machine']}):", "",
            "| run | wall s | ÷ `.onnx` |", "|---|---|---|",
            f"| `frpose --help` | {m['help']:.2f} | |",
            f"| `predict one.jpg -w best.onnx --detector whole-image` | {m['onnx']:.2f} | 1 |",
            f"| the same with `best.pt`, first run (exports and keeps the ONNX Runtime graph) | {m['pt_first']:.2f} | "
            f"{run['pt_first_over_onnx']:.2f} |",
            f"| the same with `best.pt` again (the kept graph) | {m['pt_again']:.2f} | {run['pt_again_over_onnx']:.2f} |",
            "", "Before the graph was kept (issue #34), every `.pt` run paid the export: 10.8-12.2 s against 5.1-7.1 s "
            "for the `.onnx` in one noisy run (about 2×), and `frpose --help` took 3.1 s because the package imported "
            "torch and torchvision on import. Why and how: "
            "[deployment.md](deployment.md#the-graph-of-a-checkpoint-is-kept)."]


def render_tracking(run: dict) -> list[str]:
    """The tracking section from docs/tracking_benchmarks.json (scripts/bench_tracking.py --json)."""
    videos = ", ".join(f"{v['image']} ({v['people']} people)" for v in run["videos"])
    lines = ["## Tracking", "",
             f"`scripts/bench_tracking.py` ([tracking_benchmarks.json](tracking_benchmarks.json); each part names the "
             f"command that measured it), on **{run['machine']}**: videos of real COCO images ({videos}) seen by a "
             f"camera panning {run['pan_px_per_frame']:g} px a frame, {run['frames']} frames at {run['fps']} frames/s, "
             "written as mp4 and read back, so every person's keypoints and box are known in every frame. Random "
             "weights run in full (their time is the real one) and their outputs are replaced by the truth: the "
             "detector's boxes by the frame's true boxes, each crop's keypoints by the true keypoints of the person it "
             f"shows plus Gaussian jitter of {100 * run['jitter']:g} % of the person's height "
             "(scripts/tracking_video.py)."]
    speeds = sorted(((k, v) for k, v in run.items() if k.startswith("speed")), key=lambda kv: kv[0] != "speed")
    for key, sp in speeds:
        per = ", ".join(f"{r:.2f}×" for r in sp["ratio_per_round"])
        lines += ["", f"**`--det-every 5` against `--det-every 1`**, detector {sp['detector']}, pose network "
                      f"{sp['pose']}, with `--smooth`, runs alternated:", "",
                  "| --det-every | frames/s by round | tracking + smoothing share of the time |", "|---:|---|---:|"]
        for every, rows in sp["rows"].items():
            fps = ", ".join("{:.3f}".format(r["fps"]) for r in rows)
            lines.append(f"| {every} | {fps} | {max(r['track_share'] for r in rows) * 100:.2f} % at most |")
        lines += ["", f"`--det-every 5` ran at **{sp['ratio_best']:.2f}×** the frames/s of `--det-every 1` (best rounds; "
                      f"per round {per}); tracking and smoothing took at most {sp['track_share_max'] * 100:.2f} % of "
                      f"a frame's time. (`{run.get('commands', {}).get(key, run['command'])}`)"]
    if len(speeds) > 1:
        lines += ["", "A frame costs detect + pose with `--det-every 1` and detect / 5 + pose with `--det-every 5`; the pose "
                      "network runs on every frame for every person (5 and 6 here), so the ratio shrinks as the detector "
                      "gets faster against it: in float32 (the detector's set-up before its first run has tried bf16) "
                      "and in bf16 (where this CPU ends up once both networks' accuracy gates pass with trained "
                      "weights). With fewer people per frame, or a larger `--det-every`, it grows."]
    ids = run.get("identities")
    if ids:
        lines += ["", "**Identities and MOTA** with the true boxes given (`--boxes`, per-frame JSON), against the true "
                      "boxes (motmetrics' accounting, IoU ≥ 0.5; people less than half in view are neither hits nor "
                      "false positives; between detections the box is the pose's keypoint box × 1.25, which can fall "
                      f"under IoU 0.5 with an annotated box: the misses and false positives of `--det-every 5`). "
                      f"(`{run.get('commands', {}).get('identities', run['command'])}`)", "",
                  "| video | people | --det-every | tracks | identity switches | MOTA | misses | false positives | "
                  "back with the same id |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in ids:
            back = (f"yes, after {r['hidden_frames']} frames hidden" if r.get("same_id_after_hiding") else
                    f"no ({r['hidden_frames']} frames hidden)") if "hidden_frames" in r else "–"
            lines.append(f"| {r['video']} | {r['people']} | {r['det_every']} | {r['tracks']} | {r['num_switches']:.0f} | "
                         f"{100 * r['mota']:.1f} % | {r['num_misses']:.0f} | {r['num_false_positives']:.0f} | {back} |")
    sm = run.get("smoothing")
    if sm:
        st, step = sm["steady"], sm["step"]
        lines += ["", "**Smoothing** on the panning video (keypoints jittered as above; the step: a tenth of a person, "
                      f"no jitter). (`{run.get('commands', {}).get('smoothing', run['command'])}`)", "",
                  "| keypoints | acceleration px/frame² | error against the truth px | frames to follow the step |",
                  "|---|---:|---:|---|"]
        rows = [("raw (the network's)", st["raw"], None), ("`--smooth` (One Euro, online)", st["smooth"], step),
                ("`--smooth-offline` (±4 frames)", sm.get("steady offline", {}).get("smooth"), sm.get("step offline"))]
        for name, r, stp in rows:
            if r:
                follow = ", ".join(str(n) for n in stp["step_frames"]) if stp else "–"
                lines.append(f"| {name} | {r['accel_px']:.2f} | {r['error_px']:.2f} | {follow} |")
        off = sm.get("steady offline", {})
        lines += ["", f"`--smooth` cut the acceleration by **{100 * st['accel_cut']:.0f} %** and followed the step within "
                      f"{max(step['step_frames'])} frames; its error grows by its lag behind a moving keypoint. "
                      + (f"`--smooth-offline` cut it by **{100 * off['accel_cut']:.0f} %** with less error than the raw "
                         "keypoints (a quadratic through steady motion does not lag), which is why files get it; a "
                         "live stream cannot wait for the frames after. " if off else "")
                      + "Frames to follow: one value per track, until the smoothed keypoints were back within 10 % of "
                      "the step beyond the error they had before it."]
    lv = run.get("live")
    if lv:
        lines += ["", f"**Live**: the first video served as MJPEG over loopback HTTP at {1000 / lv['frame_interval_ms']:.0f} "
                      f"frames/s for {run.get('live_seconds', 60):g} s, whole-image boxes: {lv['frames']} frames run, "
                      f"{lv['dropped']} dropped while the network was busy; latency from a frame's arrival to its "
                      f"overlay drawn median {lv['median']:.0f} ms, p95 {lv['p95']:.0f} ms, max {lv['max']:.0f} ms; the "
                      f"median over the first 10 s {lv['first_10s_median_ms']:.0f} ms, over the last 10 s "
                      f"{lv['last_10s_median_ms']:.0f} ms (no backlog: a queue would grow by seconds). One pose pass "
                      f"({lv['pose_ms_per_frame']:.0f} ms, the pose stage's mean) plus one frame interval "
                      f"({lv['frame_interval_ms']:.0f} ms) is {lv['pose_ms_per_frame'] + lv['frame_interval_ms']:.0f} ms: "
                      "the median is within it, the slowest twentieth of frames above it by the work around the network "
                      "(cropping, decoding, drawing; the reader thread decoding JPEGs on the same 2 cores). "
                      f"(`{run.get('commands', {}).get('live', run['command'])}`)"]
    return lines


RUNTIMES_HEADING = ("## End to end with the detector in ONNX Runtime or OpenVINO\n\n"
                    "The RTMDet set-ups outside torch (`pip install \"frpose[openvino]\"` for OpenVINO's; "
                    "docs/detectors.md), with torch's beside them in the same run: what `predict` runs where the "
                    "extra is installed.")
AVX2_HEADING = ("## End to end with AVX-512 capped off (standing in for an AVX2-only CPU)\n\n"
                "The same benchmark run with `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2` before the command: "
                "torch's and oneDNN's AVX2 code on the same cores, which frpose then treats as an AVX2 machine "
                "(no native bf16, so no bf16 rows; frpose_cli/hardware.py). No AVX2-only CPU was at hand; the "
                "cores, caches and clock are still the AVX-512 machine's.")


def render_predict(run: dict, heading: str = "## End to end: `frpose predict` with each detector set-up") -> list[str]:
    """An end-to-end section from docs/predict_benchmarks*.json (scripts/bench_predict.py --json)."""
    rows = run["rows"]
    roof = any("pct_roofline_alone" in r for r in rows.values())   # runs since the roofline was measured
    first = next((r for k, r in rows.items() if k != "whole-image"), None)
    pose = rows.get("whole-image")
    lines = [heading, "",
             f"`{run['command']}` on {run['date']}: {run['images']} COCO val images, {run['model']} "
             f"{run['input_size'][0]}x{run['input_size'][1]} with the pose network in {run['pose_precision']} in every "
             f"row, detector input {str(run['det_size']) + ' px' if run['det_size'] else 'each detector' + chr(39) + 's own size'}, random weights (speed does not depend on them; the annotated "
             f"boxes stand in for the untrained detector's), on **{run['machine']}**. × first: images/s over the first "
             "detector row's, same run; pose ms: the pose stage per image (the pose network alone is the whole-image "
             "row, one person an image). Detect GFLOP/s: the float32 detector's FLOPs on these images (torch's "
             "FlopCounterMode) over the detect stage's time; % ceiling: of the measured ceiling of the set-up's "
             "precision (frpose_cli/deploy/ceiling.py). Alone: the same set-up on the same images by itself, warm, "
             "with no pipeline around it (no reader thread, no decode workers)" + ("; % roofline: of the network's own "
             "roofline (frpose_cli/deploy/roofline.py)" if roof else "") + ". × pose: the whole time per image over "
             "the pose stage's, for the same persons. **Bold**: the detector `--detector auto` picks by this run's "
             "figures (docs/detectors.md).", "",
             "| row | images/s | × first | × pose | detect ms/image | pose ms/image | persons | detect GFLOP/s | % ceiling "
             "| alone ms/image | alone % ceiling |" + (" alone % roofline |" if roof else ""),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if roof else "")]
    for label, r in rows.items():
        ratio = f"{r['images_per_s'] / first['images_per_s']:.2f}" if first else "–"
        ms = r.get("ms_per_image", {})
        rate = f"{r['detect_gflops_per_s']:.0f}" if "detect_gflops_per_s" in r else "–"
        pct = f"{r['pct_ceiling']:.0f} % of {r['ceiling_precision']} {r['ceiling_gflops']:.0f}" if "pct_ceiling" in r else "–"
        alone = (f"{r['alone_ms_per_image']:.0f} | {r['pct_ceiling_alone']:.0f} %" if "pct_ceiling_alone" in r
                 else "– | –")
        if roof:
            alone += f" | {r['pct_roofline_alone']:.0f} %" if "pct_roofline_alone" in r else " | –"
        name = f"**{label}**" if r.get("default") else label
        x_pose = f"{r['x_pose']:.2f}" if "x_pose" in r else "–"
        lines.append(f"| {name} | {r['images_per_s']:.3f} | {ratio} | {x_pose} | {ms.get('detect', 0):.0f} | "
                     f"{ms.get('pose', 0):.0f} | {r['persons']} | {rate} | {pct} | {alone} |")
    if any(label.endswith(" overlap") for label in rows):
        pairs = [(label, label[:-len(" overlap")]) for label in rows if label.endswith(" overlap")]
        gains = ", ".join(f"{base} {rows[label]['images_per_s'] / rows[base]['images_per_s']:.2f}×"
                          for label, base in pairs if base in rows and rows[base]["images_per_s"])
        lines += ["", "Rows ending in *overlap* ran with `predict --overlap` (the detector one image ahead in a helper "
                      "thread, frpose_cli/inference/detect_ahead.py); their detect column is the time the main thread "
                      f"waited for it. Images/s with overlap over the same row without, same run: {gains}."]
    rule = run.get("default_rule")
    if rule:
        lines += ["", f"`--detector auto` on this CPU, by these figures: **{rule['detector']}**, {rule['why']}: the "
                      "pose stage's mean over the detector rows is the typical image's pose time "
                      "(frpose_cli/inference/detector_choice.py holds these figures)."]
    if pose and first and "default_rule" not in run:
        lines += ["", f"Per image, detection takes {first['ms_per_image']['detect'] / pose['ms_per_image']['pose']:.1f}× "
                      "the pose network's time for one person with the default detector in its first row."]
    return lines


def load_table2() -> list | None:
    path = ROOT / "docs" / "table2.json"
    return json.loads(path.read_text()) if path.is_file() else None


if __name__ == "__main__":
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "benchmarks.json"
    (ROOT / "docs" / "benchmarks.md").write_text(render(json.loads(src.read_text()), load_table2()))
