"""The rich console every verb prints through."""
from __future__ import annotations

from rich.console import Console


def make_console(stderr: bool = False) -> Console:
    """A console that, when piped or captured, is wide enough for our tables instead of 80 columns."""
    console = Console(stderr=stderr)
    if not console.is_terminal:
        console.width = max(console.width, 170)
    return console
