"""The README cannot drift from the program: every `frpose` command it shows uses a verb and options the CLI
has (read from the CLI's own definition, as `--help` prints it), its links and anchors exist, its Python
names import, and the outputs it shows for commands that need no network are compared with fresh runs of
the same commands on the vendored data (in-process, a few seconds in all)."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import typer

from frpose_cli.cli.app import app
from helpers import run_cli

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TEXT = README.read_text()
SHELL = {"bash", "sh", "shell", "console"}
# options of other programs the README shows beside frpose's (pip, torchrun, tensorboard)
FOREIGN_OPTIONS = {"--index-url", "--nproc-per-node", "--logdir"}
CONTROL = {"|", "||", "&&", ";", ">", ">>", "2>&1", "&"}
NUMBER = r"[-+]?\d+(?:[.,_]\d+)*(?:e[-+]?\d+)?"
BOX_CHARS = "┃│"


# ---------------------------------------------------------------------------------------------- parsing

def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block, indented ones (inside a list item) included."""
    blocks = []
    for m in re.finditer(r"^([ \t]*)```(\w*)[ \t]*\n(.*?)^\1```[ \t]*$", text, re.M | re.S):
        indent = len(m.group(1))
        body = "\n".join(line[indent:] for line in m.group(3).splitlines())
        blocks.append((m.group(2).lower(), body))
    return blocks


def console_runs(body: str) -> list[tuple[str, list[str]]]:
    """A console block's `$ command` lines, each with the output lines shown after it."""
    runs = []
    for line in body.splitlines():
        if line.startswith("$ "):
            runs.append((line[2:].strip(), []))
        elif runs:
            runs[-1][1].append(line)
    return runs


def shell_commands(lang: str, body: str) -> list[str]:
    if lang == "console":
        return [cmd for cmd, _ in console_runs(body)]
    commands, pending = [], ""
    for line in body.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.strip() and not line.lstrip().startswith("#"):
            commands.append(line.strip())
    return commands


def frpose_args(command: str) -> list[str] | None:
    """The arguments after `frpose` (or `-m frpose_cli`) in one shell command; None if it runs no frpose."""
    try:
        tokens = shlex.split(command, comments=True)
    except ValueError:
        return None
    for i, token in enumerate(tokens):
        if token in CONTROL or token.startswith(">"):
            tokens = tokens[:i]
            break
    for i, token in enumerate(tokens):
        if token == "frpose" or token.endswith("/frpose"):
            return tokens[i + 1:]
        if token == "-m" and i + 1 < len(tokens) and tokens[i + 1] == "frpose_cli":
            return tokens[i + 2:]
    return None


def inline_commands(text: str) -> list[str]:
    """`frpose VERB …` written as inline code in the prose."""
    prose = re.sub(r"^([ \t]*)```.*?^\1```", "", text, flags=re.M | re.S)
    return [span for span in re.findall(r"`(frpose [^`]+)`", prose)]


def all_commands() -> list[tuple[str, list[str]]]:
    found = []
    for lang, body in fenced_blocks(TEXT):
        if lang in SHELL:
            for command in shell_commands(lang, body):
                args = frpose_args(command)
                if args is not None:
                    found.append((command, args))
    for span in inline_commands(TEXT):
        args = frpose_args(span)
        if args:
            found.append((span, args))
    return found


