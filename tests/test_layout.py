"""The package's shape: the CLI on top of the core, no import cycle, no module too long to hold in mind."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "frpose_cli"
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Every frpose_cli module ``path`` imports, at the top or inside a function."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            for a in node.names:   # ``from pkg import module`` imports the module itself
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(f) for f in files}
    return {module_name(f): imports_of(f, modules) for f in files}


def test_no_module_is_longer_than_a_reader_holds():
    long = {str(f.relative_to(PACKAGE)): n for f in PACKAGE.rglob("*.py")
            if (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_the_core_never_imports_the_command_line():
    g = graph()
    offenders = {m: sorted(i for i in deps if i.startswith("frpose_cli.cli.app"))
                 for m, deps in g.items() if not m.startswith("frpose_cli.cli.app") and m != "frpose_cli.__main__"}
    assert not {m: d for m, d in offenders.items() if d}


def find_cycles(g: dict[str, set[str]]) -> list[list[str]]:
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = "open"
        stack.append(m)
        for d in sorted(g.get(m, ())):
            if state.get(d) == "open":
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d, stack)
        stack.pop()
        state[m] = "done"

    for m in sorted(g):
        if m not in state:
            visit(m, [])
    return cycles


def test_no_import_cycle_between_modules():
    # A package's __init__ only hands names on; the arrows that matter are between modules.
    g = {m: {d for d in deps if d != "frpose_cli"} for m, deps in graph().items() if m != "frpose_cli"}
    cycles = find_cycles(g)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)
    assert len(g) > 40   # the walk saw the package


def test_packages_are_layered():
    """cli > training > evaluation > inference, deploy > runtime > weights > cards > metrics, data, net:
    no package imports one that imports it back (docs/architecture.md)."""
    def package(m):
        parts = m.split(".")
        return parts[1] if len(parts) > 1 else m
    g = {}
    for m, deps in graph().items():
        if m != "frpose_cli":
            g.setdefault(package(m), set()).update(package(d) for d in deps if d != "frpose_cli" and package(d) != package(m))
    cycles = find_cycles(g)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)
    assert {"cli", "runtime", "metrics", "data", "net"} <= set(g)


CLI_MAX_LINES = 130   # the aim is ~120: a verb module parses options, calls one core function, prints


def test_no_cli_module_imports_another_verb():
    """Verbs share options through cli/options.py and work through the core, never through each
    other (only cli/app.py, which registers the verbs, imports them)."""
    offenders = {m: sorted(d for d in deps if d.startswith("frpose_cli.cli") and d != "frpose_cli.cli.options")
                 for m, deps in graph().items() if m.startswith("frpose_cli.cli") and m != "frpose_cli.cli.app"}
    assert not {m: d for m, d in offenders.items() if d}


def test_cli_modules_are_thin():
    long = {f.name: n for f in (PACKAGE / "cli").glob("*.py") if (n := len(f.read_text().splitlines())) > CLI_MAX_LINES}
    assert not long, long
