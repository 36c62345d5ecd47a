"""Model cards: found from a checkout and from an installed wheel; validated; input-size overrides."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from frpose_cli.cards import list_cards, load_card, parse_input_size
from frpose_cli.errors import FrposeError

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = ["sbn-r18", "sbn-r34", "sbn-r50", "sbn-r101", "sbn-r152", "frpose-r18", "frpose-r34", "frpose-r50",
            "frpose-r101", "frpose-r152", "fr-sbn-r34", "fr-sbn-gcb-r34", "fr-sbn-gcb-skip-r34"]


def test_required_cards_exist_with_the_paper_recipe():
    assert set(REQUIRED) <= set(list_cards())
    for name in REQUIRED:
        card = load_card(name)
        assert card.input_size == (256, 192)
        assert card.keypoints.num_keypoints == 17 and len(card.keypoints.flip_pairs) == 8
        t = card.train
        assert (t["optimizer"], t["lr"], t["lr_steps"], t["epochs"], t["batch_size"]) == ("adam", 1e-3, [90, 120], 140, 32)
        assert (t["rotation"], t["scale"], t["flip"]) == (40.0, [0.7, 1.3], True)
        full = not name.startswith("sbn-")
        assert card.sigma == (8.0 if full else 2.0)
        assert card.with_input_size((384, 288)).sigma == (12.0 if full else 3.0)


def test_input_size_override_and_sigma_scaling():
    card = load_card("frpose-r34", input_size="384x288")
    assert card.input_size == (384, 288) and card.heatmap_size == (384, 288)
    assert load_card("frpose-r34", "128x96").sigma == pytest.approx(4.0)   # scales with height from 256x192
    assert load_card("sbn-r50", "384x288").heatmap_size == (96, 72)


@pytest.mark.parametrize("text", ["256", "256x190", "0x32", "abc", "256x192x3"])
def test_bad_input_sizes_are_one_line_errors(text):
    with pytest.raises(FrposeError, match="input size"):
        parse_input_size(text)


def test_unknown_card_and_bad_card_file(tmp_path):
    with pytest.raises(FrposeError, match="unknown model 'nope'.*frpose-r34"):
        load_card("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\narchitecture: {depth: 34}\n")
    with pytest.raises(FrposeError, match="invalid model card"):
        load_card(str(bad))
    bad.write_text("[unclosed")
    with pytest.raises(FrposeError, match="not valid YAML"):
        load_card(str(bad))


def test_card_round_trips_through_dict():
    card = load_card("fr-sbn-gcb-skip-r34", "384x288")
    again = type(card).from_dict(card.to_dict())
    assert again == card


def test_cards_are_found_from_an_installed_wheel(tmp_path):
    """``pip install .`` (not -e) ships every module of frpose_cli and the cards; an editable install, which
    CI uses, would hide a package left out of pyproject's list.  Built from a copy of the sources: setuptools'
    build/ folder in a checkout hands stale files on to the wheel."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("frpose_cli", "models"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "whl"), str(src)], check=True, capture_output=True)
    wheel = next((tmp_path / "whl").glob("frpose-*.whl"))
    modules = {f"frpose_cli/{f.relative_to(ROOT / 'frpose_cli').as_posix()}" for f in (ROOT / "frpose_cli").rglob("*.py")}
    assert modules - set(zipfile.ZipFile(wheel).namelist()) == set()
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    assert (site / "frpose_cli/model_cards/frpose-r34.yaml").is_file()
    code = ("import frpose_cli, frpose_cli.cli.app, frpose_cli.cards as c; "
            "assert str(c.__file__).startswith(%r), c.__file__; "
            "assert not c._CHECKOUT_CARDS.is_dir(); "
            "print(len(c.list_cards()), c.load_card('frpose-r34').sigma)") % str(site)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": ""},
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(len(list_cards())), "8.0"]
