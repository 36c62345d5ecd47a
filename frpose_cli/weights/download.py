"""Downloads of named weights: one cache folder, hash-checked, atomic, one download per file, with a progress bar.

Where files go (the *cache*):

* ``$FRPOSE_HOME/weights`` when ``FRPOSE_HOME`` is set;
* else torch's own checkpoint cache, ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``,
  by default ``~/.cache/torch/hub/checkpoints``), so a file torchvision already downloaded is
  reused and what frpose downloads torchvision finds too.

How a file arrives: under an exclusive lock (``fcntl.flock`` on ``.<name>.lock`` in the cache
folder, so several processes asking for the same file at once, say the ranks of a job, download it
once: the others wait, saying so once, then find it cached), streamed into a temp file
``.<name>.XXXXXXXX.tmp`` beside it, its SHA-256 checked, then renamed into place.  A failed or
mismatching download leaves nothing behind; one killed outright (SIGKILL, power loss) can leave its
temp file, which the next download of that name removes, holding the lock, so a live download is never
touched.  Redirects 301/302/303/307/308 are followed (at most 10; urllib itself learnt 308 only in
Python 3.11).  An HTML page served with status 200 (a login wall, a mirror's error page) is refused,
never cached as weights.

Hashes.  A full digest (``sha256=``, a zoo entry's ``ZooEntry.sha256``) must match exactly, always.
A file name can also claim a hash prefix, in the two forms the publishers use, and only those:

* torchvision: ``<stem>-<8 to 64 hex>.<ext>`` (``resnet50-0676ba61.pth``), where the hex is not all
  digits: ``best-20240501.pth`` is a user's date or step count, not a claim.  A real hash prefix of
  digits only (about 2 % of 8-digit prefixes) is missed: then the name is not checked.
* OpenMMLab: ``<stem>-<8 hex>_<8 digits>.<ext>`` (``...-256x192-04af38ce_20220923.pth``): here the
  date suffix marks the form, so a hash of digits only counts too.

A mismatch with the claim of a zoo entry's name (``strict=True``) is a refusal (the file is not kept).
For a URL of the user's own it is a warning and the file is kept, as the name may only look like a
claim, unless ``--strict-hash`` / ``FRPOSE_STRICT_HASH=1`` makes it a refusal too.

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
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:   # Windows
    fcntl = None

from frpose_cli.errors import FrposeError, note, warn
from frpose_cli.fileio import atomic_write_binary
from frpose_cli.home import frpose_home
from frpose_cli.settings import settings

CHUNK = 1 << 20
TIMEOUT_S = 30.0
MAX_REDIRECTS = 10
_EXT = r"\.[A-Za-z][A-Za-z.]*"
_TORCHVISION_HASH = re.compile(rf"-([0-9a-f]{{8,64}}){_EXT}$")     # resnet50-0676ba61.pth
_OPENMMLAB_HASH = re.compile(rf"-([0-9a-f]{{8}})_[0-9]{{8}}{_EXT}$")  # ...-04af38ce_20220923.pth
_offline_flag = False
_strict_hash_flag = False


def set_offline(value: bool) -> None:
    """``--offline``: forbid downloads for the rest of this process (the env var does it too)."""
    global _offline_flag
    _offline_flag = bool(value)


def offline() -> bool:
    return _offline_flag or settings().offline


def set_strict_hash(value: bool) -> None:
    """``--strict-hash``: refuse a user URL's file that its name's hash claim does not match, for the
    rest of this process (``FRPOSE_STRICT_HASH=1`` does it too)."""
    global _strict_hash_flag
    _strict_hash_flag = bool(value)


def strict_hash() -> bool:
    return _strict_hash_flag or settings().strict_hash


def cache_dir() -> Path:
    if settings().home is not None:
        return frpose_home() / "weights"
    import torch
    return Path(torch.hub.get_dir()) / "checkpoints"


def mirror_url(url: str) -> str:
    """``url`` as ``FRPOSE_MIRROR`` redirects it (``<mirror>/<file name>``), or unchanged."""
    mirror = settings().mirror
    return f"{mirror.rstrip('/')}/{file_name_of(url)}" if mirror else url


def file_name_of(url: str) -> str:
    name = Path(urllib.parse.urlparse(url).path).name
    if not name:
        raise FrposeError(f"{url}: the URL names no file")
    return name


def hash_prefix_in_name(name: str) -> str | None:
    """The SHA-256 prefix ``name`` claims in a publisher's form (module docstring), or None."""
    m = _OPENMMLAB_HASH.search(name)
    if m:
        return m.group(1)
    m = _TORCHVISION_HASH.search(name)
    return m.group(1) if m and not m.group(1).isdigit() else None


def is_url(text) -> bool:
    return isinstance(text, str) and text.lower().startswith(("http://", "https://"))


def cached_file(name: str) -> Path:
    return cache_dir() / name


def fetch(url: str, name: str | None = None, sha256: str | None = None, what: str = "weights",
          progress: bool = True, strict: bool = False) -> Path:
    """The cached file for ``url`` (downloading it when missing and allowed); see module docstring.

    ``name``: the cache file name (default: the URL's); ``sha256``: the full expected digest, always
    enforced; ``strict``: ``name`` is a publisher's (a zoo entry), so a mismatch with the hash it
    claims refuses the file instead of warning."""
    name = name or file_name_of(url)
    dest = cached_file(name)
    if dest.is_file():
        return dest
    if offline():
        raise FrposeError(f"{what} {name} is not in the cache {dest.parent} and downloads are off "
                          f"(--offline / FRPOSE_OFFLINE); copy it there from {url}")
    full = _full_digest(sha256)
    refuse = strict or full is not None or strict_hash()
    _writable_folder(dest.parent, what)

    def fetch_and_verify(f):   # runs into fileio's temp file: a raise leaves nothing behind
        digest = _stream(url, f, name, progress, dest)
        _check_hash(url, name, digest, full, refuse)

    with _download_lock(dest) as locked:
        if dest.is_file():   # another process downloaded it while we waited
            return dest
        if locked:
            _remove_stale_temps(dest)
        atomic_write_binary(dest, fetch_and_verify)
    return dest


