"""What `frpose predict` prints at the end: the run's summary, with where its time went.

When detection takes most of the time (:data:`DETECTION_DOMINATES` of the stages measured) and a
faster zoo detector exists, the summary names it with both box APs, so the trade-off is the
user's to make (the default stays the paper's Faster R-CNN R50-FPN).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from frpose_cli.inference.run_merge import MergeReport
from frpose_cli.inference.stream import STAGES, WORKER_STAGES
from frpose_cli.weights import zoo

DETECTION_DOMINATES = 0.5


@dataclass
class PredictSummary:
    out_dir: Path
    images: int = 0                # processed in this run (images + video frames)
    persons: int = 0
    resumed: int = 0               # already in predictions.json, skipped by --resume
    skipped: list = field(default_factory=list)   # run_merge.Skipped: not processed
    warnings: list = field(default_factory=list)  # (file name, warning): processed, but damaged or short
    ignored: list = field(default_factory=list)   # (file name, reason): found by a scan, not a picture
    boxes_dropped: dict = field(default_factory=dict)   # reason → count
    images_without_boxes: int = 0  # processed images for which --boxes had no box
    seconds: float = 0.0
    timings: dict = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    worker_seconds: dict = field(default_factory=lambda: dict.fromkeys(WORKER_STAGES, 0.0))
    workers: int = 0
    overlapped: float = 0.0        # seconds the detect-ahead thread spent detecting (while this one went on)
    detector: str = ""
    detector_setup: str = ""       # fp32, fused, bf16, fp16 (torchvision detectors: detector_setups.py)
    shard: str = "0/1"             # this process's shard
    merged: MergeReport | None = None   # the whole run, when this process merged it
    waiting_for: list = field(default_factory=list)   # shards not finished yet (no merge)
    torchrun: bool = False
    tracks: int = 0                # identities given (tracked videos, streams, frame folders)
    tracked_frames: int = 0
    detected_frames: int = 0       # tracked frames the detector ran on (--det-every)
    frames_dropped: int = 0        # live frames that arrived while the network was busy, not processed
    frames_preroll: int = 0        # live frames that arrived before the networks were ready (let go)
    stream_end: str = ""           # how a live stream ended (Ctrl-C, SIGTERM, the window, a stall)
    latency: dict = field(default_factory=dict)   # live: seconds from a frame's arrival to its overlay

    @property
    def exit_code(self) -> int:
        """0 all good, 1 when some inputs were skipped or damaged, or shards are missing from a merge
        (the CLI uses 2 for usage/fatal errors)."""
        m = self.merged
        if m is None and self.torchrun:   # rank 0 reports this rank's files; a non-zero exit would stop the job
            return 0
        if m is not None:
            return 1 if m.skipped or m.warnings or m.missing else 0
        return 1 if self.skipped or self.warnings else 0


def detection_hint(s) -> str:
    """One line on detection's share of the time, naming the faster detector when it dominates."""
    # with --overlap the detector's own time is the helper thread's, and the detect stage only the wait for it
    beside, waited = getattr(s, "overlapped", 0.0), s.timings.get("detect", 0.0)
    detect = beside or waited
    total = sum(s.timings.values()) - waited + detect
    if not s.images or total <= 0 or detect <= 0:
        return ""
    share = detect / total
    line = f"detection: {100 * share:.0f} % of the time" + (" (in a helper thread beside the pose network)"
                                                           if beside else "")
    current = next((e for e in zoo.DETECTORS if e.name == s.detector or (s.detector == "torchvision"
                                                                         and e.name == zoo.DETECTOR.name)), None)
    faster = [e for e in zoo.DETECTORS if current is not None and e.name != current.name
              and (e.cpu_ms or 0) and (current.cpu_ms or 0) and e.cpu_ms < current.cpu_ms]
    if share >= DETECTION_DOMINATES and faster:
        # the two most accurate of the faster ones: a published person AP first, then box AP
        best = sorted(faster, key=lambda e: (e.person_ap is not None, e.person_ap or e.ap or 0), reverse=True)[:2]
        options = " or ".join(f"`--detector {e.name}` ({_accuracy(e)}, {current.cpu_ms / e.cpu_ms:.1f}x faster)"
                              for e in best)
        line += (f"; {options} against {current.name}'s {_accuracy(current)} (float32 CPU times of "
                 "docs/benchmarks.md)")
    return line


def _accuracy(entry) -> str:
    """A detector's published accuracy in words: person AP where published, else box AP over 80 classes."""
    return f"person AP {entry.person_ap:.1f}" if entry.person_ap is not None else f"box AP {entry.ap:.1f}"


