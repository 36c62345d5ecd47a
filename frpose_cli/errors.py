"""One exception type for every user-facing failure: the CLI prints its message on one line and exits non-zero."""


class FrposeError(Exception):
    """A problem with the user's input or environment, explained in one line."""


# The Python API's argument errors are also the exceptions Python callers expect (ValueError for a
# wrong value, shape or range; TypeError for a wrong type or dtype), and still FrposeErrors, so the
# CLI prints the same ones on one line if one of its options reaches them.
class ArgumentValueError(FrposeError, ValueError):
    """An argument with a wrong value, shape or range; the message names the argument and what it takes."""


class ArgumentTypeError(FrposeError, TypeError):
    """An argument of a wrong type or dtype; the message names the argument and what it takes."""


def note(message: str) -> None:
    """One ``frpose: ...`` line on stderr: what a run tells its user besides its report (the
    default ``log`` of every verb's core function; results go to stdout)."""
    import sys
    print(f"frpose: {message}", file=sys.stderr)


def warn(message: str) -> None:
    """One ``frpose: warning: ...`` line on stderr (the run goes on)."""
    import sys
    print(f"frpose: warning: {message}", file=sys.stderr)