def cli_options() -> tuple[set[str], dict[str, set[str]]]:
    """The top-level options and each verb's options, from the CLI's own definition."""
    group = typer.main.get_command(app)
    names = lambda params: {o for p in params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")}
    verbs = {name: names(cmd.params) | {"--help"} for name, cmd in group.commands.items()}
    return names(group.params) | {"--help"}, verbs


def option_names(args: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in args if a.startswith("-") and a != "-" and not re.fullmatch(NUMBER, a)]


# ------------------------------------------------------------------------------ commands against the CLI

def test_the_readme_is_a_short_guide_in_the_issues_order():
    lines = TEXT.splitlines()
    assert len(lines) <= 400, f"README.md has {len(lines)} lines; figures and reasons go to docs/"
    headings = re.findall(r"^## (.+)$", re.sub(r"^```.*?^```", "", TEXT, flags=re.M | re.S), re.M)
    order = ["Install", "First poses", "Models", "Train", "Evaluate", "Export and deploy", "Python",
             "Environment variables", "Exit codes", "Tests"]
    assert [h for h in headings if h in order] == order, headings


def test_the_parser_finds_the_readmes_commands():
    commands = all_commands()
    assert len(commands) >= 40, [c for c, _ in commands]
    verbs = {args[0] for _, args in commands if args and not args[0].startswith("-")}
    assert verbs >= {"predict", "track", "train", "eval", "export", "bench", "reproduce", "models"}, verbs
    assert sum(lang == "console" for lang, _ in fenced_blocks(TEXT)) >= 6


def test_every_frpose_command_uses_a_verb_and_options_the_cli_has():
    top, verbs = cli_options()
    wrong = []
    for command, args in all_commands():
        if not args or args[0].startswith("-"):
            wrong += [f"{command}: frpose has no option {o}" for o in option_names(args) if o not in top]
            continue
        verb, rest = args[0], args[1:]
        if verb not in verbs:
            wrong.append(f"{command}: no verb {verb!r} (verbs: {', '.join(verbs)})")
            continue
        wrong += [f"{command}: `frpose {verb}` has no option {o}" for o in option_names(rest) if o not in verbs[verb]]
    assert not wrong, "\n".join(wrong)


def test_every_option_the_prose_names_belongs_to_some_verb():
    """An option named anywhere (tables, prose, outputs) is one of frpose's, or one of the few other tools'."""
    top, verbs = cli_options()
    known = top.union(*verbs.values()) | FOREIGN_OPTIONS
    without_links = re.sub(r"\]\([^)]*\)", "]", TEXT)
    named = set(re.findall(r"(?<![\w/-])--[a-z][a-z0-9-]*", without_links))
    assert len(named) >= 30, named
    assert named <= known, sorted(named - known)


def test_the_checker_rejects_what_the_cli_does_not_have():
    """The checks above can fail: a made-up verb and option are caught the way a stale one would be."""
    top, verbs = cli_options()
    args = frpose_args("torchrun --nproc-per-node 2 -m frpose_cli predict x.jpg --no-such-option 3 | tee log")
    assert args == ["predict", "x.jpg", "--no-such-option", "3"]
    assert [o for o in option_names(args[1:]) if o not in verbs["predict"]] == ["--no-such-option"]
    assert "predikt" not in verbs and frpose_args("pip install -e .") is None


# ------------------------------------------------------------------------------------- links and Python

def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^([ \t]*)```.*?^\1```", "", page.read_text(), flags=re.M | re.S)
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def test_every_relative_link_and_anchor_exists():
    links = re.findall(r"\]\(([^)\s]+)\)", TEXT)
    assert len(links) >= 20, links
    missing = []
    for link in links:
        if "://" in link or link.startswith("mailto:"):
            continue
        path, _, anchor = link.partition("#")
        target = (ROOT / path) if path else README
        if not target.exists():
            missing.append(link)
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            missing.append(f"{link} (no such heading)")
    assert not missing, missing


def test_the_python_example_imports_and_names_what_exists():
    import numpy as np
    from frpose_cli.cards import load_card
    from frpose_cli.inference.results import Results
    spec = load_card("sbn-r18").keypoints
    k = spec.num_keypoints
    empty = Results(np.zeros((0, 5)), np.zeros((0, k, 2)), np.zeros((0, k)), spec)
    blocks = [body for lang, body in fenced_blocks(TEXT) if lang == "python"]
    assert blocks
    for body in blocks:
        imports = "\n".join(line for line in body.splitlines() if re.match(r"(from \S+ )?import ", line))
        assert imports.count("import") >= 3, imports
        exec(compile(imports, "README.md", "exec"), {})
        for attribute in set(re.findall(r"\bres\.(\w+)", body)):
            assert hasattr(empty, attribute), f"Results has no {attribute}"


# --------------------------------------------------------------------------------- outputs, run again

def line_pattern(shown: str) -> re.Pattern:
    """A README output line as a pattern: numbers, paths and '…' stand for whatever the run prints there."""
    parts = []
    for token in shown.split():
        if token == "…":
            parts.append(r".*")
        elif "/" in token and not token.startswith("|"):
            parts.append(r"\S+")
        else:
            pieces = re.split(f"({NUMBER})", token)
            parts.append("".join(NUMBER if re.fullmatch(NUMBER, p) else re.escape(p).replace("…", ".*")
                                 for p in pieces if p))
    return re.compile(r"\s+".join(parts))


def cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(f"[{BOX_CHARS}]", line) if c.strip() and c.strip() != "…"]


def shown_line_is_in(shown: str, actual_lines: list[str], exact: bool) -> bool:
    if shown.lstrip()[:1] in BOX_CHARS:   # a rich table row: the cells shown, in order, at the row's start
        want = cells(shown)
        return any(cells(a)[:len(want)] == want for a in actual_lines if a.lstrip()[:1] in BOX_CHARS)
    normal = " ".join(shown.split())
    if exact and not re.search(r"\d (ms|s)\b", normal):   # deterministic lines: the very same figures
        return any(" ".join(a.split()) == normal for a in actual_lines)
    pattern = line_pattern(shown)
    return any(pattern.fullmatch(a.strip()) for a in actual_lines)


def checked_lines(output: list[str]) -> list[str]:
    """Output lines worth comparing: not stderr notes (`frpose: …`, machine- and cache-dependent), not rules,
    not the '…' that marks a shortened output."""
    return [line for line in output if line.strip() and line.strip() != "…" and not line.startswith("frpose:")
            and not set(line.strip()) <= set("━─┏┓┗┛┡┩└┘╇┳┻╈")]


