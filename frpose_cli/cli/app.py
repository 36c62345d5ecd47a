"""The ``frpose`` command: one verb per mode over one model core (ultralytics-style).

Each verb lives in ``frpose_cli/cli/<verb>.py`` and only parses options, calls one
core function and prints its report; no verb module imports another (shared options:
``cli/options.py``). Every user-facing failure is a :class:`FrposeError`, printed here
as one line with a non-zero exit code.
"""
from __future__ import annotations

import sys

import typer

from frpose_cli.cli import bench, export, evaluate, merge, models, predict, reproduce, train
from frpose_cli.errors import FrposeError

# typer's UsageError (click's, or the copy typer vendors), which typer does not export by name
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")

# typer shows on/off flags with a "<bool>" type placeholder; a flag takes no value, so show none.
_display_type = typer.core.TyperOption.display_type_rich
typer.core.TyperOption.display_type_rich = lambda self, ctx: None if self.is_flag else _display_type(self, ctx)

app = typer.Typer(
    name="frpose", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Full-resolution encoder-decoder human pose estimation (FR-SBN + GCB + SA-MFCD).",
)


def _version(value: bool) -> None:
    if value:
        from frpose_cli import __version__
        print(f"frpose {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit")) -> None:
    """Full-resolution encoder-decoder human pose estimation (FR-SBN + GCB + SA-MFCD)."""


app.command("train")(train.train)
app.command("eval")(evaluate.evaluate)
app.command("predict")(predict.predict)
app.command("track")(predict.track)
app.command("export")(export.export)
app.command("bench")(bench.bench)
app.command("merge")(merge.merge)
app.command("reproduce")(reproduce.reproduce)
app.command("models")(models.models)


def main() -> None:
    from frpose_cli.run_folders import release_unused
    try:
        from frpose_cli.settings import load_settings
        load_settings()   # every FRPOSE_* variable, read and checked once, before any work
        # standalone_mode=False: typer's usage errors come back here, to be printed as one line
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except FrposeError as e:   # 2, or the error's own documented code (train preempted: 3)
        print(f"frpose: {'stopped' if getattr(e, 'exit_code', 2) != 2 else 'error'}: {e}", file=sys.stderr)
        sys.exit(getattr(e, "exit_code", 2))
    except _UsageError as e:   # one line: a bad value names option, value and range; the rest, where help is
        from frpose_cli.option_ranges import usage_line
        ctx = getattr(e, "ctx", None)
        where = f" (see {ctx.command_path} --help)" if ctx is not None and not isinstance(e, typer.BadParameter) \
            else ""
        print(f"frpose: error: {usage_line(e, sys.argv[1:])}{where}", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort):
        print("frpose: interrupted", file=sys.stderr)
        sys.exit(130)
    finally:   # a run that failed before writing leaves no empty run folder (run_folders.py)
        release_unused()


if __name__ == "__main__":
    main()