def _full_digest(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    if not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):   # a caller's bug, not the user's
        raise ValueError(f"sha256 must be a full 64-hex-digit digest, got {sha256!r}")
    return sha256.lower()


def _check_hash(url: str, name: str, digest: str, full: str | None, refuse: bool) -> None:
    if full is not None and digest != full:
        raise FrposeError(f"{url}: the downloaded file's SHA-256 is {digest}, expected {full}; not kept "
                          "(a damaged mirror or a changed upload?)")
    claim = hash_prefix_in_name(name)
    if claim is None or digest.startswith(claim):
        return
    said = f"{url}: the downloaded file's SHA-256 is {digest[:len(claim)]}…, expected {claim}… (the hash in its name)"
    if refuse:
        raise FrposeError(f"{said}; not kept (a damaged mirror or a changed upload?)")
    warn(f"{said}; kept, as the name may not be a hash (--strict-hash or FRPOSE_STRICT_HASH=1 "
         "refuses such files)")


@contextmanager
def _download_lock(dest: Path):
    """Hold the exclusive lock on downloading ``dest``; yields whether a lock is really held."""
    if fcntl is None:
        # No flock on Windows: processes then download side by side; each rename is still atomic, so
        # every reader sees a whole file, only the bandwidth is doubled.  Temp files are not cleaned
        # up without the lock: a live download's could not be told from a stale one.
        yield False
        return
    path = dest.parent / f".{dest.name}.lock"
    fd = _lock(path, dest)
    try:
        yield fd is not None
    finally:
        if fd is not None:
            # Removed while still held, so the cache keeps no lock files; a waiter on the removed
            # file sees it is gone (_same_file) and locks afresh.
            path.unlink(missing_ok=True)
            os.close(fd)


def _lock(path: Path, dest: Path) -> int | None:
    """An fd holding ``flock(LOCK_EX)`` on the lock file ``path``, or None where flock fails."""
    said = False
    while True:
        try:   # read-only is enough for flock, and works on a lock file another user created
            fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not said:
                    note(f"waiting for another process downloading {dest.name} into {dest.parent}")
                    said = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            if _same_file(fd, path):
                return fd
        except OSError:   # a filesystem without flock (some network mounts): go on unlocked, as on Windows
            os.close(fd)
            return None
        except BaseException:   # Ctrl-C while waiting
            os.close(fd)
            raise
        os.close(fd)   # the holder we waited for removed this lock file: lock the one there now


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _is_temp_of(name: str, file_name: str) -> bool:
    """Is ``file_name`` a temp file of fileio.atomic_open for ``name`` (mkstemp's ``.<name>.XXXXXXXX.tmp``)?
    The random part has no dot, so another name's temp (``.<name>.x.pth.XXXXXXXX.tmp``) never matches."""
    return re.fullmatch(rf"\.{re.escape(name)}\.[^./]+\.tmp", file_name) is not None


def _remove_stale_temps(dest: Path) -> None:
    """Remove temp files of earlier downloads of ``dest`` that were killed; call only holding its lock."""
    for p in dest.parent.iterdir():
        if _is_temp_of(dest.name, p.name):
            p.unlink(missing_ok=True)


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


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follows 301/302/303/307 and 308 on every Python: urllib follows 308 only from 3.11 on."""
    max_redirections = MAX_REDIRECTS
    inf_msg = f"more than {MAX_REDIRECTS} redirects or a redirect loop; the last: "   # one line, unlike urllib's
    http_error_308 = urllib.request.HTTPRedirectHandler.http_error_302

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        # 308 is 307 made permanent: the same for the GETs sent here, and 3.10 knows 307
        return super().redirect_request(req, fp, 307 if code == 308 else code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_Redirects)   # the default handlers (proxies too), this redirect one


def _looks_like_html(first: bytes, content_type: str) -> bool:
    head = first[:1024].removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    return head.startswith((b"<!doctype", b"<html")) or (content_type == "text/html" and head.startswith(b"<"))


def _stream(url: str, f, name: str, progress: bool, dest: Path) -> str:
    """Copy ``url`` into ``f``; returns the hex SHA-256 of what arrived."""
    from tqdm import tqdm

    sha = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": "frpose"})
    try:
        with _OPENER.open(request, timeout=TIMEOUT_S) as response:
            total = response.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            chunk = response.read(CHUNK)
            if _looks_like_html(chunk, response.headers.get_content_type()):
                raise FrposeError(f"{url} served an HTML page, not a weights file (a login or error page? "
                                  "check the URL)")
            got = 0
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"download {name}",
                      disable=not progress, file=sys.stderr, leave=True) as bar:
                while chunk:
                    f.write(chunk)
                    sha.update(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
                    chunk = response.read(CHUNK)
    except urllib.error.HTTPError as e:
        raise FrposeError(f"cannot download {url} (HTTP {e.code} {' '.join(str(e.reason).split())})") from None
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
        note(f"downloaded {url} → {dest} ({got / 2 ** 20:.1f} MB)")
    return sha.hexdigest()
