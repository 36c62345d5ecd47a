"""COCO keypoint evaluation: ground-truth loading, results-file validation, COCOeval.

The figures come from pycocotools' ``COCOeval(iouType="keypoints")`` exactly as one would
run it by hand (all ground-truth images, COCO's OKS sigmas for COCO's keypoints), so ``frpose
eval`` reports the number a paper reports; other keypoint sets get theirs from
:mod:`frpose_cli.data.oks_sigmas`.  ``faster-coco-eval`` can be used instead (``cocoeval="faster"``, ``frpose eval --cocoeval faster``):
its C++ matcher is much quicker on val2017-sized files, and ``scripts/bench_cocoeval.py``
checks it agrees with pycocotools to 4 decimals.

Bad input never reaches pycocotools (whose failures are bare ``assert``s): unreadable files
and files with nothing usable raise :class:`FrposeError`; single bad entries (unknown image
id, wrong keypoint count, non-numeric values, other category) are skipped and counted.
"""
from __future__ import annotations

import contextlib
import copy
import io
import numbers
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from frpose_cli.errors import FrposeError, note
from frpose_cli.jobs.progress import heartbeat
from frpose_cli.data.annotations import finite_number, read_json, read_keypoint_annotations
from frpose_cli.data.keypoints import COCO17_OKS_SIGMAS, KeypointSpec, spec_from_category

# The ten figures of COCOeval's keypoint summary, in its order (stats[0..9]).
METRIC_NAMES = ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL")
COCOEVALS = ("pycocotools", "faster")   # the implementations --cocoeval chooses between


@contextlib.contextmanager
def _quiet():
    """pycocotools prints progress on stdout; keep the CLI's output ours."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _cocoeval_module(cocoeval: str):
    if cocoeval == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
        return COCO, COCOeval
    if cocoeval == "faster":
        try:
            from faster_coco_eval import COCO, COCOeval_faster
        except ImportError:
            raise FrposeError("--cocoeval faster needs the faster-coco-eval package "
                              "(pip install faster-coco-eval); or use --cocoeval pycocotools") from None
        return COCO, COCOeval_faster
    raise FrposeError(f"unknown --cocoeval {cocoeval!r}; choose one of {', '.join(COCOEVALS)}")


@dataclass
class GroundTruth:
    """A COCO keypoint annotation file, loaded once and checked."""
    path: str
    dataset: dict
    person_category: int
    num_keypoints: int
    image_ids: frozenset
    keypoints: KeypointSpec | None = None   # names, flip pairs, skeleton and the OKS σ used
    _apis: dict = field(default_factory=dict, repr=False)

    def coco(self, cocoeval: str = "pycocotools"):
        """That implementation's ``COCO`` object for this file (built lazily, cached)."""
        if cocoeval not in self._apis:
            COCO, _ = _cocoeval_module(cocoeval)
            with _quiet():
                api = COCO()
                api.dataset = copy.deepcopy(self.dataset)
                api.createIndex()
            self._apis[cocoeval] = api
        return self._apis[cocoeval]


def load_ground_truth(ann_file, sigmas=None, recorded: KeypointSpec | None = None, warn=None,
                      data=None) -> GroundTruth:
    """Load and check a keypoint annotation file; its OKS σ are resolved by
    :func:`frpose_cli.data.oks_sigmas.resolve_sigmas` (``sigmas``: ``--sigmas``; ``recorded``: a
    checkpoint's keypoint set; ``warn``: receives one-line warnings; ``data``: the file's JSON, read
    already by the caller)."""
    data, cat, image_ids = read_keypoint_annotations(ann_file, data)
    from frpose_cli.data.oks_sigmas import resolve_sigmas
    spec = resolve_sigmas(spec_from_category(cat, f"annotation file {ann_file}"), sigmas, recorded, warn)
    return GroundTruth(str(ann_file), data, int(cat["id"]), len(cat["keypoints"]), image_ids, spec)


def oks_sigmas_for(gt) -> np.ndarray:
    """OKS falloff σ per keypoint as COCOeval uses them: the ground truth's resolved ones
    (a bare keypoint count is accepted for COCO's 17)."""
    if isinstance(gt, GroundTruth) and gt.keypoints is not None:
        return np.asarray(gt.keypoints.sigmas, dtype=np.float64)
    if gt == len(COCO17_OKS_SIGMAS):
        return np.asarray(COCO17_OKS_SIGMAS, dtype=np.float64)
    raise FrposeError(f"OKS σ for {gt} keypoints: pass the GroundTruth, which resolves them")


@dataclass
class Results:
    """Validated keypoint results plus the count of entries skipped, by reason."""
    results: list
    skipped: Counter = field(default_factory=Counter)

    def skipped_summary(self) -> str:
        return "; ".join(f"{n} {reason}" for reason, n in self.skipped.most_common())


