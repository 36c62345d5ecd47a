"""One exception type for every user-facing failure: the CLI prints its message on one line and exits non-zero."""


class FrposeError(Exception):
    """A problem with the user's input or environment, explained in one line."""


def note(message: str) -> None:
    """One ``frpose: ...`` line on stderr: what a run tells its user besides its report (the
    default ``log`` of every verb's core function; results go to stdout)."""
    import sys
    print(f"frpose: {message}", file=sys.stderr)


def warn(message: str) -> None:
    """One ``frpose: warning: ...`` line on stderr (the run goes on)."""
    import sys
    print(f"frpose: warning: {message}", file=sys.stderr)
