"""What every user sees first: the version, the help of each verb, the zoo table's order."""
from __future__ import annotations

import importlib.metadata
import re

import pytest

from tests.helpers import run_cli

VERBS = ["train", "eval", "predict", "export", "bench", "merge", "models"]


def test_version_is_the_installed_distribution_version(capsys):
    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0
    assert out.strip() == f"frpose {importlib.metadata.version('frpose')}"


@pytest.mark.parametrize("verb", VERBS)
def test_help_shows_flags_without_a_value_placeholder(verb, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_cli([verb, "--help"], capsys)
    assert code == 0
    assert "--help" in out
    assert "<bool>" not in out and "BOOLEAN" not in out
    # Options that take a value still say what value.
    if verb in ("predict", "eval", "train"):
        assert re.search(r"--device\s+<str>", out), out


def test_models_table_lists_depths_in_numeric_order(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_cli(["models"], capsys)
    assert code == 0
    rows = [m.group(0) for m in re.finditer(r"\bfrpose-r\d+\b(?!-)", out)]
    depths = [int(r.split("-r")[1]) for r in dict.fromkeys(rows)]
    assert depths == sorted(depths) and len(depths) >= 4, out