def validate_results(entries, gt: GroundTruth, source: str = "results") -> Results:
    """Keep the entries COCOeval can use; count the others by reason.

    Raises if ``entries`` is not a list or if nothing usable is left.
    """
    if isinstance(entries, dict) and isinstance(entries.get("annotations"), list):
        raise FrposeError(f"{source} looks like an annotation file; a results file is a JSON list of "
                          "{image_id, category_id, keypoints, score}")
    if not isinstance(entries, list):
        raise FrposeError(f"{source} must be a JSON list of {{image_id, category_id, keypoints, score}} "
                          f"(got a {type(entries).__name__})")
    if not entries:
        raise FrposeError(f"{source} holds no results (an empty list); nothing to evaluate")
    n_values = 3 * gt.num_keypoints
    kept, skipped = [], Counter()
    for e in entries:
        if not isinstance(e, dict):
            skipped["entries that are not objects"] += 1
            continue
        image_id, kpts, score = e.get("image_id"), e.get("keypoints"), e.get("score")
        cat = e.get("category_id", gt.person_category)
        if isinstance(image_id, numbers.Real) and not isinstance(image_id, (bool, np.bool_)) \
                and float(image_id).is_integer():
            image_id = int(image_id)
        if not isinstance(image_id, int) or isinstance(image_id, bool):
            skipped["without an integer image_id"] += 1
        elif image_id not in gt.image_ids:
            skipped["with image ids not in the annotation file"] += 1
        elif cat != gt.person_category:
            skipped[f"with a category_id other than {gt.person_category}"] += 1
        elif not isinstance(kpts, list) or len(kpts) != n_values:
            got = len(kpts) if isinstance(kpts, list) else type(kpts).__name__
            skipped[f"with {got} keypoint values instead of {n_values} ({gt.num_keypoints} keypoints × x,y,score)"] += 1
        elif not all(finite_number(v) for v in kpts):
            skipped["with non-numeric or non-finite keypoint values"] += 1
        elif not finite_number(score):
            skipped["without a finite numeric score"] += 1
        else:
            kept.append({"image_id": image_id, "category_id": gt.person_category,
                         "keypoints": [float(v) for v in kpts], "score": float(score)})
    if not kept:
        reason = skipped.most_common(1)[0][0]
        raise FrposeError(f"{source}: none of its {len(entries)} results is usable "
                          f"({skipped[reason]} {reason})")
    return Results(kept, skipped)


def load_results(path, gt: GroundTruth) -> Results:
    return validate_results(read_json(path, "results file"), gt, source=f"results file {path}")


def coco_keypoint_eval(gt: GroundTruth, results: list, cocoeval: str = "pycocotools",
                       image_ids=None, say=note) -> dict:
    """Run COCOeval(keypoints) on validated results; returns the ten figures by name.  Scoring all of
    COCO val takes tens of seconds: ``say`` hears that it is still working every 5 s (None: silence).

    ``image_ids`` defaults to every image of the annotation file, as pycocotools does, so
    images where the detector found nobody count as misses (the official protocol).
    """
    if not results:
        raise FrposeError("no results to evaluate")
    _, COCOeval = _cocoeval_module(cocoeval)
    coco_gt = gt.coco(cocoeval)
    sigmas = oks_sigmas_for(gt)
    with _quiet():
        # loadRes adds bbox/area/id to the dicts it gets: hand it copies.
        coco_dt = coco_gt.loadRes([dict(r) for r in results])
        if cocoeval == "faster":
            ev = COCOeval(coco_gt, coco_dt, iouType="keypoints", print_function=lambda *a, **k: None)
        else:
            ev = COCOeval(coco_gt, coco_dt, iouType="keypoints")
        ev.params.kpt_oks_sigmas = sigmas  # COCO's for COCO names; the data's own otherwise
        if image_ids is not None:
            ev.params.imgIds = sorted(int(i) for i in image_ids)
        with heartbeat(say, f"scoring {len(results)} poses with COCOeval ({cocoeval})"):
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
    return {name: float(v) for name, v in zip(METRIC_NAMES, ev.stats)}


def metrics_table(metrics: dict, title: str = "COCO keypoints"):
    """A rich table of the ten figures (percent, as papers print them)."""
    from rich import box
    from rich.table import Table

    table = Table(*METRIC_NAMES, title=title, box=box.SIMPLE_HEAVY)  # no inner borders: fits 80 columns
    table.add_row(*("n/a" if metrics[n] < 0 else f"{100 * metrics[n]:.1f}" for n in METRIC_NAMES))
    return table
