"""The run folder of `frpose predict`: which run a command writes to, continues or joins.

A new run's folder (``runs/predict/run1``, ``run2``, ...) comes from
:func:`frpose_cli.run_folders.new_run_path`, the one naming scheme of every verb. A run folder
holds ``parts/`` (the append-only logs of :mod:`frpose_cli.inference.run_log`, what ``--resume``
continues) and, once merged, ``predictions.json`` and ``images.json``.  A run records the options
that shape its results (``RUN_OPTIONS``: source, weights, detector, thresholds, flip, ...).
``--resume`` continues only a run whose recorded options match; without ``--out`` it picks the
newest matching run under ``runs/predict`` or starts a new one.  Shards of one run
(``--shard i/n``) share a folder: a shard joins a folder holding other shards' logs made with
the same options.  Every name written under the run folder is made relative first
(:func:`safe_relative`), so an absolute or ``..`` file name from a list file can never point
outside it.
"""
from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath

import numpy as np

from frpose_cli import run_folders
from frpose_cli.errors import FrposeError
from frpose_cli.outputs import check_writable_dir
from frpose_cli.inference.run_log import header_of, list_logs
from frpose_cli.data.sources import SourceItem

PREDICTIONS, IMAGES = "predictions.json", "images.json"
RUN_OPTIONS = ("source", "weights", "model", "input_size", "detector", "detector_weights", "boxes", "det_thr",
               "det_size", "nms_thr", "backend", "precision", "flip", "vid_stride")
# tracking's options shape results too; recorded only when not at their default, so a run without them
# records what earlier versions did (and those runs still resume)
TRACK_OPTIONS = {"track": None, "det_every": 1, "smooth": False, "smooth_params": None, "smooth_offline": False,
                 "track_lifetime": 30}


def safe_relative(name: str) -> PurePosixPath:
    """A file name as a path that stays inside the folder it is joined to: drive, root, ``.`` and
    ``..`` parts dropped (``/data/a/x.jpg`` → ``data/a/x.jpg``, ``../x.jpg`` → ``x.jpg``)."""
    parts = [p for p in str(name).replace("\\", "/").split("/")
             if p not in ("", ".", "..") and not re.fullmatch(r"[A-Za-z]:", p)]
    return PurePosixPath(*parts) if parts else PurePosixPath("unnamed")


def run_options(opts) -> dict:
    """The options of a predict run that shape its results, with paths made absolute."""
    def where(value):
        if value is None:
            return None
        path = Path(str(value)).expanduser()
        return str(path.resolve()) if path.exists() else str(value)
    out = {k: getattr(opts, k) for k in RUN_OPTIONS}
    from frpose_cli.data.live import live_spec
    live = live_spec(str(opts.source))   # a stream's URL is recorded without its credentials
    out.update(source=live.display_name if live else where(opts.source), weights=where(opts.weights) or "(zoo default)",
               detector_weights=where(opts.detector_weights), boxes=where(opts.boxes),
               input_size=list(opts.input_size) if opts.input_size else None)
    for k, default in TRACK_OPTIONS.items():
        value = getattr(opts, k, default)
        value = list(vars(value).values()) if hasattr(value, "min_cutoff") else value
        if value != default:
            out[k] = value
    return out


def recorded_options(run_dir: Path) -> dict | None:
    """The options the run was made with: from its newest log, else from its images.json."""
    for log in reversed(list_logs(run_dir)):
        header = header_of(log.path)
        if header is not None:
            return header.get("options")
    try:
        info = json.loads((run_dir / IMAGES).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return info.get("options") if isinstance(info, dict) else None


def holds_results(run_dir: Path) -> bool:
    return (Path(run_dir) / PREDICTIONS).exists() or bool(list_logs(run_dir))


def option_differences(recorded: dict | None, options: dict) -> list[str]:
    if recorded is None:
        return ["options (the run records none)"]
    keys = [*RUN_OPTIONS, *TRACK_OPTIONS]
    mine = {**TRACK_OPTIONS, **options}
    theirs = {**TRACK_OPTIONS, **recorded}
    return [f"{k} {theirs.get(k)!r} ≠ {mine[k]!r}" for k in keys if theirs.get(k) != mine[k]]


def make_record(item: SourceItem, kpts: np.ndarray, box: np.ndarray, score: float) -> dict:
    """A COCO keypoint result; its ``image_id`` is filled in when the run's logs are merged."""
    rec = {"image_id": None, "file_name": item.file_name, "category_id": 1,
           "keypoints": [round(float(v), 2) for v in kpts.reshape(-1)],
           "score": round(float(score), 5), "bbox": [round(float(v), 2) for v in box[:4]],
           "box_score": round(float(box[4]), 5)}
    if item.frame is not None:
        rec["frame"] = item.frame
    return rec


def resolve_out_dir(out, resume: bool, options: dict, shard=None, log=print) -> Path:
    """Where this run writes (see module docstring); the location is checked before any work."""
    label = shard.label if shard is not None and shard.sharded else None
    if out:
        out_dir = Path(out)
        _check_joinable(out_dir, resume, options, shard, log)
    else:
        if label is not None and not getattr(shard, "torchrun", False):
            raise FrposeError("--shard needs --out DIR: every shard of the run writes into that one folder")
        out_dir, base = None, run_folders.verb_dir("predict")
        if resume:
            runs = sorted(((int(m.group(1)), p) for p in (base.iterdir() if base.is_dir() else ())
                           if (m := re.fullmatch(rf"{run_folders.GENERIC}(\d+)", p.name)) and holds_results(p)),
                          reverse=True)
            out_dir = next((p for _, p in runs if not option_differences(recorded_options(p), options)), None)
            if out_dir is None:
                log(f"--resume: no run under {base} was made with these options; starting a new one")
        out_dir = out_dir or run_folders.new_run_path("predict")
    check_writable_dir(out_dir, "--out")
    return out_dir


def _check_joinable(out_dir: Path, resume: bool, options: dict, shard, log) -> None:
    """An existing folder is continued only with --resume and the same options; a job of an array
    (``--shard i/n``) joins its siblings' folder without --resume (their logs, same options)."""
    logs = list_logs(out_dir)
    merged = (out_dir / PREDICTIONS).exists()
    array_job = shard is not None and shard.sharded and not shard.torchrun
    mine = [f for f in logs if not array_job or (f.index, f.count) == (shard.index, shard.count)]
    if not resume:
        if merged or mine:
            what = PREDICTIONS if merged else f"the results of shard {shard.label}" if array_job else "results"
            raise FrposeError(f"{out_dir} already holds {what}; pass --resume to continue that run "
                              "or choose another --out")
    elif not logs and not merged:
        if not array_job:
            raise FrposeError(f"--resume: {out_dir} holds no {PREDICTIONS} or parts/ to continue")
        log(f"--resume: nothing in {out_dir} yet; starting shard {shard.label}")
        return
    if logs or merged:
        diff = option_differences(recorded_options(out_dir), options)
        if diff:
            raise FrposeError(f"{'--resume: ' if resume else ''}{out_dir} was made with other options "
                              f"({'; '.join(diff)}); resume it with the same ones, or start a new run elsewhere")
    if merged and not logs:
        raise FrposeError(f"--resume: {out_dir} holds {PREDICTIONS} but not the parts/ logs a resume continues "
                          "(made by an older frpose, or parts/ deleted); start a new run elsewhere")
