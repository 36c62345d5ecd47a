"""`frpose reproduce`: a dry run of Table 1 end to end on the vendored COCO subset, its resume, its
plan for array jobs, and the one-line refusals (options that differ, a foreign --out, bad names)."""
from __future__ import annotations

import contextlib
import io
import json
import shlex
import sys
from pathlib import Path

import pytest
import typer

from frpose_cli.cli import app as cli

DATA = Path(__file__).resolve().parent / "data" / "coco"
ROWS = ["sbn-r34-256x192", "fr-sbn-r34-256x192", "fr-sbn-gcb-r34-256x192", "fr-sbn-gcb-skip-r34-256x192",
        "frpose-r34-256x192"]


def frpose(*args) -> tuple[int, str, str]:
    """`frpose ARGS` in this process, as the console script runs it: (exit code, stdout, stderr)."""
    out, err, old = io.StringIO(), io.StringIO(), sys.argv
    sys.argv = ["frpose", *map(str, args)]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exc:
            cli.main()
    finally:
        sys.argv = old
    return exc.value.code or 0, out.getvalue(), err.getvalue()



pytestmark = pytest.mark.usefixtures("one_thread")


def table_line(stdout: str, row: str) -> list[str]:
    lines = [line for line in stdout.splitlines() if line.startswith(f"| {row} |")]
    assert len(lines) == 1, stdout
    return [c.strip() for c in lines[0].strip("|").split("|")]


def run_files(out: Path) -> dict:
    """Each row's checkpoint and metrics, as the file system sees them (an atomic rewrite is a new inode)."""
    files = [out / r / "train" / "last.pt" for r in ROWS] + [out / r / "eval" / "metrics.json" for r in ROWS]
    return {f: (f.stat().st_ino, f.stat().st_mtime_ns, f.stat().st_size, f.read_bytes() if f.suffix == ".json" else b"")
            for f in files}


def test_dry_run_of_table1_puts_ours_beside_the_papers_and_a_rerun_redoes_nothing(tmp_path):
    data_before = sorted(p.relative_to(DATA) for p in DATA.rglob("*"))
    out = tmp_path / "table1"
    code, stdout, stderr = frpose("reproduce", "table1", "--data", DATA, "--dry-run", "--out", out, "--no-progress")
    assert code == 0, stdout + stderr
    assert "dry run: 1 epoch on the first 4 images of train2017 at 64x32 for 256x192" in stdout
    assert "figures are not comparable with the paper" in stdout
    saved = json.loads((out / "table1.json").read_text())
    assert [r["row"] for r in saved["rows"]] == ROWS
    for row, paper in zip(ROWS, ["69.8", "71.0", "71.6", "71.7", "72.5"]):
        cells = table_line(stdout, row)
        metrics = json.loads((out / row / "eval" / "metrics.json").read_text())
        assert cells[2:4] == [f"{100 * metrics['AP']:.1f}", paper]       # ours, then the paper's
        assert cells[8] == f"{100 * metrics['AR']:.1f}"
        assert (out / row / "train" / "last.pt").is_file()
    frpose_cells = table_line(stdout, "frpose-r34-256x192")
    assert frpose_cells[9:13] == ["32.5", "33.0", "21.5", "21.3"]          # params M, paper's; GMACs, paper's
    assert (out / "table1.md").read_text() in stdout
    # the subsets it trained and scored on are inside --out; the data folder is as it was
    assert json.loads((out / "data" / "person_keypoints_val2017-first2.json").read_text())["images"]
    assert sorted(p.relative_to(DATA) for p in DATA.rglob("*")) == data_before

    before = run_files(out)
    code, stdout, stderr = frpose("reproduce", "table1", "--data", DATA, "--dry-run", "--out", out, "--no-progress")
    assert code == 0, stdout + stderr
    for row in ROWS:
        line = next(line for line in stdout.splitlines() if line.startswith(f"{row}: "))
        assert "train: already done (1/1 epochs), skipped" in line and "eval: already done" in line, line
    assert "epoch 1/1" not in stdout + stderr
    assert run_files(out) == before
    assert table_line(stdout, "sbn-r34-256x192")[3] == "69.8"


