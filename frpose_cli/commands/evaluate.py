"""`frpose eval`."""
from __future__ import annotations

import typer

from ._pending import not_yet


def evaluate(model: str = typer.Argument(None, help="Model card name, e.g. frpose-r34")) -> None:
    """Evaluate on COCO keypoints with the official protocol (not implemented yet: issue #4)."""
    not_yet("eval", 4)
