"""`frpose bench`."""
from __future__ import annotations

import typer

from ._pending import not_yet


def bench(models: list[str] = typer.Argument(None)) -> None:
    """Params, MACs, latency and throughput of model cards (being written: issue #2)."""
    not_yet("bench", 2)
