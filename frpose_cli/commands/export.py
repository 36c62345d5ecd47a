"""`frpose export`."""
from __future__ import annotations

import typer

from ._pending import not_yet


def export(model: str = typer.Argument(None, help="Model card name, e.g. frpose-r34")) -> None:
    """Export to ONNX or TorchScript (not implemented yet: issue #6)."""
    not_yet("export", 6)
