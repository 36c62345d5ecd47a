"""`frpose train`."""
from __future__ import annotations

import typer

from ._pending import not_yet


def train(model: str = typer.Argument(None, help="Model card name, e.g. frpose-r34")) -> None:
    """Train a model card on COCO-format keypoint data (not implemented yet: issue #3)."""
    not_yet("train", 3)
