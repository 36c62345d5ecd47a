"""The README and docs/ point at files that exist: links, and the module paths they name."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings (code blocks left out)."""
    from test_readme import anchors as readme_anchors
    return readme_anchors(page)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_and_named_files_exist(page):
    text = page.read_text()
    missing = []
    for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", text):
        if "://" in target or target.startswith("mailto:"):
            continue
        path = page.parent / target if target else page
        if not path.exists():
            missing.append(target)
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            missing.append(f"{target}#{anchor} (no such heading)")
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


def test_benchmarks_page_is_what_its_json_files_say():
    """docs/benchmarks.md is rendered from the benchmarks' JSON files (scripts/render_benchmarks.py): a figure edited
    by hand in one of them, or a run whose JSON was not rendered, shows here."""
    import importlib.util
    import json
    spec = importlib.util.spec_from_file_location("render_benchmarks", ROOT / "scripts" / "render_benchmarks.py")
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    made = render.render(json.loads((ROOT / "docs" / "benchmarks.json").read_text()), render.load_table2())
    assert made == (ROOT / "docs" / "benchmarks.md").read_text()


def test_the_detector_set_up_shares_are_their_json():
    """docs/detectors.md's ceiling and roofline shares are docs/detector_setups.json's, rounded."""
    import json
    measured = json.loads((ROOT / "docs" / "detector_setups.json").read_text())["rates"]
    text = (ROOT / "docs" / "detectors.md").read_text()
    for name, setups in measured.items():
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| {name} % |"))
        shown = [tuple(int(v) for v in pair) for pair in re.findall(r"(\d+) / (\d+)", line)]
        assert shown == [(round(r["pct_ceiling"]), round(r["pct_roofline"])) for r in setups.values()], name
