"""Downloads of named weights: one cache folder, hash-checked, atomic, with a progress bar.

Where files go (the *cache*):

* ``$FRPOSE_HOME/weights`` when ``FRPOSE_HOME`` is set;
* else torch's own checkpoint cache, ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``,
  by default ``~/.cache/torch/hub/checkpoints``), so a file torchvision already downloaded is
  reused and what frpose downloads torchvision finds too.

How a file arrives: streamed into a temp file in the cache folder, its SHA-256 checked against
the expected hash (the full digest when known, else the hash prefix in the file name, the
convention of torchvision's and OpenMMLab's published files), then renamed into place.  A
failed, interrupted or mismatching download leaves nothing behind.

``FRPOSE_MIRROR=https://host/path`` makes every zoo entry download from ``<mirror>/<file name>``
(for air-gapped sites: copy the files there once).  ``--offline`` or ``FRPOSE_OFFLINE=1`` forbids
every network access: a file not in the cache is then a one-line error saying where to copy it.
"""
from __future__ import annotations

import hashlib
import os
import re
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from frpose_cli.errors import FrposeError
from frpose_cli.fileio import atomic_write_binary
from frpose_cli.home import frpose_home

CHUNK = 1 << 20
TIMEOUT_S = 30.0
_TRUE = ("1", "true", "yes", "on")
# torchvision: resnet50-0676ba61.pth; OpenMMLab: ...-256x192-04af38ce_20220923.pth
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})(?:_\d{8})?\.[A-Za-z][A-Za-z.]*$")
_offline_flag = False


def set_offline(value: bool) -> None:
    """``--offline``: forbid downloads for the rest of this process (the env var does it too)."""
    global _offline_flag
    _offline_flag = bool(value)


def offline() -> bool:
    return _offline_flag or os.environ.get("FRPOSE_OFFLINE", "").strip().lower() in _TRUE


def cache_dir() -> Path:
    if os.environ.get("FRPOSE_HOME"):
        return frpose_home() / "weights"
    import torch
    return Path(torch.hub.get_dir()) / "checkpoints"


def mirror_url(url: str) -> str:
    """``url`` as ``FRPOSE_MIRROR`` redirects it (``<mirror>/<file name>``), or unchanged."""
    mirror = os.environ.get("FRPOSE_MIRROR", "").strip()
    return f"{mirror.rstrip('/')}/{file_name_of(url)}" if mirror else url


def file_name_of(url: str) -> str:
    name = Path(urllib.parse.urlparse(url).path).name
    if not name:
        raise FrposeError(f"{url}: the URL names no file")
    return name


def hash_prefix_in_name(name: str) -> str | None:
    m = _HASH_IN_NAME.search(name)
    return m.group(1) if m else None


def is_url(text) -> bool:
    return isinstance(text, str) and text.lower().startswith(("http://", "https://"))


def cached_file(name: str) -> Path:
    return cache_dir() / name


def fetch(url: str, name: str | None = None, sha256: str | None = None, what: str = "weights",
          progress: bool = True) -> Path:
    """The cached file for ``url`` (downloading it when missing and allowed); see module docstring.

    ``name``: the cache file name (default: the URL's); ``sha256``: full expected digest (default:
    the hash prefix in ``name``, if any)."""
    name = name or file_name_of(url)
    dest = cached_file(name)
    if dest.is_file():
        return dest
    if offline():
        raise FrposeError(f"{what} {name} is not in the cache {dest.parent} and downloads are off "
                          f"(--offline / FRPOSE_OFFLINE); copy it there from {url}")
    expected = (sha256 or hash_prefix_in_name(name) or "").lower() or None
    _writable_folder(dest.parent, what)

    def fetch_and_verify(f):   # runs into fileio's temp file: a raise leaves nothing behind
        digest = _stream(url, f, name, progress, dest)
        if expected and not digest.startswith(expected):
            raise FrposeError(f"{url}: the downloaded file's SHA-256 is {digest[:len(expected)]}…, expected "
                              f"{expected}…; not kept (a damaged mirror or a changed upload?)")
    atomic_write_binary(dest, fetch_and_verify)
    return dest


def _writable_folder(folder: Path, what: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FrposeError(f"cannot create the weights cache {folder} ({e.strerror}); set FRPOSE_HOME "
                          "to a writable folder") from None
    if not os.access(folder, os.W_OK):
        raise FrposeError(f"the weights cache {folder} is not writable; set FRPOSE_HOME to a writable folder")


def _unreachable(url: str, reason: str, dest: Path) -> FrposeError:
    return FrposeError(f"cannot download {url} ({reason}); offline? copy the file to {dest} "
                       "or set FRPOSE_MIRROR to a copy you can reach")


def _stream(url: str, f, name: str, progress: bool, dest: Path) -> str:
    """Copy ``url`` into ``f``; returns the hex SHA-256 of what arrived."""
    from tqdm import tqdm

    sha = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": "frpose"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            total = response.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            got = 0
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"download {name}",
                      disable=not progress, file=sys.stderr, leave=True) as bar:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    sha.update(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as e:
        raise FrposeError(f"cannot download {url} (HTTP {e.code} {e.reason})") from None
    except urllib.error.URLError as e:
        raise _unreachable(url, str(getattr(e.reason, "strerror", None) or e.reason), dest) from None
    except (socket.timeout, TimeoutError):
        raise _unreachable(url, f"no answer in {TIMEOUT_S:g} s", dest) from None
    except ConnectionError as e:
        raise _unreachable(url, f"connection lost: {e.strerror or type(e).__name__}", dest) from None
    except OSError as e:   # writing the temp file: disk full, quota, ...
        raise FrposeError(f"cannot write {name} into {dest.parent} ({e.strerror or e})") from None
    if total is not None and got != total:
        raise FrposeError(f"cannot download {url}: the transfer stopped at {got} of {total} bytes")
    if progress:
        print(f"frpose: downloaded {url} → {dest} ({got / 2 ** 20:.1f} MB)", file=sys.stderr)
    return sha.hexdigest()
