"""`frpose eval` in shards (:mod:`frpose_cli.jobs.shards`): each process runs the network on its images
and writes its poses as one part, atomically; one process merges the parts and scores them.

A part is ``OUT-parts/shard-{i}-of-{n}.npz`` beside the results file ``OUT.json``: the raw poses
of the shard's person crops (before rescoring and OKS-NMS, which work per image) with each
crop's place in the full instance list, so the merged arrays are the single-process arrays in
the single-process order, and the results and AP are the same.  It also records how the run
was made and what scoring needs (annotation file, σ, thresholds, output paths), so
``frpose merge`` can finish a run whose merging process was lost.  A shard whose part is
already there with the same options is not run again (a requeued array job).
"""
from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from frpose_cli.errors import FrposeError
from frpose_cli.fileio import atomic_write_binary

ARRAYS = ("index", "image_id", "keypoints", "keypoint_scores", "box_scores", "areas")


@dataclass
class RawPoses:
    """Poses of person crops before rescoring and NMS, with their place in the full instance list."""
    index: np.ndarray
    image_id: np.ndarray
    keypoints: np.ndarray           # (N, K, 2) image pixels
    keypoint_scores: np.ndarray     # (N, K)
    box_scores: np.ndarray
    areas: np.ndarray
    skipped_global: dict = field(default_factory=dict)   # instance selection: the same in every shard
    skipped_local: dict = field(default_factory=dict)    # missing and unreadable images of these crops
    damaged: set = field(default_factory=set)
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)
    shards: list = field(default_factory=list)           # per shard: {"shard", "crops", "seconds"}
    coverage: dict = field(default_factory=dict)         # images without boxes, of all shards (evaluate.box_coverage)

    @property
    def skipped(self) -> Counter:
        return Counter(self.skipped_global) + Counter(self.skipped_local)


def own_instances(instances, shard):
    """The shard's instances (images by position among the sorted image ids) and their positions."""
    order = {image_id: i for i, image_id in enumerate(sorted({inst.image_id for inst in instances}))}
    mine = [(g, inst) for g, inst in enumerate(instances) if shard.owns(order[inst.image_id])]
    return type(instances)([inst for _, inst in mine], getattr(instances, "skipped", {})), [g for g, _ in mine]


def parts_dir_for(out) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}-parts")


def part_path(parts: Path, index: int, count: int) -> Path:
    return Path(parts) / f"shard-{index}-of-{count}.npz"


def write_part(path: Path, raw: RawPoses, meta: dict, shard_label: str) -> None:
    info = {**meta, "shard": shard_label, "skipped_global": raw.skipped_global,
            "skipped_local": dict(raw.skipped_local), "damaged": sorted(raw.damaged),
            "seconds": raw.seconds, "timings": raw.timings, "coverage": raw.coverage}
    arrays = {name: getattr(raw, name) for name in ARRAYS}

    def write(f):
        buf = io.BytesIO()
        np.savez(buf, info=np.array(json.dumps(info)), **arrays)
        f.write(buf.getvalue())
    atomic_write_binary(path, write)


def read_part(path: Path) -> tuple[RawPoses, dict]:
    try:
        with np.load(path, allow_pickle=False) as z:
            info = json.loads(str(z["info"]))
            arrays = {name: z[name] for name in ARRAYS}
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        raise FrposeError(f"{path}: not a readable eval part ({type(e).__name__}); move it away and rerun "
                          "that shard") from None
    raw = RawPoses(**arrays, skipped_global=info["skipped_global"], skipped_local=info["skipped_local"],
                   damaged=set(info["damaged"]), seconds=info["seconds"], timings=info["timings"],
                   coverage=info.get("coverage", {}),
                   shards=[{"shard": info["shard"], "crops": int(len(arrays["index"])),
                            "seconds": info["seconds"], "timings": info["timings"]}])
    return raw, info


def check_same_options(infos: list, what: str) -> None:
    first = infos[0].get("options", {})
    for info in infos[1:]:
        other = info.get("options", {})
        diff = [f"{k} {first.get(k)!r} ≠ {other.get(k)!r}" for k in sorted(set(first) | set(other))
                if first.get(k) != other.get(k)]
        if diff:
            raise FrposeError(f"{what}: parts made with different options ({'; '.join(diff)})")


def merge_parts(parts: list[RawPoses]) -> RawPoses:
    """One RawPoses in the single-process order (by place in the full instance list)."""
    cat = {name: np.concatenate([getattr(p, name) for p in parts]) for name in ARRAYS}
    order = np.argsort(cat["index"], kind="stable")
    cat = {name: a[order] for name, a in cat.items()}
    if len(np.unique(cat["index"])) != len(cat["index"]):
        raise FrposeError("eval parts overlap (the same person crop in two parts); merge the parts of one split")
    local = Counter()
    for p in parts:
        local.update(p.skipped_local)
    timings = Counter()
    for p in parts:
        timings.update(p.timings)
    return RawPoses(**cat, skipped_global=parts[0].skipped_global, skipped_local=dict(local),
                    damaged=set().union(*(p.damaged for p in parts)), seconds=max(p.seconds for p in parts),
                    timings=dict(timings), shards=[s for p in parts for s in p.shards], coverage=parts[0].coverage)


def load_parts(parts: Path, count: int | None = None) -> tuple[RawPoses, dict, list[str]]:
    """Every part in ``parts`` (of the newest split): merged poses, the first part's record, missing shards."""
    found = sorted(Path(parts).glob("shard-*-of-*.npz")) if Path(parts).is_dir() else []
    if not found:
        raise FrposeError(f"{parts}: no eval parts (shard-I-of-N.npz) to merge")
    counts = {int(p.stem.rsplit("-", 1)[1]) for p in found}
    count = count or max(counts)
    mine = [p for p in found if p.stem.endswith(f"-of-{count}")]
    loaded = [read_part(p) for p in mine]
    check_same_options([info for _, info in loaded], str(parts))
    present = {int(p.stem.split("-")[1]) for p in mine}
    missing = [f"{i}/{count}" for i in range(count) if i not in present]
    return merge_parts([raw for raw, _ in loaded]), loaded[0][1], missing
