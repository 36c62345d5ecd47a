"""Logs of a `frpose predict` run (:mod:`frpose_cli.inference.run_log`) → ``predictions.json`` + ``images.json``.

The same code finishes a one-process run, rank 0 of a torchrun run, the last ``--shard`` job and
``frpose merge``, so a run gives the same files however it was split.  The logs are merged as
sorted streams (each log is in stream order): memory stays bounded by the problem lists, and
both files are written through temp files and renamed.

* **Order**: by (file position, frame), the single-process stream order.
* **Duplicates**: when several sessions hold entries for one file (a skipped file retried by a
  resume, an ignored file listed again), only the latest session's are kept.
* **Ids**: ``image_id`` is the COCO id when the name is one, else the item's place in the stream
  (images, frames and unreadable files count one each), numbered here over the merged stream:
  a shard cannot know how many frames the videos of other shards hold.
"""
from __future__ import annotations

import heapq
import json
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import NamedTuple

from frpose_cli.errors import FrposeError
from frpose_cli.fileio import atomic_open
from frpose_cli.inference.run_log import end_of, header_of, list_logs, read_entries, unfinished
from frpose_cli.inference.posetrack_out import PoseTrackFiles

PREDICTIONS, IMAGES = "predictions.json", "images.json"


class Skipped(NamedTuple):
    """A file not (fully) processed, in every summary and report: its name and why (for a warning,
    the warning).  ``images.json`` spells it ``{"file_name", "reason"}`` (``"warning"`` for warnings)."""
    file_name: str
    reason: str

    @classmethod
    def from_entry(cls, fields: dict) -> "Skipped":
        return cls(fields["file_name"], fields.get("reason", fields.get("warning")))

    def to_json(self, key: str = "reason") -> dict:
        return {"file_name": self.file_name, key: self.reason}


