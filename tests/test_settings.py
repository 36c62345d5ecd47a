"""Environment variables: each read and checked in settings.py; a wrong value is one line at start-up."""
import re
from pathlib import Path

import pytest

from frpose_cli.errors import FrposeError
from frpose_cli.hardware import capped_features
from frpose_cli.settings import VARIABLES, settings
from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name, value, accepted", [
    ("FRPOSE_OFFLINE", "maybe", "1/true/yes/on or 0/false/no/off"),
    ("FRPOSE_STRICT_HASH", "2", "1/true/yes/on or 0/false/no/off"),
    ("FRPOSE_MIRROR", "mirror.example.org/weights", "an http(s):// URL"),
    ("FRPOSE_MIRROR", "ftp://mirror.example.org/w", "an http(s):// URL"),
    ("FRPOSE_MAX_PIXELS", "100k", "a whole number ≥ 1"),
    ("FRPOSE_MAX_PIXELS", "0", "a whole number ≥ 1"),
    ("FRPOSE_PRECISION", "fp8", "fp32, bf16, fp16, int8 or auto"),
])
def test_a_bad_value_is_one_line_naming_variable_value_and_what_it_takes(name, value, accepted, monkeypatch,
                                                                         capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(name, value)
    code, out, err = run_cli(["models"], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"frpose: error: {name}={value!r}") and accepted in err
    with pytest.raises(FrposeError, match=re.escape(name)):   # the Python API asks the same function
        settings()


def test_frpose_home_that_is_a_file_is_refused(monkeypatch, capsys, tmp_path):
    home = tmp_path / "home"
    home.write_text("not a folder")
    monkeypatch.setenv("FRPOSE_HOME", str(home))
    code, _, err = run_cli(["models"], capsys)
    assert code == 2 and err.strip() == f"frpose: error: FRPOSE_HOME={str(home)!r}: not a folder; it takes a folder " \
                                        "(created when first needed)"


def test_good_values_are_read(monkeypatch, tmp_path):
    monkeypatch.setenv("FRPOSE_HOME", str(tmp_path / "new"))
    monkeypatch.setenv("FRPOSE_OFFLINE", "Yes")
    monkeypatch.setenv("FRPOSE_STRICT_HASH", "off")
    monkeypatch.setenv("FRPOSE_MIRROR", "https://mirror.example.org/w/")
    monkeypatch.setenv("FRPOSE_MAX_PIXELS", "150_000_000")
    monkeypatch.setenv("FRPOSE_PRECISION", "BF16")
    s = settings()
    assert (s.home, s.offline, s.strict_hash, s.mirror, s.max_pixels, s.precision) == (
        tmp_path / "new", True, False, "https://mirror.example.org/w/", 150_000_000, "bf16")
    from frpose_cli.data.images import max_pixels
    from frpose_cli.weights.download import mirror_url, offline
    assert offline() and max_pixels() == 150_000_000
    assert mirror_url("https://publisher.org/a/b-1234abcd.pth") == "https://mirror.example.org/w/b-1234abcd.pth"
    monkeypatch.setenv("FRPOSE_OFFLINE", "0")   # a changed environment is read again (Python programs, tests)
    assert not offline()


@pytest.mark.parametrize("name, value", [("ATEN_CPU_CAPABILITY", "avx9"), ("ONEDNN_MAX_CPU_ISA", "AVX2_TURBO"),
                                         ("DNNL_MAX_CPU_ISA", "fast")])
def test_an_isa_cap_torch_does_not_know_is_ignored_with_a_warning(name, value, monkeypatch, capsys):
    features = {"avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16"}
    usable, caps = capped_features(features, {name: value})
    assert usable == features and caps == ""   # not reported as a cap: bf16 stays visible
    monkeypatch.setenv(name, value)
    code, out, err = run_cli(["models"], capsys)
    assert code == 0 and "model cards" in out
    assert err.strip().splitlines() == [f"frpose: warning: {name}={value!r} is not a value "
                                        f"{'torch' if name.startswith('ATEN') else 'oneDNN'} knows, so it ignores "
                                        f"it, and so does frpose ({err.split('(')[-1].strip()}"]


def test_a_known_isa_cap_still_caps():
    usable, caps = capped_features({"avx2", "avx512f", "avx512_bf16"}, {"ONEDNN_MAX_CPU_ISA": "avx2"})
    assert usable == {"avx2"} and caps == "ONEDNN_MAX_CPU_ISA=avx2"


def test_only_settings_reads_frpose_variables():
    """One module reads the environment: no other reads an FRPOSE_* variable itself."""
    readers = [p.relative_to(ROOT) for p in (ROOT / "frpose_cli").rglob("*.py")
               if re.search(r"environ(\.get)?\s*[\[(]\s*[\"']FRPOSE_|getenv\(\s*[\"']FRPOSE_", p.read_text())]
    assert readers == [], readers
    mentioned = set(re.findall(r"FRPOSE_[A-Z_]+", "".join(p.read_text() for p in (ROOT / "frpose_cli").rglob("*.py"))))
    assert mentioned <= {v.name for v in VARIABLES}, mentioned - {v.name for v in VARIABLES}


def test_the_readme_table_lists_every_variable():
    readme = (ROOT / "README.md").read_text()
    for v in VARIABLES:
        assert f"| `{v.name}` | {v.accepts} | {v.meaning} |" in readme, v.name
