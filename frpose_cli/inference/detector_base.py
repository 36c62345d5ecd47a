"""What every detector *network* shares (torchvision's Faster R-CNN and SSDlite, RTMDet): the set-up it
runs in, chosen alongside a first run and cached (:mod:`frpose_cli.inference.detector_setups`), the
trial that decides it, and the warm-up call.  A subclass builds ``self.model`` (float32, eval) and
says how one image is detected (``_detect``) and how a set-up of its model is built (``_build_setup``).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch

from frpose_cli import hardware
from frpose_cli.data.sources import SourceItem
from frpose_cli.errors import FrposeError
from frpose_cli.inference import detector_setups as ds
from frpose_cli.precision.cache import cache_file, cache_key, find_entry, read_cache, write_cache_entry


class NetworkDetector:
    overlap_safe = True   # may run in predict's detect-ahead thread (one call at a time, in order)
    setups = ds.SETUPS    # the set-ups this detector can be built in

    def _unavailable(self, setup: str, hw) -> str | None:
        """Why ``setup`` cannot run here (None: it can)."""
        if setup not in self.setups:
            return f"not a set-up of {self.arch} (choose {', '.join(self.setups)})"
        return ds.unavailable_reason(setup, self.device, hw)

    def _candidate(self, hw) -> str:
        """The one set-up a first run tries against float32."""
        return ds.candidate_for(self.device, hw)

    def _start(self, device, score_thr: float, weights_path: Path, setup: str | None, sizes, log) -> None:
        """The shared part of ``__init__``, once ``self.model`` and ``self.arch`` exist."""
        self.device = torch.device(device)
        self.model.eval().to(self.device)
        self.score_thr, self.weights_path = score_thr, Path(weights_path)
        self.dropped: Counter = Counter()
        self.log = log or (lambda line: None)
        self.choice, self.runner, self.trial_model = self._choose(setup, sizes)
        if self.choice.line:
            self.log(self.choice.line)

    def _build_setup(self, setup: str) -> torch.nn.Module:
        return ds.build_setup(self.model, setup)

    def _choose(self, setup, sizes):
        hw = hardware.detect(self.device)
        if setup is not None:
            reason = self._unavailable(setup, hw)
            if reason:
                raise FrposeError(f"detector set-up {setup}: {reason}")
            return ds.DetectorChoice(setup), (None if setup == "fp32" else self._build_setup(setup)), None
        key = cache_key(f"detector:{self.arch}:{ds.weights_digest(self.weights_path)}", sizes,
                        hw.signature(self.device), "torch")
        entry = find_entry(read_cache(cache_file()), key, key)
        if entry is not None and entry.get("kind") == "detector" and entry.get("setup") in self.setups \
                and self._unavailable(entry["setup"], hw) is None:
            line = f"detector set-up: {entry['setup']} (decided on {entry.get('when', 'an earlier run')}: {entry.get('line', '')})"
            runner = None if entry["setup"] == "fp32" else self._build_setup(entry["setup"])
            return ds.DetectorChoice(entry["setup"], line=line), runner, None
        candidate = self._candidate(hw)
        line = (f"detector set-up: fp32 while {candidate} is gated and timed against it on the first "
                f"{ds.TRIAL_IMAGES} images with a person (the run's boxes are float32's meanwhile)")
        return ds.DetectorChoice("fp32", candidate, key, line=line), None, self._build_setup(candidate)

    @property
    def setup(self) -> str:
        return self.choice.setup

    def _detect(self, model, item: SourceItem, count_dropped: bool = True) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, item: SourceItem) -> np.ndarray:
        if self.trial_model is None:   # runner None: the model as built (fp32)
            return self._detect(self.model if self.runner is None else self.runner, item)
        boxes, done = ds.run_trial(self.choice, lambda it: self._detect(self.model, it),
                                   lambda it: self._detect(self.trial_model, it, count_dropped=False), item,
                                   self.score_thr)
        if done:
            report = ds.decide(self.choice, self.score_thr)
            if self.choice.setup != "fp32":
                self.runner = self.trial_model
            self.trial_model = None
            if report.required:   # a trial that saw nobody decided nothing: the next run tries again
                write_cache_entry(cache_file(), self.choice.key, self.choice.to_entry(report))
            self.log(self.choice.line)
        return boxes

    def warm_up(self, height: int = 480, width: int = 640) -> None:
        """One call on a grey picture (nothing counted, no trial step): the first call builds kernels."""
        grey = SourceItem(-1, Path("warm-up"), "warm-up", image=np.full((height, width, 3), 114, np.uint8))
        for model in {id(m): m for m in (self.model, self.runner, self.trial_model) if m is not None}.values():
            self._detect(model, grey, count_dropped=False)
