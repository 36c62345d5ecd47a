"""Which person detector ``--detector auto`` runs, by one stated rule (docs/detectors.md):

- **on a CPU**: the highest published person AP among the zoo detectors whose measured CPU time per
  image (``cpu_ms``, float32, ``scripts/bench_predict.py``) is within the pose network's own time for a
  typical image (:data:`POSE_CPU_MS`: sbn-r50 256x192 with flip on the persons of coco-mini's val images,
  the same bench run); when none is, the fastest of them;
- **on a GPU**: the highest published person AP.

Only detectors with a *published person AP* compete: torchvision's Faster R-CNNs and SSDlite publish
box AP over 80 classes, which is not comparable, so they are chosen by name only.  The figures are the
zoo's (one machine, :data:`frpose_cli.weights.zoo.DETECTOR_CPU_MACHINE`), not this run's, so the choice
does not change from one run to the next.
"""
from __future__ import annotations

from frpose_cli.weights import zoo

# The pose network's float32 time for a typical image on DETECTOR_CPU_MACHINE, from the run that measured the
# detectors' cpu_ms (docs/predict_benchmarks.json "default_rule": frpose-r34 256x192 with flip, the pose stage's mean
# over the detector rows, 1.5 annotated persons an image).
POSE_CPU_MS = 533.3


def default_detector(device_type: str = "cpu", entries=None, pose_ms: float | None = None):
    """The zoo entry ``--detector auto`` runs on ``device_type`` ("cpu" or "cuda") and the reason, in words."""
    if device_type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device_type must be 'cpu', 'cuda' or 'mps' (got {device_type!r})")
    entries = zoo.DETECTORS if entries is None else tuple(entries)
    pose_ms = POSE_CPU_MS if pose_ms is None else float(pose_ms)
    ranked = [e for e in entries if e.person_ap is not None]
    if not ranked:
        raise ValueError("entries: no detector with a published person AP")
    if device_type != "cpu":
        best = max(ranked, key=lambda e: (e.person_ap, -(e.cpu_ms or 0)))
        return best, f"the highest published person AP ({best.person_ap:.1f}) on a GPU"
    timed = [e for e in ranked if e.cpu_ms is not None]
    within = [e for e in timed if e.cpu_ms <= pose_ms]
    if within:
        best = max(within, key=lambda e: (e.person_ap, -e.cpu_ms))
        return best, (f"the highest published person AP ({best.person_ap:.1f}) among detectors whose CPU time "
                      f"({best.cpu_ms:.0f} ms an image) is within the pose network's ({pose_ms:.0f} ms)")
    best = min(timed or ranked, key=lambda e: e.cpu_ms or 0)
    return best, (f"the fastest detector with a published person AP ({best.person_ap:.1f}): none is within the pose "
                  f"network's {pose_ms:.0f} ms")


def fallbacks(chosen) -> list:
    """Where ``auto`` turns when ``chosen``'s file cannot be had (offline): the other zoo detectors already in
    the cache, most accurate first (person AP, then box AP)."""
    others = [e for e in zoo.DETECTORS if e.name != chosen.name and e.cached()]
    return sorted(others, key=lambda e: (e.person_ap is not None, e.person_ap or e.ap or 0), reverse=True)
