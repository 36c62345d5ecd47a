"""`frpose predict`."""
from __future__ import annotations

import typer

from ._pending import not_yet


def predict(model: str = typer.Argument(None, help="Model card name, e.g. frpose-r34")) -> None:
    """Run pose estimation on images, folders or videos (not implemented yet: issue #5)."""
    not_yet("predict", 5)