def test_plan_prints_one_resumable_command_per_row(tmp_path):
    out = tmp_path / "planned"
    code, stdout, stderr = frpose("reproduce", "table1", "--data", DATA, "--dry-run", "--gpus", "0", "--out", out,
                                  "--plan")
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert len(lines) == 5
    command = typer.main.get_command(cli.app).get_command(None, "reproduce")
    only = []
    for line in lines:
        argv = shlex.split(line)
        assert argv[:3] == ["frpose", "reproduce", "table1"], line
        params = command.make_context("reproduce", argv[2:]).params   # parses as the verb does: a valid command
        assert (params["data"], params["out"], params["dry_run"], params["gpus"]) == (DATA, out.resolve(), True, 0)
        only.append(params["only"])
    assert only == ROWS
    assert "renders the table" in stderr and f"--out {out.resolve()}" in stderr
    assert sorted(p.name for p in out.iterdir()) == ["reproduce.json", "reproduce.json.lock"]   # nothing ran


def test_a_rerun_with_other_options_or_into_a_foreign_folder_is_refused_in_one_line(tmp_path):
    out = tmp_path / "planned"
    assert frpose("reproduce", "table1", "--data", DATA, "--dry-run", "--out", out, "--plan")[0] == 0
    refusals = {
        ("table1", "--epochs", "2", "--out", out, "--only", ROWS[0]): "--epochs 2 differs from 1, the first run's",
        ("table2", "--out", out): "is a reproduce folder of table1, not table2",
        ("table1", "--out", tmp_path): "not a `frpose reproduce` folder",
    }
    for args, message in refusals.items():
        code, stdout, stderr = frpose("reproduce", *args, "--data", DATA, "--dry-run")
        assert code == 2, stdout + stderr
        assert stderr.count("\n") == 1 and message in stderr and stderr.startswith("frpose: error: "), stderr
    assert not (out / ROWS[0]).exists()


@pytest.mark.parametrize("args, message", [
    (["table1", "--data", DATA, "--only", "sbn-r50-256x192"], "--only sbn-r50-256x192: not a row of table1"),
    (["table2", "--data", DATA / "missing"], "no such folder"),
    (["table1", "--data", DATA / "annotations"], "no training annotation file"),
])
def test_bad_names_and_data_are_one_line_before_any_work(args, message, tmp_path):
    code, stdout, stderr = frpose("reproduce", *args, "--out", tmp_path / "out")
    assert code == 2 and stderr.count("\n") == 1 and message in stderr, stdout + stderr
    assert not (tmp_path / "out").exists()


def test_an_unknown_table_exits_2_with_one_line(tmp_path):
    code, stdout, stderr = frpose("reproduce", "table9", "--data", DATA, "--out", tmp_path / "out")
    assert (code, stdout) == (2, "")
    assert stderr == "frpose: error: unknown table 'table9'; choose table1, table2, table3\n"


def test_each_row_carries_the_papers_figures_of_its_table():
    from frpose_cli.training.reproduce_table import TABLES, paper_figures
    assert [paper_figures(r)["ap"] for r in TABLES["table1"].rows] == [69.8, 71.0, 71.6, 71.7, 72.5]
    table2 = [paper_figures(r) for r in TABLES["table2"].rows]
    assert [f["ap"] for f in table2] == [70.4, 71.4, 72.0, 72.5, 72.2, 73.6, 74.3, 74.2]
    assert [f["latency_ms"] for f in table2] == [2.3, 3.3, 4.8, 3.5, 5.7, 8.0, 11.8, 8.6]
    assert [r.quoted for r in TABLES["table2"].rows] == [True, True, True, False] * 2
    test_dev = {r.name: paper_figures(r)["test_dev"] for r in TABLES["table3"].rows}
    assert len(test_dev) == 8 and all(len(f) == 6 for f in test_dev.values())
    assert test_dev["frpose-r34-256x192"] == {"AP": 72.0, "AP50": 91.1, "AP75": 79.9, "APM": 68.9, "APL": 77.7, "AR": 77.5}
    assert test_dev["frpose-r152-384x288"] == {"AP": 74.9, "AP50": 92.2, "AP75": 82.4, "APM": 71.6, "APL": 80.9, "AR": 80.2}
