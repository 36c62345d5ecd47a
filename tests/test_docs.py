"""The README and docs/ point at files that exist: links, and the module paths they name."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_and_named_files_exist(page):
    text = page.read_text()
    missing = []
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target or target.startswith("mailto:"):
            continue
        if not (page.parent / target).exists():
            missing.append(target)
    for path in re.findall(r"\b((?:frpose_cli|scripts|tests|models)/[\w/.-]*\w)", text):
        if not (ROOT / path).exists() and not any(c in path for c in "*{"):
            missing.append(path)
    assert not missing, f"{page.name}: {sorted(set(missing))}"
