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


def test_the_zoos_detector_times_are_the_end_to_end_benchmarks_fp32_rows():
    """`frpose models` and predict's summary quote each detector's float32 CPU time: the figure measured in
    docs/predict_benchmarks.json (shown in docs/benchmarks.md), not a second copy that drifts from it."""
    import json
    from frpose_cli.weights import zoo
    rows = json.loads((Path(__file__).parent.parent / "docs" / "predict_benchmarks.json").read_text())["rows"]
    for entry in zoo.DETECTORS:
        assert entry.cpu_ms == round(rows[f"{entry.name} fp32"]["ms_per_image"]["detect"]), entry.name
