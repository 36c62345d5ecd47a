"""Every numeric option of every verb has its range from option_ranges.RANGES, and a value outside it
is refused in one line naming the option, the value and the range, before the verb runs."""
import pytest
import typer

from frpose_cli.cli.app import app
from frpose_cli.api_arguments import in_range
from frpose_cli.option_ranges import RANGES, Range, raw_value
from tests.helpers import run_cli


def kind(param):
    """int or float (typer ≥ 0.2x names the type; older typer, as click, has a param type object)."""
    name = param.bare_type() if hasattr(param, "bare_type") else param.type.name
    return {"int": int, "integer": int, "integer range": int, "float": float, "float range": float}.get(str(name))


def numeric_options():
    command = typer.main.get_command(app)
    for verb, sub in sorted(command.commands.items()):
        required = [p for p in sub.params if p.required and not p.opts[0].startswith("-")]
        for p in sub.params:
            if kind(p) is not None and p.opts[0].startswith("--"):
                yield verb, p, ["x"] * len(required)


OPTIONS = list(numeric_options())


def test_the_walk_sees_every_verb_and_their_numeric_options():
    verbs = {verb for verb, _, _ in OPTIONS}
    assert verbs >= {"train", "eval", "predict", "track", "export", "bench", "reproduce"}
    assert len(OPTIONS) >= 40


@pytest.mark.parametrize("verb, param, args", OPTIONS, ids=[f"{v}{p.opts[0]}" for v, p, _ in OPTIONS])
def test_every_numeric_option_declares_the_tables_range(verb, param, args):
    name = max(param.opts, key=len)
    assert name in RANGES, f"{verb} {name} has no range in option_ranges.RANGES"
    r = RANGES[name]
    assert (param.min, param.max) == (r.low, r.high), f"{verb} {name} does not take its bounds from limits()"
    assert kind(param) is r.kind


def outside(r: Range):
    return r.low - 1 if r.low is not None else r.high + 1


@pytest.mark.parametrize("verb, param, args", OPTIONS, ids=[f"{v}{p.opts[0]}" for v, p, _ in OPTIONS])
def test_a_value_out_of_range_is_one_line_naming_option_value_and_range(verb, param, args, capsys, tmp_path,
                                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)   # nothing may be written, anywhere
    name = max(param.opts, key=len)
    value = outside(RANGES[name])
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    code, out, err = run_cli([verb, *args, name, shown], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0] == f"frpose: error: {name} {shown}: must be {RANGES[name].describe()}"
    assert not any(tmp_path.iterdir())


def test_a_value_that_is_not_a_number_is_the_same_line(capsys):
    code, _, err = run_cli(["predict", "x.jpg", "-b", "many"], capsys)
    assert code == 2 and err.strip() == "frpose: error: --batch-size many: must be a whole number from 1 to 65536"
    code, _, err = run_cli(["eval", "--det-thr=high"], capsys)
    assert code == 2 and err.strip() == "frpose: error: --det-thr high: must be a number from 0 to 1"


def test_other_usage_errors_are_one_line_too(capsys):
    code, _, err = run_cli(["predict", "x.jpg", "--no-such-option"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--no-such-option" in err, err
    assert err.startswith("frpose: error: ")


@pytest.mark.parametrize("args, value", [
    (["--det-thr", "0.5"], "0.5"), (["--det-thr=0.7", "x"], "0.7"), (["-b", "3"], "3"), (["-b8"], "8"),
    (["--det-thr", "1", "--det-thr", "2"], "2"), (["--det-thr"], None), (["--det-thr-x", "1"], None)])
def test_raw_value_reads_what_the_parser_reads(args, value):
    assert raw_value(args, ["--det-thr", "-b"] if "-b" in "".join(args) else ["--det-thr"]) == value


def test_the_python_api_checks_the_same_table():
    assert in_range(0.5, "det_thr") == 0.5
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"det_thr must be a number from 0 to 1"):
            in_range(bad, "det_thr")
    for bad in ("0.5", True, None):
        with pytest.raises(TypeError, match=r"det_thr must be a number from 0 to 1"):
            in_range(bad, "det_thr")
    with pytest.raises(ValueError, match=r"batch_size must be a whole number from 1 to 65536 \(got 2\.5\)"):
        in_range(2.5, "batch_size")


def test_predict_options_take_their_ranges_from_the_table():
    from frpose_cli.inference.predict_options import PredictOptions, check_options
    with pytest.raises(ValueError, match=r"track_lifetime must be a whole number from 0 to 100000 \(got -1\)"):
        check_options(PredictOptions(source="x", track_lifetime=-1))
    check_options(PredictOptions(source="x", det_size=None))   # None: the detector's own size
