"""Where frpose keeps what it caches: ``$FRPOSE_HOME``, else ``$XDG_CACHE_HOME/frpose``, else
``~/.cache/frpose`` (the precision choices of ``--precision auto``, the accuracy gate's trained
weights).  Downloaded weights go to ``$FRPOSE_HOME/weights`` when it is set, else to torch's own
checkpoint cache (:mod:`frpose_cli.weights.download`)."""
from __future__ import annotations

import os
from pathlib import Path


def frpose_home() -> Path:
    from frpose_cli.settings import settings
    if settings().home is not None:
        return settings().home
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "frpose"
