"""Every environment variable frpose reads, in one table, each read and checked in one place.

The CLI checks them all at start-up (``cli/app.py`` calls :func:`load_settings` before any verb): a
wrong value is one line naming the variable, its value and what it accepts, before any work.  The code
asks :func:`settings` and never ``os.environ``; a Python program (or a test) that changes the
environment gets the new values checked the same way the first time they are asked for, as the
parse is cached per raw value, not per process.  The README's table is :data:`VARIABLES` (a test
compares them).  The CPU ISA caps are torch's and oneDNN's variables: a value they do not know is one
warning, as they ignore it too (``hardware.capped_features``).
"""
from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from frpose_cli.errors import FrposeError

PRECISION_CHOICES = ("fp32", "bf16", "fp16", "int8", "auto")   # precision.formats' (that module imports torch)
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
# torch's ATEN_CPU_CAPABILITY values (x86; vsx/zvector/sve256 are other CPUs') and oneDNN's CPU ISA hints
ATEN_CAPABILITIES = ("default", "avx2", "avx512", "vsx", "zvector", "sve256")
ONEDNN_ISAS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
               "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16", "AVX10_1_512",
               "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2", "DEFAULT", "ALL")


@dataclass(frozen=True)
class Variable:
    name: str
    accepts: str
    meaning: str


VARIABLES = (
    Variable("FRPOSE_HOME", "a folder (created when first needed)",
             "Where frpose caches: downloaded weights (weights/), precision choices, the accuracy gate's "
             "weights. Default: $XDG_CACHE_HOME/frpose or ~/.cache/frpose; weights in torch's hub cache"),
    Variable("FRPOSE_OFFLINE", "1/true/yes/on or 0/false/no/off",
             "1: never download; named weights must be cached (= --offline)"),
    Variable("FRPOSE_MIRROR", "an http(s):// URL",
             "Download every zoo file from MIRROR/FILE_NAME instead of its publisher (air-gapped sites)"),
    Variable("FRPOSE_STRICT_HASH", "1/true/yes/on or 0/false/no/off",
             "1: refuse a file whose name claims a hash its content does not match (= --strict-hash)"),
    Variable("FRPOSE_MAX_PIXELS", "a whole number ≥ 1 (150000000 or 150_000_000)",
             "Largest image decoded, width × height (= --max-pixels; default 150000000)"),
    Variable("FRPOSE_PRECISION", ", ".join(PRECISION_CHOICES[:-1]) + " or " + PRECISION_CHOICES[-1],
             "Default --precision (default: auto on the CPU, fp32 on GPUs)"),
)


@dataclass(frozen=True)
class Settings:
    home: Path | None          # None: the default cache folders
    offline: bool
    mirror: str | None
    strict_hash: bool
    max_pixels: int | None     # None: images.DEFAULT_MAX_PIXELS
    precision: str | None      # None: the device's default
    warnings: tuple = ()       # values that are ignored, one line each


_NAMES = tuple(v.name for v in VARIABLES) + ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
_cache: tuple | None = None


def _bad(name: str, value: str, problem: str = "") -> FrposeError:
    accepts = next(v.accepts for v in VARIABLES if v.name == name)
    return FrposeError(f"{name}={value!r}{': ' + problem if problem else ''}; it takes {accepts}")


def _flag(name: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE or not value:
        return False
    raise _bad(name, value)


def _home(value: str) -> Path | None:
    if not value:
        return None
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise _bad("FRPOSE_HOME", value, "not a folder")
    return path


def _mirror(value: str) -> str | None:
    if not value:
        return None
    url = urllib.parse.urlparse(value)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise _bad("FRPOSE_MIRROR", value, "not a URL")
    return value


def _max_pixels(value: str) -> int | None:
    if not value:
        return None
    digits = value.replace("_", "")
    if not digits.isdigit() or int(digits) < 1:
        raise _bad("FRPOSE_MAX_PIXELS", value)
    return int(digits)


def _precision(value: str) -> str | None:
    if value and value.lower() not in PRECISION_CHOICES:
        raise _bad("FRPOSE_PRECISION", value)
    return value.lower() or None


def isa_cap_ignored(name: str, value: str) -> bool:
    """A CPU ISA cap with a value torch (ATEN_CPU_CAPABILITY) or oneDNN does not know: they ignore it."""
    if not value:
        return False
    known = ATEN_CAPABILITIES if name == "ATEN_CPU_CAPABILITY" else ONEDNN_ISAS
    return value.strip().lower() not in {k.lower() for k in known}


def _parse(raw: dict) -> Settings:
    notes = tuple(f"{name}={raw[name]!r} is not a value "
                  f"{'torch' if name == 'ATEN_CPU_CAPABILITY' else 'oneDNN'} knows, so it ignores it, and so does "
                  f"frpose ({', '.join(ATEN_CAPABILITIES if name == 'ATEN_CPU_CAPABILITY' else ONEDNN_ISAS)})"
                  for name in _NAMES[len(VARIABLES):] if isa_cap_ignored(name, raw[name]))
    return Settings(home=_home(raw["FRPOSE_HOME"]), offline=_flag("FRPOSE_OFFLINE", raw["FRPOSE_OFFLINE"]),
                    mirror=_mirror(raw["FRPOSE_MIRROR"]),
                    strict_hash=_flag("FRPOSE_STRICT_HASH", raw["FRPOSE_STRICT_HASH"]),
                    max_pixels=_max_pixels(raw["FRPOSE_MAX_PIXELS"]),
                    precision=_precision(raw["FRPOSE_PRECISION"]), warnings=notes)


def settings() -> Settings:
    """The checked values of the environment as it is now (a wrong one: :class:`FrposeError`)."""
    global _cache
    raw = {name: os.environ.get(name, "").strip() for name in _NAMES}
    key = tuple(raw.values())
    if _cache is None or _cache[0] != key:
        _cache = (key, _parse(raw))
    return _cache[1]


def load_settings(warn=None) -> Settings:
    """Check every variable now (the CLI's start-up); ignored values go to ``warn`` (default: stderr)."""
    checked = settings()
    if checked.warnings:
        from frpose_cli.errors import warn as warn_line
        for line in checked.warnings:
            (warn or warn_line)(line)
    return checked
