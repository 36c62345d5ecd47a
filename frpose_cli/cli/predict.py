"""`frpose predict` (and its alias `frpose track`): thin option parsing over
:func:`frpose_cli.inference.predict.run_predict`."""
from __future__ import annotations

import copy
import inspect
from pathlib import Path

import typer

from frpose_cli.inference.predict_options import PredictOptions
from frpose_cli.option_ranges import limits
from frpose_cli.cli.options import (BACKEND_HELP, CALIB_DATA_HELP, DET_EVERY_HELP, DET_SIZE_HELP, DETECTOR_HELP,
                                    LIFETIME_HELP, PRECISION_HELP,
                                    SHOW_HELP, SMOOTH_HELP, SMOOTH_OFFLINE_HELP, SMOOTH_PARAMS_HELP, TRACK_HELP, apply_download_options,
                                    apply_max_pixels, max_pixels_option, offline_option, shard_option,
                                    strict_hash_option, workers_option)

DEFAULTS = PredictOptions(source="")   # the defaults' one place, shared with the Python API
SOURCE_HELP = ("An image, a folder (recursive, natural order), a glob such as 'imgs/*.jpg' (quote it), a video, a "
               ".txt file listing paths, a webcam (0, webcam:N) or a stream URL (rtsp://, rtmp://, http(s)://)")


