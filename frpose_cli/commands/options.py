"""Options shared by several verbs, defined once so their names and help agree."""
from __future__ import annotations

import typer

OFFLINE_HELP = ("Never use the network: named weights must already be in the cache (same as FRPOSE_OFFLINE=1; "
                "FRPOSE_MIRROR redirects downloads, FRPOSE_HOME moves the cache)")


def offline_option():
    return typer.Option(False, "--offline", help=OFFLINE_HELP)


def apply_offline(offline: bool) -> None:
    if offline:
        from ..download import set_offline
        set_offline(True)


def workers_option(what: str):
    return typer.Option(2, "--workers", "-j", help=f"DataLoader worker processes {what} (0: in the main process)")


def shard_option(unit: str):
    return typer.Option(None, "--shard", help=f"i/n: do shard i (0 ≤ i < n) of n, split by {unit}, without torchrun "
                        "(array jobs); the last shard to finish merges, or `frpose merge`. Under torchrun "
                        "each rank is a shard by itself")
