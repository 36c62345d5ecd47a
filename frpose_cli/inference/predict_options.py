"""The options of one `frpose predict` run (the CLI's, by the same names), with their types and
ranges declared once here (:data:`RANGES`) and checked before any work: a wrong value is one line.
"""
from __future__ import annotations

from dataclasses import dataclass

from frpose_cli.api_arguments import fields_in_range
from frpose_cli.errors import FrposeError
from frpose_cli.tracking.smoothing import OneEuroParams
from frpose_cli.tracking.tracker import LIFETIME


@dataclass
class PredictOptions:
    source: str
    weights: str | None = None
    model: str | None = None
    input_size: tuple | None = None
    detector: str = "auto"
    detector_weights: str | None = None
    boxes: str | None = None       # COCO detection results, per-frame boxes of a video, or MOT det.txt
    det_thr: float = 0.3
    det_size: int | None = None    # the detector's input size; None: its own (800 Faster R-CNN, 320/640 RTMDet)
    nms_thr: float = 0.9
    device: str | None = None
    backend: str = "auto"          # auto | torch | onnxruntime | openvino (load.load_pose_model)
    precision: str | None = None   # fp32 | bf16 | fp16 | int8 | auto; None: the device's default (precision.py)
    calib_data: str | None = None  # COCO root adding real crops for int8 calibration and the accuracy gate
    batch_size: int = 16
    flip: bool = True
    kpt_thr: float = 0.3
    out: str | None = None
    resume: bool = False
    vid_stride: int = 1
    save_vis: bool = True
    save_heatmaps: bool = False
    save_every: int = 50
    progress: bool = True
    workers: int = 2               # DataLoader processes decoding (and cropping) images
    overlap: bool | None = None    # detect the next image while the pose network runs; None: the detector's
                                   # default (detect_ahead.overlap_wanted)
    shard: str | None = None       # "i/n" without torchrun (shards.py)
    track: bool | None = None      # None: videos and streams are tracked, images are stills (tracking_stage.py)
    det_every: int = 1             # the detector runs on every N-th frame of a tracked sequence
    smooth: bool = False           # One Euro filter per track and keypoint (tracking/smoothing.py)
    smooth_params: OneEuroParams | None = None   # None: smoothing.DEFAULT
    smooth_offline: bool = False   # files: a quadratic over ±4 frames of each track (tracking/offline.py)
    track_lifetime: int = LIFETIME  # frames a track survives unseen
    show: bool = False             # a live window of the overlays


# the fields checked against the options' one table (option_ranges.RANGES, by the CLI option's name)
RANGED = ("det_thr", "nms_thr", "kpt_thr", "det_size", "batch_size", "workers", "vid_stride", "save_every",
          "det_every", "track_lifetime")
OPTIONAL = {"det_size"}   # None: the component's own value


def check_options(opts: PredictOptions) -> None:
    """Every range of :data:`RANGED` and the combinations that cannot work, one line each."""
    if not isinstance(opts, PredictOptions):
        raise TypeError(f"opts must be PredictOptions (got {type(opts).__name__})")
    fields_in_range(opts, RANGED, OPTIONAL)   # the CLI's typer options refuse these first, naming the option
    if opts.det_size is not None and opts.boxes is None:   # RTMDet's canvas rule, before any model loads
        from frpose_cli.inference.rtmdet_detector import FAMILIES, check_input_size
        if opts.detector in FAMILIES:
            check_input_size(opts.det_size, opts.detector)
    if opts.det_every > 1 and opts.track is False:
        raise FrposeError("--det-every N > 1 takes each person's box between detections from their pose in the "
                          "frame before, which needs tracking: drop --no-track")
    if (opts.smooth or opts.smooth_offline) and opts.track is False:
        raise FrposeError(f"--smooth{'-offline' if opts.smooth_offline else ''} filters each track's keypoints over "
                          "time: it needs tracking (drop --no-track)")
    if opts.smooth and opts.smooth_offline:
        raise FrposeError("--smooth (online, One Euro) and --smooth-offline (future frames too) are two ways to "
                          "smooth: choose one")
    if opts.smooth_params is not None and not isinstance(opts.smooth_params, OneEuroParams):
        raise FrposeError("smooth_params must be OneEuroParams(min_cutoff, beta, d_cutoff)")


def parse_smooth_params(text: str) -> OneEuroParams:
    """``--smooth-params MIN_CUTOFF,BETA,D_CUTOFF`` (docs/tracking.md) → OneEuroParams, one line if wrong."""
    try:
        values = [float(v) for v in str(text).split(",")]
        if len(values) != 3:
            raise ValueError("three numbers")
        return OneEuroParams(*values)
    except (TypeError, ValueError) as e:
        raise FrposeError(f"--smooth-params {text!r}: expected MIN_CUTOFF,BETA,D_CUTOFF, e.g. 1.0,3.0,1.0 "
                          f"(positive cut-offs in Hz, beta ≥ 0; {e})") from None
