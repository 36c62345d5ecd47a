"""The data side of `frpose predict`: a shard's files, decoded (and cropped) in DataLoader workers.

With ``--workers N`` (N > 0) a ``torch.utils.data.DataLoader`` runs N processes that each take
every N-th file of this shard: they read and decode images and, when the boxes need no network
(``--boxes``, ``--detector whole-image``), also find the boxes and cut the crops.  The main
process runs the detector network and the pose network, so on a GPU the networks, not JPEG
decoding, set the pace.  The DataLoader returns the workers' results in turn, which is the
source's order again (every file gives exactly one result); a video gives one placeholder and
its frames are read by the main process, so frames stay in order however long the video is.
At most ``2 × N`` decoded images wait in the queue (``prefetch_factor``), whatever the source's size.

Images a resumed run has done already are recognised by name before anything is decoded.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import torch

from frpose_cli.distributed import worker_init
from frpose_cli.data.sources import Source, SourceFile, SourceItem
from frpose_cli.runtime.engine import CropGeometry


@dataclass
class Loaded:
    """One file of the stream, as the main process receives it."""
    item: SourceItem | None = None        # an image (decoded), a problem file, or a done image (not decoded)
    video: SourceFile | None = None       # a video: the main process reads its frames
    done: bool = False                    # an image finished by an earlier session (--resume)
    prepared: tuple | None = None         # (boxes, crops, centers, scales, dropped) made in the worker
    seconds: dict = field(default_factory=lambda: {"read": 0.0, "detect": 0.0, "crop": 0.0})


def detect_counting(detector, item: SourceItem):
    """``detector(item)`` and the boxes it dropped for this item, by reason (also added to its total)."""
    total = getattr(detector, "dropped", None)
    if total is None:
        return detector(item), {}
    detector.dropped = Counter()
    try:
        boxes = detector(item)
        mine = dict(detector.dropped)
    finally:
        total.update(detector.dropped)
        detector.dropped = total
    return boxes, mine


class ShardStream(torch.utils.data.IterableDataset):
    """This shard's files in source order; in worker w of N, only its every N-th file."""

    def __init__(self, source: Source, shard, done: set, detector=None, geometry: CropGeometry | None = None):
        super().__init__()
        self.source, self.shard, self.done = source, shard, done
        # boxes that need no network are found (and cropped) in the workers too
        self.detector = detector if getattr(detector, "in_worker", False) else None
        self.geometry = geometry

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        mine = -1
        for f in self.source.files():
            if not self.shard.owns(f.position):
                continue
            mine += 1
            if mine % workers == worker:
                yield self.load(self.source.resolve(f))

    def load(self, f: SourceFile) -> Loaded:
        if self.source.is_sequence(f):   # a video or a live stream: its frames are read in the main process
            return Loaded(video=f)
        if not f.ignored and (f.name, None) in self.done:
            return Loaded(item=SourceItem(-1, f.path, f.name, position=f.position), done=True)
        out = Loaded()
        start = time.perf_counter()
        out.item = next(iter(self.source.read(f)))
        out.seconds["read"] = time.perf_counter() - start
        if self.detector is not None and out.item.image is not None:
            start = time.perf_counter()
            boxes, dropped = detect_counting(self.detector, out.item)
            mid = time.perf_counter()
            out.prepared = (boxes, *self.geometry.crops(out.item.image, boxes), dropped)
            out.seconds["detect"], out.seconds["crop"] = mid - start, time.perf_counter() - mid
        return out


def _keep(x):
    return x


def loader(stream: ShardStream, workers: int):
    """The stream itself without workers; else a DataLoader over it (results in source order)."""
    if workers <= 0:
        return iter(stream)
    return iter(torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers, collate_fn=_keep,
                                            prefetch_factor=2, worker_init_fn=worker_init()))
