"""The type and range of every numeric option, declared once by the option's name.

One name means one thing on every verb (``--det-thr`` is a box score from 0 to 1 wherever it is taken),
so one table serves them all: each verb's ``typer.Option`` gets its bounds from :func:`limits` (typer
refuses a value out of range before the verb runs, and the CLI prints it as one line naming the option,
the value and the range: :func:`usage_line`), and the Python API checks its arguments of the same
meaning against the same table (``api_arguments.in_range``, e.g. ``PredictOptions``, ``PosePredictor``).  ``tests/test_option_ranges.py`` walks every command, so an
option added without a range, or a range that differs from this table, fails the suite.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    kind: type            # int or float
    low: float | None     # None: open
    high: float | None

    def describe(self) -> str:
        what = "a whole number" if self.kind is int else "a number"
        if self.low is not None and self.high is not None:
            return f"{what} from {self.low:g} to {self.high:g}"
        if self.low is not None:
            return f"{what}, {self.low:g} or more"
        return f"{what}, at most {self.high:g}" if self.high is not None else what

    def holds(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if not math.isfinite(value) or (self.kind is int and not float(value).is_integer()):
            return False
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)


# option → its range; the same option on two verbs has one meaning, so one range
RANGES: dict[str, Range] = {
    # scores and thresholds
    "--det-thr": Range(float, 0.0, 1.0),
    "--nms-thr": Range(float, 0.0, 1.0),
    "--kpt-thr": Range(float, 0.0, 1.0),
    "--pck": Range(float, 0.001, 10.0),          # α × the reference size; above 10 every keypoint is "correct"
    "--flip-shift": Range(float, -4.0, 4.0),     # heatmap pixels; the codecs' own are 0 to 1
    # sizes and counts
    "--det-size": Range(int, 32, 10000),         # RTMDet adds its own rule (multiples of 32, 64-2048)
    "--batch-size": Range(int, 1, 65536),
    "--batch": Range(int, 1, 65536),
    "--workers": Range(int, 0, 512),
    "--threads": Range(int, 1, 4096),
    "--max-pixels": Range(int, 1, None),
    "--vid-stride": Range(int, 1, None),
    "--save-every": Range(int, 1, None),
    "--det-every": Range(int, 1, 10000),
    "--track-lifetime": Range(int, 0, 100000),
    # training
    "--epochs": Range(int, 1, 100000),
    "--lr": Range(float, 1e-10, 10.0),
    "--seed": Range(int, 0, 2**32 - 1),          # numpy's seed range
    "--val-every": Range(int, 0, 100000),        # 0: never
    "--log-every": Range(int, 1, None),
    "--limit": Range(int, 1, None),
    "--gpus": Range(int, 0, 4096),               # 0: the CPU
    # export and bench
    "--opset": Range(int, 11, 20),               # torch's TorchScript exporter: up to 20; 11 for the resizes
    "--warmup": Range(int, 0, None),
    "--iters": Range(int, 1, None),
}


def limits(option: str) -> dict:
    """``typer.Option(..., **limits("--det-thr"))``: the bounds typer enforces for ``option``."""
    r = RANGES[option]
    return {"min": r.low, "max": r.high}


def raw_value(args: list[str], opts) -> str | None:
    """The text given to an option on the command line (its last occurrence, as the parser takes it)."""
    found = None
    for i, arg in enumerate(args):
        for opt in opts:
            if arg == opt and i + 1 < len(args):
                found = args[i + 1]
            elif opt.startswith("--") and arg.startswith(opt + "="):
                found = arg[len(opt) + 1:]
            elif not opt.startswith("--") and arg.startswith(opt) and len(arg) > len(opt):
                found = arg[len(opt):]   # -b8
    return found


def usage_line(error, args: list[str]) -> str:
    """typer's usage error as one line: for a numeric option, its name, the value given and the range."""
    param = getattr(error, "param", None)
    opts = [o for o in (getattr(param, "opts", None) or []) if o.startswith("-")]
    name = max(opts, key=len) if opts else None
    if name in RANGES:
        given = raw_value(args, opts)
        return f"{name} {given if given is not None else ''}: must be {RANGES[name].describe()}".replace(" :", ":")
    message = error.format_message() if hasattr(error, "format_message") else str(error)
    return " ".join(message.split())
