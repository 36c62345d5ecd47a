"""Options several verbs share, defined once so their names and help agree (no heavy imports here)."""
from __future__ import annotations

import typer

from frpose_cli.option_ranges import limits

OFFLINE_HELP = ("Never use the network: named weights must already be in the cache (same as FRPOSE_OFFLINE=1; "
                "FRPOSE_MIRROR redirects downloads, FRPOSE_HOME moves the cache)")
STRICT_HASH_HELP = ("Refuse a downloaded file whose name claims a hash (torchvision's name-0676ba61.pth, OpenMMLab's "
                    "name-04af38ce_20220923.pth) that its content does not match; without it such a file from "
                    "your own URL is kept with a warning (zoo files are always refused). Same as FRPOSE_STRICT_HASH=1")


def offline_option():
    return typer.Option(False, "--offline", help=OFFLINE_HELP)


def strict_hash_option():
    return typer.Option(False, "--strict-hash", help=STRICT_HASH_HELP)


def apply_download_options(offline: bool, strict_hash: bool = False) -> None:
    """Set ``--offline`` / ``--strict-hash`` for the rest of the process (only ever turned on: the
    env vars may have turned them on already)."""
    if offline:
        from frpose_cli.weights.download import set_offline
        set_offline(True)
    if strict_hash:
        from frpose_cli.weights.download import set_strict_hash
        set_strict_hash(True)


MAX_PIXELS_HELP = ("Largest image decoded, in pixels (width × height; default 150000000, or $FRPOSE_MAX_PIXELS): an "
                   "image whose header declares more is skipped and reported before it is decoded")


def max_pixels_option():
    return typer.Option(None, "--max-pixels", **limits("--max-pixels"), help=MAX_PIXELS_HELP)


def apply_max_pixels(max_pixels: int | None) -> None:
    if max_pixels is not None:
        from frpose_cli.data.images import set_max_pixels
        set_max_pixels(max_pixels)


def apply_offline(offline: bool) -> None:
    apply_download_options(offline)


BACKEND_HELP = ("The inference runtime: auto | torch | onnxruntime | openvino (CPU; pip install \"frpose[openvino]\"). "
                "auto: ONNX files on onnxruntime, OpenVINO IR (.xml) on openvino, TorchScript on torch, checkpoints "
                "on the set-up --precision chooses (on the CPU: onnxruntime for float32, or the fastest set-up that "
                "passes the accuracy gate, OpenVINO's among them where installed; docs/deployment.md)")
PRECISION_HELP = ("fp32 | bf16 | fp16 | int8 | auto (default: auto on the CPU, fp32 on GPUs; $FRPOSE_PRECISION "
                  "overrides). auto runs the fastest precision this machine has natively that passes the "
                  "accuracy gate, chosen once per model and machine and cached (docs/deployment.md)")
SIGMAS_HELP = ("OKS σ per keypoint: comma list (0.026,0.079,…), one value for all, or a JSON file (list or "
               "{name: σ}). Without it: the annotation category's 'sigmas', else COCO's for COCO keypoint names, "
               "else 0.07 with a warning (docs/keypoints.md)")
CALIB_DATA_HELP = ("COCO root whose people join the vendored ones: its train2017 calibrates int8, its val2017 "
                   "feeds the accuracy gate")


def workers_option(what: str):
    return typer.Option(2, "--workers", "-j", **limits("--workers"), help=f"DataLoader worker processes {what} (0: in the main process)")


def shard_option(unit: str):
    return typer.Option(None, "--shard", help=f"i/n: do shard i (0 ≤ i < n) of n, split by {unit}, without torchrun "
                        "(array jobs); the last shard to finish merges, or `frpose merge`. Under torchrun "
                        "each rank is a shard by itself")


TRACK_HELP = ("Follow people across frames: every record of a video, stream or frame folder gets track_id, frame "
              "and timestamp (default: on for videos and streams, off for images; --track makes each folder of "
              "images one sequence, --no-track gives per-frame records as in earlier versions; docs/tracking.md)")
DETECTOR_HELP = ("auto | whole-image | torchvision | a zoo detector: rtmdet-m (person AP 62.5), rtmdet-nano "
                 "(person AP 40.3, fastest), fasterrcnn-r50-fpn (= torchvision, the paper's family), "
                 "fasterrcnn-mobilenet-v3, ssdlite320-mobilenet-v3. auto: the most accurate detector within the "
                 "pose network's time on a CPU, the most accurate on a GPU (the log says which and why; "
                 "docs/detectors.md); offline without its file, a cached one, else the whole image (with a warning)")
DET_SIZE_HELP = ("Detector input size in pixels (default: the detector's own: 640 rtmdet-m, 320 rtmdet-nano, "
                 "800 shorter side for Faster R-CNN; RTMDet takes multiples of 32 from 64 to 2048; smaller is faster)")
DET_EVERY_HELP = ("Run the person detector on every N-th frame of a tracked sequence; between, each person's box is "
                  "their previous pose's keypoint box × 1.25 (RTMPose's CPU figures use 5)")
SMOOTH_HELP = ("Steady keypoints: a One Euro filter per track and keypoint on the frames' clock; records keep the "
               "raw values in keypoints_raw")
SMOOTH_OFFLINE_HELP = ("Files only: smooth each track with a quadratic fitted over ±4 frames, future ones included "
                       "(Savitzky-Golay; steadier and without lag, each frame written 4 frames late); raw values in "
                       "keypoints_raw")
SMOOTH_PARAMS_HELP = "One Euro MIN_CUTOFF,BETA,D_CUTOFF (Hz, Hz per person size per second, Hz); default 1.0,3.0,1.0"
LIFETIME_HELP = "Frames a track survives unseen before its id ends (a person back within it keeps their id)"
SHOW_HELP = "Show the overlays in a window as they are made (q or Esc stops); needs a display"
