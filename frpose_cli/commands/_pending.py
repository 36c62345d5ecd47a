"""Verbs that later issues fill in: they exist from the start and say so clearly."""
from ..errors import FrposeError


def not_yet(verb: str, issue: int):
    raise FrposeError(f"`frpose {verb}` is not implemented yet (tracked in issue #{issue}); "
                      "`frpose bench` and the Python API (frpose_cli.load_card) work now")
