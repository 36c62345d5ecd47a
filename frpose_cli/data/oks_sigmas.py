"""OKS sigmas for any keypoint set: where they come from, and ``--sigmas``.

OKS (COCO's keypoint similarity, used by COCOeval and OKS-NMS) needs one falloff σ per
keypoint: how precisely humans place that point, relative to the person's size.  COCO
measured them for its 17 body joints; other sets need their own.  A metric parameter that
is missing never stops training; it is resolved in this order, and the run says which:

1. ``--sigmas`` on ``train``/``eval``: a comma list (``0.026,0.079,…``), one value for every
   keypoint, or a JSON file holding a list or a ``{name: σ}`` object.  A value given on the
   command line wins over every file (a flag that is silently ignored is a bug);
2. a ``sigmas`` list in the annotation file's keypoint category (mmpose's dataset-metadata
   convention, values as OKS uses them, e.g. 0.026 for COCO's nose);
3. the σ recorded in the checkpoint or export (``eval``/``predict``: what training used);
4. COCO's table, when every keypoint has a COCO name (a subset of COCO's joints);
5. :data:`DEFAULT_OKS_SIGMA` for every keypoint, with a one-line warning.

The σ used are recorded in the checkpoint's keypoint set (and so in exports), so ``eval``
and ``predict`` use the same ones.
"""
from __future__ import annotations

import json
from pathlib import Path

from frpose_cli.errors import FrposeError
from frpose_cli.data.keypoints import COCO17_SIGMA_BY_NAME, KeypointSpec, check_sigmas

# About the mean of COCO's 17 (0.067): a point labelled as precisely as an average body joint.
DEFAULT_OKS_SIGMA = 0.07
# COCO's largest σ is 0.107; pycocotools' table lists them ×10 (0.26 … 1.07).  Larger values
# were probably copied from there, so they are reported (but used as given).
LARGEST_PLAUSIBLE_SIGMA = 0.25

FROM_FLAG, FROM_COCO, FROM_DEFAULT = "--sigmas", "COCO's table (by keypoint name)", "frpose's default"


def parse_sigmas(text, names) -> list[float]:
    """``--sigmas``: ``"0.05"`` (every keypoint), ``"0.026,0.079,…"`` or a JSON file (a list,
    or ``{name: σ}`` covering every keypoint) → one σ per keypoint of ``names``."""
    names = list(names)
    text = str(text).strip()
    path = Path(text)
    if text.lower().endswith(".json") or (path.is_file() and not _looks_numeric(text)):
        if not path.is_file():
            raise FrposeError(f"--sigmas {text}: no such file")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
            raise FrposeError(f"--sigmas {text}: not a readable JSON file ({type(e).__name__})") from None
        if isinstance(data, dict) and "sigmas" in data:
            data = data["sigmas"]
        if isinstance(data, dict):
            missing = [n for n in names if n not in data]
            extra = [n for n in data if n not in names]
            if missing or extra:
                raise FrposeError(f"--sigmas {text}: " + "; ".join(
                    p for p in (f"no σ for {', '.join(missing[:4])}" if missing else "",
                                f"unknown keypoints {', '.join(extra[:4])}" if extra else "") if p))
            values = [data[n] for n in names]
        elif isinstance(data, list):
            values = data
        else:
            raise FrposeError(f"--sigmas {text}: expected a JSON list or a {{name: σ}} object")
        source = f"--sigmas {path.name}"
    else:
        try:
            values = [float(v) for v in text.replace(" ", "").split(",") if v != ""]
        except ValueError:
            raise FrposeError(f"--sigmas {text!r}: give comma-separated numbers (e.g. 0.026,0.079) "
                              "or a JSON file") from None
        source = "--sigmas"
    if len(values) == 1 and len(names) > 1:
        values = values * len(names)
    check_sigmas(values, len(names), source)
    return [float(v) for v in values]


def _looks_numeric(text: str) -> bool:
    try:
        [float(v) for v in text.split(",")]
        return True
    except ValueError:
        return False


def resolve_sigmas(spec: KeypointSpec, given=None, recorded: KeypointSpec | None = None,
                   warn=None) -> KeypointSpec:
    """``spec`` with its OKS sigmas set, in the order of the module docstring.

    ``given``: the ``--sigmas`` text (or a list of numbers); ``recorded``: the keypoint set
    of a checkpoint/export (used when its names are ``spec``'s); ``warn(message)`` receives
    the one-line warnings (defaults and implausible values)."""
    warn = warn or (lambda message: None)
    names = spec.names
    if given is not None:
        values = parse_sigmas(given, names) if isinstance(given, (str, Path)) else [float(v) for v in given]
        check_sigmas(values, len(names), "--sigmas")
        out = spec.with_sigmas(values, FROM_FLAG)
    elif spec.sigmas is not None:
        out = spec
    elif recorded is not None and recorded.sigmas is not None and tuple(recorded.names) == tuple(names):
        out = spec.with_sigmas(recorded.sigmas, recorded.sigmas_from)
        if recorded.sigmas_from == FROM_DEFAULT:
            warn(default_warning(len(names), "recorded in the checkpoint"))
    elif all(n in COCO17_SIGMA_BY_NAME for n in names):
        out = spec.with_sigmas([COCO17_SIGMA_BY_NAME[n] for n in names], FROM_COCO)
    else:
        out = spec.with_sigmas([DEFAULT_OKS_SIGMA] * len(names), FROM_DEFAULT)
        unknown = [n for n in names if n not in COCO17_SIGMA_BY_NAME]
        warn(default_warning(len(names), f"{', '.join(unknown[:3])}{' …' if len(unknown) > 3 else ''} "
                                         "not COCO keypoint names"))
    big = [s for s in out.sigmas if s > LARGEST_PLAUSIBLE_SIGMA]
    if big:
        warn(f"warning: OKS σ {big[0]:g} from {out.sigmas_from} is larger than any COCO σ (at most 0.107); "
             "pycocotools lists them ×10, OKS uses them ÷10 (0.026 for the nose)")
    return out


def default_warning(k: int, why: str) -> str:
    return (f"warning: OKS σ {DEFAULT_OKS_SIGMA:g} for all {k} keypoints ({why}; no 'sigmas' in the "
            "annotation category, no --sigmas): AP is comparable only between runs with the same σ")


def describe(spec: KeypointSpec) -> str:
    """``"OKS σ 0.026 … 0.107 from COCO's table (by keypoint name)"`` for logs."""
    s = spec.sigmas or ()
    values = f"{min(s):.3g} … {max(s):.3g}" if s and min(s) != max(s) else (f"{s[0]:.3g}" if s else "unknown")
    return f"OKS σ {values} from {spec.sigmas_from or 'nowhere'}"
