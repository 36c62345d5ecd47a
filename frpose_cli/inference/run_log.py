"""The append-only logs a `frpose predict` run writes as it goes (merged by :mod:`frpose_cli.inference.run_merge`).

Each process of each session (a first run, or a ``--resume``) writes one file of its own::

    RUN/parts/session{S}-shard{i}-of{n}.jsonl

one JSON object a line: a header (options, model, split), then one line per file event in
stream order — an image with its pose records, a skipped, damaged or ignored file — and a last
``done`` (or ``stopped``) line with the process's counts and timings.  Lines are buffered and
appended every ``--save-every`` images (and every :data:`FLUSH_SECONDS`), each append followed
by ``fsync``, so the cost of saving is linear in the results, however large the run.

Why a log and not a rewritten JSON file: rewriting ``predictions.json`` at every save is
quadratic on a run of millions of images.  Crash safety comes from only ever appending, in a
new file per session: a process killed in the middle of an append leaves a last line cut short,
which :func:`read_entries` drops (that image is simply redone by ``--resume``); everything
before it is whole.  ``predictions.json`` and ``images.json`` are built from the logs, atomically,
at the end of the run.
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from frpose_cli.errors import FrposeError

PARTS = "parts"
FLUSH_SECONDS = 10.0
_NAME = re.compile(r"session(\d+)-shard(\d+)-of(\d+)\.jsonl")


@dataclass(frozen=True)
class LogFile:
    path: Path
    session: int
    index: int
    count: int

    @property
    def shard(self) -> str:
        return f"{self.index}/{self.count}"


def log_path(run_dir: Path, session: int, index: int, count: int) -> Path:
    return Path(run_dir) / PARTS / f"session{session}-shard{index}-of{count}.jsonl"


def list_logs(run_dir: Path) -> list[LogFile]:
    folder = Path(run_dir) / PARTS
    found = [LogFile(p, int(m.group(1)), int(m.group(2)), int(m.group(3)))
             for p in (folder.iterdir() if folder.is_dir() else ()) if (m := _NAME.fullmatch(p.name))]
    return sorted(found, key=lambda f: (f.session, f.count, f.index))


def next_session(run_dir: Path) -> int:
    return max((f.session for f in list_logs(run_dir)), default=0) + 1


def read_entries(path: Path) -> Iterator[dict]:
    """Every whole line of a log.  A last line cut short (the process was killed while appending)
    is dropped; a damaged line before it is an error, since appends never rewrite earlier bytes."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise FrposeError(f"cannot read {path} ({e.strerror or e})") from None
    with f:
        for number, line in enumerate(f, 1):
            if not line.endswith(b"\n"):
                return                                   # cut short by a kill: redone on resume
            try:
                entry = json.loads(line)
            except (UnicodeDecodeError, json.JSONDecodeError):
                entry = None
            if not isinstance(entry, dict):
                raise FrposeError(f"{path}: line {number} is damaged (not a log entry); "
                                  "move the file away to redo its images")
            yield entry


def end_of(path: Path) -> dict | None:
    """The log's closing line (``{"done": ...}`` or ``{"stopped": ...}``), read from the file's end."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - (1 << 16)))
            tail = f.read()
    except OSError:
        return None
    lines = tail.split(b"\n")
    last = lines[-2] if len(lines) > 1 else b""   # the last whole line
    if not last.startswith((b'{"done"', b'{"stopped"')):
        return None
    try:
        return json.loads(last)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def finished_shards(run_dir: Path) -> tuple[int, list[str]]:
    """The newest split's shard count and which of its shards have no finished session yet."""
    return unfinished(list_logs(run_dir))


def unfinished(logs: list[LogFile]) -> tuple[int, list[str]]:
    """:func:`finished_shards` of a list of logs (one run, possibly from several folders)."""
    if not logs:
        return 0, []
    count = max(logs, key=lambda f: (f.session, f.index)).count
    finished = {f.index for f in logs if f.count == count and "done" in (end_of(f.path) or {})}
    return count, [f"{i}/{count}" for i in range(count) if i not in finished]


def header_of(path: Path) -> dict | None:
    for entry in read_entries(path):
        return entry.get("header")
    return None


class RunLog:
    """The log of one process in one session; the file is created with the first append."""

    def __init__(self, path: Path, header: dict, save_every: int = 50):
        self.path, self.header, self.save_every = Path(path), header, max(1, int(save_every))
        self.lines: list[str] = []
        self.images_buffered, self.last_flush, self.file = 0, time.monotonic(), None
        self.images = 0               # image entries appended (for progress)

    def add(self, entry: dict) -> None:
        self.lines.append(json.dumps(entry, separators=(",", ":")) + "\n")
        if "image" in entry:
            self.images_buffered += 1
            self.images += 1
        if self.images_buffered >= self.save_every or time.monotonic() - self.last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if not self.lines:
            return
        try:
            if self.file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.file = open(self.path, "x", encoding="utf-8")   # a session never reuses a file
                self.lines.insert(0, json.dumps({"header": self.header}) + "\n")
            self.file.write("".join(self.lines))
            self.file.flush()
            os.fsync(self.file.fileno())
        except OSError as e:
            raise FrposeError(f"cannot append to {self.path} ({e.strerror or e}); what was written before is "
                              "intact: continue with --resume once there is room") from None
        self.lines, self.images_buffered, self.last_flush = [], 0, time.monotonic()

    def close(self, stats: dict, finished: bool) -> None:
        """The last line: ``done`` when every item of this process was handled, else ``stopped``."""
        self.lines.append(json.dumps({"done" if finished else "stopped": stats}) + "\n")
        try:
            self.flush()
        finally:
            if self.file is not None:
                self.file.close()
                self.file = None


class NullLog:
    """The log of a run that writes nothing (the Python API's ``predict_stream`` without ``save``)."""
    lines, file = (), None

    def add(self, entry: dict) -> None:
        pass

    def close(self, stats: dict, finished: bool) -> None:
        pass


def done_state(run_dir: Path, image_records: bool = False) -> tuple[set, dict]:
    """What earlier sessions finished: the (file name, frame) of every image with results, and the
    records of done video frames by file name and frame (a resumed video's overlay is redrawn whole,
    its tracks continue from them); with ``image_records`` also those of images (frame None: a
    tracked folder of frames)."""
    done, video_records = set(), {}
    for log in list_logs(run_dir):
        for entry in read_entries(log.path):
            image = entry.get("image")
            if image is None:
                continue
            key = (image["file_name"], image.get("frame"))
            done.add(key)
            if key[1] is not None or image_records:
                video_records.setdefault(key[0], {})[key[1]] = entry.get("records", [])
    return done, video_records
