"""What `frpose predict` prints at the end: the run's summary, with where its time went.

When detection takes most of the time (:data:`DETECTION_DOMINATES` of the stages measured) and a
faster zoo detector exists, the summary names it with both box APs, so the trade-off is the
user's to make (the default stays the paper's Faster R-CNN R50-FPN).
"""
from __future__ import annotations

from frpose_cli.weights import zoo

DETECTION_DOMINATES = 0.5


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
        options = " or ".join(f"`--detector {e.name}` (box AP {e.ap:.1f}, {current.cpu_ms / e.cpu_ms:.1f}x faster)"
                              for e in sorted(faster, key=lambda e: -e.cpu_ms))
        line += (f"; {options} against {current.name}'s box AP {current.ap:.1f} (float32 CPU times of "
                 "docs/benchmarks.md)")
    return line


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
    lines.append(f"results: {s.out_dir / 'predictions.json'}")
    return "\n".join(lines)