@dataclass
class ShardStats:
    shard: str
    sessions: list = field(default_factory=list)
    images: int = 0
    persons: int = 0
    seconds: float = 0.0
    finished: bool = False

    @property
    def rate(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


@dataclass
class MergeReport:
    out_dir: Path
    images: int = 0
    persons: int = 0
    skipped: list = field(default_factory=list)     # Skipped
    warnings: list = field(default_factory=list)    # Skipped (reason: the warning)
    ignored: list = field(default_factory=list)     # Skipped
    boxes_dropped: Counter = field(default_factory=Counter)
    images_without_boxes: int = 0
    shards: list = field(default_factory=list)      # ShardStats of the latest split, then older ones
    split: int = 1
    session_stats: dict = field(default_factory=dict)   # (session, shard) → the done/stopped line
    posetrack: list = field(default_factory=list)       # the PoseTrack files written (tracked sequences)
    posetrack_problem: str = ""

    @property
    def missing(self) -> list[str]:
        """Shards of the latest split without a finished session."""
        finished = {s.shard for s in self.shards if s.finished}
        return [f"{i}/{self.split}" for i in range(self.split) if f"{i}/{self.split}" not in finished]


def _stream(log):
    for seq, entry in enumerate(read_entries(log.path)):
        if "o" in entry:
            pos, sub = entry["o"]
            yield (pos, sub, log.session, seq), entry, log


def merge_logs(logs, out_dir: Path) -> MergeReport:
    """Merge ``logs`` (:class:`~frpose_cli.inference.run_log.LogFile`) into ``out_dir``'s two JSON files."""
    from frpose_cli.inference.detectors import coco_id_from_name
    from frpose_cli.inference.run_folder import RUN_OPTIONS

    logs = list(logs)
    if not logs:
        raise FrposeError(f"no predict logs (parts/session*-shard*-of*.jsonl) to merge for {out_dir}")
    headers = {log: header_of(log.path) or {} for log in logs}
    options = _check_same_options(list(headers.values()), RUN_OPTIONS)
    latest = max(logs, key=lambda f: (f.session, f.index))
    report = MergeReport(out_dir=Path(out_dir), split=latest.count)
    stats = {}
    for log in logs:
        stats.setdefault(log.shard, ShardStats(log.shard)).sessions.append(log.session)
    slot, first_record = 0, True
    posetrack, tracking = None, None   # from the first tracked frame, which carries the tracking settings
    with atomic_open(out_dir / PREDICTIONS, "w") as pred, \
            tempfile.TemporaryFile("w+", encoding="utf-8", dir=out_dir) as listing:
        pred.write("[")
        merged = heapq.merge(*(_stream(log) for log in logs), key=lambda t: t[0])
        for _, group in groupby(merged, key=lambda t: t[0][:2]):
            group = list(group)
            newest = max(key[2] for key, _, _ in group)
            group = [(e, log) for key, e, log in group if key[2] == newest]
            _check_one_log(group, newest)
            for e, log in group:
                if "image" in e:
                    image = e["image"]
                    coco_id = coco_id_from_name(image["file_name"]) if image.get("frame") is None else None
                    image_id = slot if coco_id is None else coco_id
                    for rec in e.get("records", []):
                        rec["image_id"] = image_id
                        pred.write(("" if first_record else ", ") + json.dumps(rec))
                        first_record = False
                    entry = {"file_name": image["file_name"], "image_id": image_id,
                             **{k: v for k, v in image.items() if k != "file_name"}}
                    if "tracking" in e and tracking is None:
                        tracking = e["tracking"]
                        posetrack = PoseTrackFiles(out_dir, tracking.get("keypoints"))
                    if posetrack is not None:
                        posetrack.add(image, e.get("records", []))
                    listing.write(("," if report.images else "") + "\n  " + json.dumps(entry))
                    report.images += 1
                    report.persons += image.get("persons", 0)
                    report.boxes_dropped.update(e.get("dropped", {}))
                    report.images_without_boxes += bool(e.get("unmatched"))
                    stats[log.shard].images += 1
                    stats[log.shard].persons += image.get("persons", 0)
                for kind, target in (("skipped", report.skipped), ("warning", report.warnings),
                                     ("ignored", report.ignored)):
                    if kind in e:
                        target.append(Skipped.from_entry(e[kind]))
            slot += any("image" in e or "skipped" in e for e, _ in group)
        pred.write("]")
        for log in logs:
            end = end_of(log.path)
            if end is not None:
                line = end.get("done") or end.get("stopped") or {}
                stats[log.shard].seconds += float(line.get("seconds", 0.0))
                stats[log.shard].finished |= "done" in end
                report.session_stats[(log.session, log.shard)] = line
        report.shards = sorted(stats.values(), key=lambda s: (not s.shard.endswith(f"/{report.split}"),
                                                              *map(int, reversed(s.shard.split("/")))))
        header = headers[latest]
        meta = {**header.get("meta", {}), **({"tracking": tracking} if tracking else {}), "options": options,
                "boxes_dropped": dict(sorted(report.boxes_dropped.items())),
                "images_without_boxes": report.images_without_boxes,
                "shards": {"count": report.split, "rule": header.get("split_rule", ""),
                           "parts": [{"shard": s.shard, "sessions": s.sessions, "images": s.images,
                                      "persons": s.persons, "seconds": round(s.seconds, 3), "finished": s.finished}
                                     for s in report.shards]}}
        listing.seek(0)
        _write_images_json(out_dir, meta, report, listing)
    if posetrack is not None:
        report.posetrack, report.posetrack_problem = posetrack.close(), posetrack.problem
    return report


def _check_one_log(group, session) -> None:
    """In one session a file belongs to one shard: entries in two logs mean two runs are mixed."""
    logs = sorted({log.path for _, log in group})
    if len(logs) > 1:
        name = _file_name(group[0][0])
        raise FrposeError(f"{name} is in two logs of session {session} ({logs[0]}, {logs[1]}): they are the "
                          "parts of different runs; merge the parts of one run")


def _file_name(entry: dict) -> str:
    for kind in ("image", "skipped", "warning", "ignored"):
        if kind in entry:
            return entry[kind]["file_name"]
    return "a file"


def _check_same_options(headers: list, keys) -> dict:
    first = headers[0].get("options", {}) if headers else {}
    for h in headers[1:]:
        other = h.get("options", {})
        diff = [f"{k} {first.get(k)!r} ≠ {other.get(k)!r}" for k in keys if first.get(k) != other.get(k)]
        if diff:
            raise FrposeError(f"the logs to merge were made with different options ({'; '.join(diff)}); "
                              "merge only the parts of one run")
    return first


def _write_images_json(out_dir: Path, meta: dict, report: MergeReport, listing) -> None:
    """images.json: the run's settings and counts, every image (one a line), every problem file."""
    with atomic_open(out_dir / IMAGES, "w") as f:
        head = json.dumps(meta, indent=1)
        f.write(head[:-2] + ',\n "images": [')
        while chunk := listing.read(1 << 20):
            f.write(chunk)
        f.write("]")
        for name, items in (("skipped", report.skipped), ("warnings", report.warnings), ("ignored", report.ignored)):
            records = [s.to_json("warning" if name == "warnings" else "reason") for s in items]
            f.write(f',\n "{name}": ' + json.dumps(records, indent=1).replace("\n", "\n "))
        f.write("\n}\n")


def merge_run(run_dirs, out_dir: Path | None = None, partial: bool = False) -> MergeReport:
    """``frpose merge``: the logs of one or more run folders (one run split over several folders).
    Shards without a finished session are an error unless ``partial`` (merge what is there)."""
    run_dirs = [Path(d) for d in run_dirs]
    for d in run_dirs:
        if not d.is_dir():
            raise FrposeError(f"{d}: no such run folder")
    logs = [log for d in run_dirs for log in list_logs(d)]
    if out_dir is None:
        if len(run_dirs) > 1:
            raise FrposeError("several run folders are merged into a new one: add --out DIR")
        out_dir = run_dirs[0]
    seen = {}
    for log in logs:
        other = seen.setdefault(log.path.name, log.path)
        if other != log.path:
            raise FrposeError(f"{log.path.name} is in two folders ({other.parent.parent}, {log.path.parent.parent}): "
                              "they hold different runs; merge the parts of one run")
    _, missing = unfinished(logs)
    if missing and not partial:
        raise FrposeError(f"shard(s) {', '.join(missing)} have not finished: resume them with --resume and merge "
                          "again, or pass --partial to merge what is there")
    return merge_logs(logs, Path(out_dir))
