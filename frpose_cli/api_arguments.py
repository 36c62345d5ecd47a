"""Checks of the Python API's arguments at its boundary (``PosePredictor``, ``Results``,
``load_pose_model``): a wrong argument is one :class:`~frpose_cli.errors.ArgumentValueError` or
:class:`~frpose_cli.errors.ArgumentTypeError` naming it and what it takes, never a numpy or OpenCV
error from deep inside.  Each returns the value in the form the code after it uses.
"""
from __future__ import annotations

import numbers

import numpy as np

from frpose_cli.errors import ArgumentTypeError, ArgumentValueError
from frpose_cli.option_ranges import RANGES

BOX_COLUMNS = "x, y, w, h, score"


def _shape(a: np.ndarray) -> str:
    return "(" + ", ".join(map(str, a.shape)) + ("," if a.ndim == 1 else "") + ")"


def in_range(value, name: str, option: str | None = None):
    """``value`` (an int or float, numpy's too; not a bool) in the range the options' one table gives
    the CLI option of the same meaning (:data:`frpose_cli.option_ranges.RANGES`; ``option``, default
    ``--`` + ``name``), as an int or float; the error names the Python argument."""
    r = RANGES[option or "--" + name.replace("_", "-")]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name} must be {r.describe()} (got {type(value).__name__} {value!r})")
    value = int(value) if isinstance(value, numbers.Integral) else float(value)
    if not r.holds(value):
        raise ArgumentValueError(f"{name} must be {r.describe()} (got {value!r})")
    return int(value) if r.kind is int else value


def fields_in_range(options, names, optional=(), option_of: dict | None = None) -> None:
    """Each field ``names`` of an options dataclass in its CLI option's range (:func:`in_range`); a field of
    ``optional`` may be None (the component's own value); ``option_of``: a field whose option is named otherwise."""
    for name in names:
        value = getattr(options, name)
        if value is not None or name not in optional:
            in_range(value, name, (option_of or {}).get(name))


def text_or_none(value, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ArgumentTypeError(f"{name} must be a str or None (got {type(value).__name__} {value!r})")
    return value


def callable_or_none(value, name: str):
    if value is not None and not callable(value):
        raise ArgumentTypeError(f"{name} must be a callable taking one message, or None "
                                f"(got {type(value).__name__})")
    return value


def one_of(value, choices, name: str, none_ok: bool = False) -> str | None:
    """One of the strings ``choices`` (or None with ``none_ok``)."""
    if value is None and none_ok:
        return None
    allowed = ", ".join(choices) + (" or None" if none_ok else "")
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{name} must be one of {allowed} (got {type(value).__name__} {value!r})")
    if value not in choices:
        raise ArgumentValueError(f"unknown {name} {value!r}; choose from {allowed}")
    return value


def image_rgb_array(image, name: str = "image_rgb") -> np.ndarray:
    """An RGB picture as read by :func:`frpose_cli.data.images.read_image`: uint8 (H, W, 3), H, W ≥ 1."""
    want = f"{name} must be an RGB uint8 numpy array of shape (H, W, 3)"
    if not isinstance(image, np.ndarray):
        raise ArgumentTypeError(f"{want} (got {type(image).__name__})")
    if image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise ArgumentValueError(f"{want} with H, W ≥ 1 (got shape {_shape(image)})")
    if image.dtype != np.uint8:   # a float image in 0..1 would be cropped and normalised as near-black
        raise ArgumentTypeError(f"{want} (got dtype {image.dtype}; convert with np.clip(x, 0, 255).astype(np.uint8))")
    return image


def boxes_array(boxes, name: str = "boxes") -> np.ndarray:
    """(M, 5) x, y, w, h, score or (M, 4) x, y, w, h (score 1) → float64 (M, 5); an empty list → (0, 5).

    A single box must come as ``[box]``: a 1-D array, or a 3-D one such as (1, 2, 5), is refused
    rather than reshaped, since reshaping a wrong layout silently merges or splits boxes.  Values
    are not judged here: a NaN or degenerate box is the caller's to drop or refuse."""
    want = f"{name} must be an (M, 5) array of {BOX_COLUMNS} or (M, 4) of x, y, w, h"
    try:
        a = np.asarray(boxes)
    except ValueError:   # ragged nested lists: numpy's "inhomogeneous shape" names no argument
        raise ArgumentValueError(f"{want} (got rows of different lengths)") from None
    if a.dtype.kind not in "iuf":
        raise ArgumentTypeError(f"{want} of numbers (got dtype {a.dtype})")
    if a.size == 0 and a.ndim <= 2 and (a.ndim < 2 or a.shape[1] in (4, 5)):
        return np.zeros((0, 5))
    if a.ndim != 2 or a.shape[1] not in (4, 5):
        hint = "; one box is [box]" if a.ndim == 1 and len(a) in (4, 5) else ""
        raise ArgumentValueError(f"{want} (got shape {_shape(a)}{hint})")
    a = a.astype(np.float64)
    if a.shape[1] == 4:
        a = np.concatenate([a, np.ones((len(a), 1))], 1)
    return a