def runnable():
    """The README's console commands this test runs: all but `train` (minutes on a CPU)."""
    runs = [(cmd, out) for lang, body in fenced_blocks(TEXT) if lang == "console" for cmd, out in console_runs(body)]
    return [(cmd, out) for cmd, out in runs if (frpose_args(cmd) or ["?"])[:1] != ["train"]]


def test_the_readme_shows_outputs_of_the_commands_the_test_runs():
    verbs = [(frpose_args(cmd) or ["?"])[0] for cmd, _ in runnable()]
    assert {"--version", "models", "predict", "eval", "export"} <= set(verbs), verbs
    assert all(checked_lines(out) for _, out in runnable()), "a console command without output"


def readme_args(args: list[str], checkpoint: Path, out: Path) -> list[str]:
    """The README's arguments with its checkpoint replaced by the test's tiny one, and outputs under tmp."""
    args = list(args)
    for i, a in enumerate(args[:-1]):
        if a in ("--weights", "-w"):
            args[i + 1] = str(checkpoint)
    verb = args[0]
    if verb == "predict" or verb == "eval":
        args += ["--out", str(out / "results.json" if verb == "eval" else out), "--no-progress"]
    elif verb == "export":
        fmt = args[args.index("--format") + 1]
        args += ["--out", str(out.with_suffix({"onnx": ".onnx", "torchscript": ".pt", "openvino": ".xml"}[fmt]))]
    return args


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """The README's checkpoint is the 1-epoch frpose-r18 of its Train section; this is the same card with seeded
    random weights at 32x32, a twelfth of the README's input, so that running it costs little."""
    import torch
    from frpose_cli.cards import load_card
    from frpose_cli.weights.checkpoint import save_checkpoint
    card = load_card("frpose-r18", (32, 32))
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("readme") / "best.pt", card.build_model(), card)


def test_each_output_the_readme_shows_comes_from_the_program(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    """Every console command but `train` runs again here, on the vendored data (paths relative to the checkout),
    with the README's checkpoint replaced by a tiny one, outputs under tmp_path and no progress bars. Each
    output line shown must be printed again: timings, sizes, counts and paths may differ, words may not;
    `--oracle` runs are deterministic and must print the same figures."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("COLUMNS", "250")
    failures, predicted = [], []
    for n, (command, shown) in enumerate(runnable()):
        args = readme_args(frpose_args(command), tiny_checkpoint, tmp_path / f"run{n}")
        code, out, err = run_cli(args, capsys)
        if code != 0:
            failures.append(f"$ {command}\nexit {code}: {err[-800:]}")
            continue
        actual = (out + err).splitlines()
        exact = "--oracle" in args
        failures += [f"$ {command}\nnot printed: {line!r}\nprinted:\n{out}{err}"
                     for line in checked_lines(shown) if not shown_line_is_in(line, actual, exact)]
        if args[0] == "predict":
            predicted.append(tmp_path / f"run{n}")
    assert not failures, "\n\n".join(failures)
    assert predicted
    check_the_run_folder_and_record(predicted[0])


def check_the_run_folder_and_record(run: Path):
    """The files the README says a predict run folder holds, and the keys of the record it shows."""
    for name in re.findall(r"^- `([\w.]+/?)`", TEXT, re.M):
        assert (run / name).exists(), name
    shown = [body for lang, body in fenced_blocks(TEXT) if lang == "json"]
    assert len(shown) == 1
    record = json.loads(re.sub(r",\s*…\]", "]", shown[0]))
    actual = json.loads((run / "predictions.json").read_text())[0]
    assert list(record) == list(actual), (list(record), list(actual))


@pytest.mark.parametrize("line, printed, exact, matches", [
    ("predict: 4 images, 27 persons in 12.0 s (2996 ms/image)", "predict: 4 images, 3 persons in 1.5 s (12 ms/image)", False, True),
    ("predict: 4 images, 27 persons in 12.0 s", "predict: 4 pictures, 27 persons in 12.0 s", False, False),
    ("results: runs/predict/run1/predictions.json", "results: /tmp/x/predictions.json", False, True),
    ("export: a → b/c.onnx (onnx, fp32, dynamic, 85.6 MB)", "export: a → b/c.onnx (onnx, dynamic, 85.6 MB)", False, False),
    ("parity: max |heatmap diff| 3.73e-08 (peak 0.098): PASS", "parity: max |heatmap diff| 1e-07 (peak 0.5): PASS", False, True),
    ("│ sbn-r50  │ pose │ …", "│ sbn-r50       │ pose     │ sbn-r50 │", False, True),
    ("│ sbn-r50  │ kind │ …", "│ sbn-r50       │ pose     │ sbn-r50 │", False, False),
    ("  91.3   100.0", "  91.3  100.0", True, True),
    ("  91.3   100.0", "  91.2   100.0", True, False),
    ("eval: 12 poses scored in 0.1 s", "eval: 12 poses scored in 0.3 s", True, True),
])
def test_the_output_comparison_can_fail(line, printed, exact, matches):
    assert shown_line_is_in(line, [printed], exact=exact) is matches