def predict(
    source: str = typer.Argument(..., help=SOURCE_HELP, show_default=False),
    weights: str = typer.Option(None, "--weights", "-w", help="Pose weights: a checkpoint from `frpose train`, "
                                "a published Simple Baselines / mmpose file, an `frpose export` ONNX/TorchScript "
                                "file, a zoo name (`frpose models`) or an http(s) URL. Default: the zoo's sbn-r50 "
                                "(Simple Baselines, downloaded once), or MODEL's zoo weights with --model"),
    backend: str = typer.Option("auto", "--backend", help=BACKEND_HELP),
    precision: str = typer.Option(None, "--precision", help=PRECISION_HELP),
    calib_data: Path = typer.Option(None, "--calib-data", help=CALIB_DATA_HELP),
    model: str = typer.Option(None, "--model", "-m", help="Model card name; only needed for files that do not "
                              "record it, must agree when given"),
    input_size: str = typer.Option(None, "--input-size", help="HxW, e.g. 256x192; must agree with the checkpoint"),
    detector: str = typer.Option("auto", "--detector", help=DETECTOR_HELP),
    detector_weights: str = typer.Option(None, "--detector-weights", help="Weights of the --detector "
                                         "architecture (auto: the one the file holds), file or URL (default: the "
                                         "zoo's file, downloaded once)"),
    boxes: Path = typer.Option(None, "--boxes", help="Person boxes instead of a detector: COCO detection results "
                               "JSON (bbox, score, image_id or file_name), per-frame boxes of a video "
                               "({\"frames\": {\"0\": [[x, y, w, h, score]]}}) or a MOT Challenge det.txt"),
    det_thr: float = typer.Option(DEFAULTS.det_thr, "--det-thr", **limits("--det-thr"),
        help="Minimum person box score (detector and --boxes), 0..1"),
    det_size: int = typer.Option(None, "--det-size", **limits("--det-size"), help=DET_SIZE_HELP, show_default=False),
    nms_thr: float = typer.Option(DEFAULTS.nms_thr, "--nms-thr", **limits("--nms-thr"),
        help="OKS-NMS threshold between poses of one image; "
                                  "1 keeps every box's pose"),
    device: str = typer.Option(None, "--device", help="cpu, cuda or cuda:N (default: cuda if available)"),
    batch_size: int = typer.Option(DEFAULTS.batch_size, "--batch-size", "-b", **limits("--batch-size"),
        help="Person crops per network batch"),
    flip: bool = typer.Option(True, "--flip/--no-flip", help="Flip test: average with the mirrored crop"),
    kpt_thr: float = typer.Option(DEFAULTS.kpt_thr, "--kpt-thr", **limits("--kpt-thr"),
        help="Draw keypoints whose score is at least this"),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder (default: a new runs/predict/runN)"),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out (default: the latest "
                                "matching runs/predict/runN), skipping images its logs (OUT/parts/) hold"),
    vid_stride: int = typer.Option(1, "--vid-stride", **limits("--vid-stride"), help="Use every n-th video frame"),
    track: bool = typer.Option(None, "--track/--no-track", help=TRACK_HELP, show_default=False),
    det_every: int = typer.Option(1, "--det-every", **limits("--det-every"), help=DET_EVERY_HELP),
    smooth: bool = typer.Option(False, "--smooth", help=SMOOTH_HELP),
    smooth_params: str = typer.Option(None, "--smooth-params", help=SMOOTH_PARAMS_HELP),
    smooth_offline: bool = typer.Option(False, "--smooth-offline", help=SMOOTH_OFFLINE_HELP),
    track_lifetime: int = typer.Option(30, "--track-lifetime", **limits("--track-lifetime"), help=LIFETIME_HELP),
    show: bool = typer.Option(False, "--show", help=SHOW_HELP),
    save_vis: bool = typer.Option(True, "--vis/--no-vis", help="Write overlays to OUT/vis/"),
    save_heatmaps: bool = typer.Option(False, "--heatmaps", help="Also write heatmap overlays to OUT/heatmaps/"),
    save_every: int = typer.Option(50, "--save-every", **limits("--save-every"),
        help="Append results to the run's log every N images "
                                   "(and every 10 s)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars"),
    offline: bool = offline_option(),
    strict_hash: bool = strict_hash_option(),
    max_pixels: int = max_pixels_option(),
    workers: int = workers_option("decoding and cropping images"),
    overlap: bool = typer.Option(None, "--overlap/--no-overlap", help="Detect the next image while the pose "
                                 "network runs (default: on for the detector networks, but SSDlite on a CPU; same results either way, "
                                 "docs/predict.md)"),
    shard: str = shard_option("files"),
) -> None:
    """Estimate poses in images, folders, videos and live streams; track people across frames; write COCO
    keypoint results, PoseTrack files and overlays.

    Exit code: 0 when every input was processed (a live stream ended by Ctrl-C, SIGTERM or q included),
    1 when some inputs were skipped (unreadable, corrupt or not images; a stream that stalled; listed in
    the summary and OUT/images.json), 2 for usage or fatal errors.
    """
    from frpose_cli.cards import parse_input_size
    from frpose_cli.inference.predict import run_predict
    from frpose_cli.inference.predict_options import parse_smooth_params

    apply_download_options(offline, strict_hash)
    apply_max_pixels(max_pixels)
    opts = PredictOptions(
        source=source, weights=weights, model=model, input_size=parse_input_size(input_size) if input_size else None,
        detector=detector, detector_weights=detector_weights, boxes=str(boxes) if boxes else None, det_thr=det_thr,
        det_size=det_size, nms_thr=nms_thr, device=device, backend=backend, precision=precision,
        calib_data=str(calib_data) if calib_data else None, batch_size=batch_size, flip=flip, kpt_thr=kpt_thr,
        out=str(out) if out else None, resume=resume, vid_stride=vid_stride, save_vis=save_vis,
        save_heatmaps=save_heatmaps, save_every=save_every, progress=progress, workers=workers, overlap=overlap,
        shard=shard, track=track, det_every=det_every, smooth=smooth, track_lifetime=track_lifetime, show=show,
        smooth_offline=smooth_offline,
        smooth_params=parse_smooth_params(smooth_params) if smooth_params else None)
    from frpose_cli.errors import note
    summary = run_predict(opts, log=note)
    from frpose_cli.inference.predict_report import summary_text
    print(summary_text(summary))
    raise typer.Exit(summary.exit_code)


def _tracking_by_default(fn):
    """`frpose track`: predict with --track the default (a folder of images is a sequence too)."""
    sig = inspect.signature(fn)   # typer rewrites an option's declarations when it registers them: copies
    params = [p.replace(default=typer.Option(True, "--track/--no-track", help=TRACK_HELP)) if p.name == "track"
              else p.replace(default=copy.deepcopy(p.default)) for p in sig.parameters.values()]

    def track(**kwargs):
        return fn(**kwargs)
    track.__signature__ = sig.replace(parameters=params)
    track.__annotations__ = dict(fn.__annotations__)   # typer reads the types from here
    track.__doc__ = "Same as `frpose predict --track`: people followed across frames (videos, streams, frame folders)."
    return track


track = _tracking_by_default(predict)