def tracking_lines(s) -> list[str]:
    """What tracking and a live stream add to the summary."""
    lines = []
    if s.tracked_frames:
        lines.append(f"tracking: {s.tracks} tracks over {s.tracked_frames} frames, the detector on "
                     f"{s.detected_frames} of them")
    if s.latency:
        lines.append(f"live: {s.images} frames run, {s.frames_dropped} dropped while the network was busy, "
                     f"{s.frames_preroll} frames before the networks were ready (let go); latency (arrival to "
                     "overlay) " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in s.latency.items()))
    if s.stream_end:
        lines.append(s.stream_end)
    return lines


def summary_text(s) -> str:
    """The printed summary of a :class:`frpose_cli.inference.predict.PredictSummary`."""
    m = s.merged
    if m is None and s.shard != "0/1":   # a shard whose results another process merges
        return (f"predict shard {s.shard}: {s.images} images, {s.persons} persons, {len(s.skipped)} skipped"
              + (f", {s.resumed} already done (--resume)" if s.resumed else "")
              + f" in {s.seconds:.1f} s ({s.images / s.seconds if s.seconds else 0:.2f} images/s); logged in "
              f"{s.out_dir / 'parts'}" + (f"; waiting for shard(s) {', '.join(s.waiting_for)}: the last to finish "
                                          f"merges, or run `frpose merge {s.out_dir}`" if s.waiting_for else ""))
    skipped, warnings, ignored = (s.skipped, s.warnings, s.ignored) if m is None else (m.skipped, m.warnings, m.ignored)
    per_image = s.seconds / s.images * 1000 if s.images else 0.0
    lines = [f"predict: {s.images} images, {s.persons} persons, {len(skipped)} skipped, "
             f"{len(warnings)} with warnings, {len(ignored)} ignored"
             + (f", {s.resumed} already done (--resume)" if s.resumed else "")
             + f" in {s.seconds:.1f} s ({per_image:.0f} ms/image, detector {s.detector}"
             + (f" in {s.detector_setup}" if s.detector_setup else "") + ")"]
    if s.images and sum(s.timings.values()) > 0:
        lines.append("time: " + ", ".join(f"{k} {v / s.images * 1000:.0f} ms" for k, v in s.timings.items())
                     + (f"; in {s.workers} workers meanwhile: " + ", ".join(
                         f"{k} {v / s.images * 1000:.0f} ms" for k, v in s.worker_seconds.items()) if s.workers else "")
                     + (f"; the detector beside the pose network (--overlap): {s.overlapped / s.images * 1000:.0f} ms "
                        "in a helper thread, detect above is the wait for it" if s.overlapped else ""))
    hint = detection_hint(s)
    if hint:
        lines.append(hint)
    lines += tracking_lines(s)
    if m is not None and len(m.shards) > 1:
        for st in m.shards:
            lines.append(f"shard {st.shard}: {st.images} images, {st.persons} persons in {st.seconds:.1f} s "
                         f"({st.rate:.2f} images/s)" + ("" if st.finished else ", not finished"))
        lines.append(f"run: {m.images} images, {m.persons} persons in {m.out_dir}")
    if m is not None and m.missing:
        lines.append(f"incomplete: shard(s) {', '.join(m.missing)} have not finished; merged what is there")
    listed = [f"{kind} {name}: {reason}" for kind, entries in (("skipped", skipped), ("warning", warnings),
                                                                ("ignored", ignored)) for name, reason in entries]
    lines += listed[:20]
    if len(listed) > 20:
        lines.append(f"... and {len(listed) - 20} more (every one is listed in {s.out_dir / 'images.json'})")
    dropped = dict(m.boxes_dropped) if m is not None else s.boxes_dropped
    if dropped:
        lines.append("boxes dropped: " + ", ".join(f"{n} {why}" for why, n in sorted(dropped.items())))
    if s.images_without_boxes:
        lines.append(f"{s.images_without_boxes} of {s.images} images matched no box of --boxes"
                     + (" (none matched: do its image_id / file_name values name these images?)"
                        if s.images_without_boxes == s.images else ""))
    if m is not None and (m.posetrack or m.posetrack_problem):
        lines.append(f"PoseTrack files: {len(m.posetrack)} in {s.out_dir / 'posetrack'}" if m.posetrack
                     else m.posetrack_problem)
    lines.append(f"results: {s.out_dir / 'predictions.json'}")
    return "\n".join(lines)
