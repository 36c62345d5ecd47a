"""A tracked run's PoseTrack files, written when its logs are merged: ``RUN/posetrack/<sequence>.json``,
one PoseTrack18 file per video, stream or frame folder (:mod:`frpose_cli.tracking.posetrack`), which
poseval and ``frpose eval --ann GT --results RUN/posetrack`` read.

The merged stream holds each sequence's frames one after the other, so one sequence is in memory
at a time.  Two sequences with one name (``a/clip.mp4`` and ``b/clip.mp4``) get ``clip`` and
``clip-2``; PoseTrack's own sequences keep their names, which poseval matches with the ground truth's.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath

from frpose_cli.tracking.posetrack import posetrack_sequence, sequence_name, write_sequence

FOLDER = "posetrack"


class PoseTrackFiles:
    """Collects the frames of each tracked sequence in merge order and writes each when it ends."""

    def __init__(self, out_dir: Path, keypoint_names):
        self.folder, self.names = Path(out_dir) / FOLDER, list(keypoint_names or [])
        self.current, self.name, self.frames, self.written, self.problem = None, None, [], [], ""

    def add(self, image: dict, records: list) -> None:
        """One merged image entry (``image`` carries ``sequence`` when tracked) and its records."""
        key = image.get("sequence")
        if key != self.current:
            self.flush()
            self.current = key
            # a video's or stream's name without its extension; a frame folder's name (PoseTrack's layout)
            self.name = PurePosixPath(key).stem if key is not None and "frame" in image else None
        if key is not None:
            self.frames.append({"file_name": image["file_name"], "frame": image.get("frame", len(self.frames)),
                                "width": image["width"], "height": image["height"], "records": records})

    def flush(self) -> None:
        if self.current is None or not self.frames or self.problem:
            self.frames = []
            return
        frames, self.frames = self.frames, []
        try:
            name = self.name or sequence_name(frames[0]["file_name"])
            data = posetrack_sequence(name, frames, self.names)
        except ValueError as e:   # a keypoint set with no PoseTrack joint: the COCO files are the results
            self.problem = f"no PoseTrack files ({e})"
            return
        taken = {p.stem for p in self.written}
        base, n = name, 1
        while name in taken:
            n += 1
            name = f"{base}-{n}"
        self.written.append(write_sequence(self.folder / f"{name}.json", data))

    def close(self) -> list[Path]:
        self.flush()
        return self.written
