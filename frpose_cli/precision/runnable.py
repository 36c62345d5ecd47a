"""The one call every verb uses to turn a loaded float32 network into the runnable model of a
precision (``--precision fp32|bf16|fp16|int8|auto``): a fixed precision is checked against the
machine (:func:`frpose_cli.precision.formats.unavailable_reason`) and built; ``auto`` is decided
by :func:`frpose_cli.precision.autoselect.choose`."""
from __future__ import annotations

import torch

from frpose_cli.errors import FrposeError
from frpose_cli import hardware
from frpose_cli.precision.autoselect import choose
from frpose_cli.precision.formats import build_setup, check_precision, default_precision, setup_for, \
    unavailable_reason, wrap
from frpose_cli.runtime.optimize import check_backend


def runnable_model(net: torch.nn.Module, card, device, precision: str | None = None, backend: str = "auto",
                   codec_name: str | None = None, source: str = "", calib_data=None, log=None, hw=None,
                   decide: bool = True):
    """The float32 network ``net`` (eval mode, any device) → a runnable PoseModel in ``precision``
    (None: :func:`default_precision`).  ``auto`` runs :func:`choose` (``decide``: whether an
    undecided choice is made now or float32 runs meanwhile)."""
    device = torch.device(device)
    precision = check_precision(precision or default_precision(device))
    check_backend(backend)
    hw = hw or hardware.detect(device)   # through the module: tests mock the machine there
    if precision == "auto":
        selection, module = choose(net, card, device, backend, hw, calib_data=calib_data, codec_name=codec_name,
                                   log=log, decide=decide)
        model = wrap(module, selection.setup, card, codec_name, source)
        model.selection = selection
        return model
    reason = unavailable_reason(precision, device, hw, backend)
    if reason:
        raise FrposeError(f"--precision {precision}: {reason}")
    setup = setup_for(precision, device, backend)
    return wrap(build_setup(net, card, device, setup, calib_data, codec_name=codec_name), setup, card,
                codec_name, source)
