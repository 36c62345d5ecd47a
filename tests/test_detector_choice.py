"""`--detector auto`: the stated rule (docs/detectors.md), with mocked timings, and its offline fall-backs."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from frpose_cli.inference import detector_choice
from frpose_cli.inference.detector_choice import default_detector
from frpose_cli.inference.detectors import WholeImageDetector, make_detector
from frpose_cli.weights import zoo


def entry(name, person_ap, cpu_ms, ap=None):
    return zoo.ZooEntry(name, "detector", f"https://example.invalid/{name}-0123abcd.pth", person_ap=person_ap,
                        cpu_ms=cpu_ms, ap=ap)


def cache_random_rtmdet(home, entry) -> None:
    """A random-weights file of ``entry``'s published RTMDet layout, in the weights cache under ``home``."""
    from frpose_cli.net.rtmdet import PUBLISHED, RTMDet, spec_for
    (home / "weights").mkdir(parents=True, exist_ok=True)
    torch.save({"meta": {}, "state_dict": RTMDet(spec_for(**PUBLISHED[entry.name])).state_dict()},
               home / "weights" / entry.file_name)


MOCK = (entry("big", 62.5, 400.0), entry("small", 40.3, 20.0), entry("tv", None, 50.0, ap=37.0),
        entry("huge", 70.0, 3000.0))


@pytest.mark.parametrize("pose_ms, expected", [(500.0, "big"), (399.0, "small"), (10.0, "small"), (5000.0, "huge")])
def test_cpu_rule_takes_the_most_accurate_within_the_pose_networks_time(pose_ms, expected):
    chosen, why = default_detector("cpu", MOCK, pose_ms)
    assert chosen.name == expected
    assert f"{chosen.person_ap:.1f}" in why and "\n" not in why
    if pose_ms == 10.0:   # none within: the fastest, said so
        assert "none is within" in why


def test_gpu_rule_takes_the_most_accurate_and_box_ap_alone_never_competes():
    assert default_detector("cuda", MOCK)[0].name == "huge"
    tv_only = (entry("tv", None, 1.0, ap=37.0),)
    with pytest.raises(ValueError, match="person AP"):
        default_detector("cpu", tv_only)
    with pytest.raises(ValueError, match="device_type"):
        default_detector("tpu", MOCK)


def test_the_zoo_figures_pick_the_documented_detectors():
    """docs/detectors.md names the choice the zoo's measured figures make: rtmdet-m on a CPU and a GPU."""
    from pathlib import Path
    text = (Path(__file__).parent.parent / "docs" / "detectors.md").read_text()
    cpu, gpu = default_detector("cpu")[0].name, default_detector("cuda")[0].name
    assert f"on a CPU: **{cpu}**" in text and f"on a GPU: **{gpu}**" in text
    # the rule's inputs are measured figures, each in one place
    timed = [e for e in zoo.DETECTORS if e.person_ap is not None]
    assert timed and all(e.cpu_ms for e in timed)


def test_offline_without_the_chosen_file_takes_a_cached_one_then_the_whole_image(tmp_path, monkeypatch):
    monkeypatch.setenv("FRPOSE_HOME", str(tmp_path / "home"))   # nothing cached, downloads off (conftest)
    chosen = default_detector("cpu")[0]
    notes = []
    assert isinstance(make_detector("auto", warn=notes.append, log=notes.append), WholeImageDetector)
    assert len(notes) == 1 and chosen.file_name in notes[0] and "whole image" in notes[0]

    # a cached nano stands in for an uncached m (a file of the nano's layout; random weights)
    nano = zoo.DETECTOR_RTMDET_NANO
    spare = nano if chosen.name != nano.name else zoo.DETECTOR_RTMDET_M
    cache_random_rtmdet(tmp_path / "home", spare)
    notes = []
    det = make_detector("auto", warn=notes.append, log=notes.append)
    assert det.name == spare.name
    assert any(f"detector {spare.name} (cached) instead of {chosen.name}" in n for n in notes), notes


def test_the_log_names_the_detector_and_why(tmp_path, monkeypatch):
    monkeypatch.setenv("FRPOSE_HOME", str(tmp_path / "home"))
    chosen = default_detector("cpu")[0]
    cache_random_rtmdet(tmp_path / "home", chosen)
    lines = []
    det = make_detector("auto", log=lines.append, warn=lines.append)
    assert det.name == chosen.name
    assert lines[0].startswith(f"detector: {chosen.name} (the highest published person AP")


def test_a_slower_machine_figure_moves_the_choice(monkeypatch):
    """Mocked timings: make rtmdet-m slower than the pose network and the CPU rule takes nano."""
    m = dataclasses.replace(zoo.DETECTOR_RTMDET_M, cpu_ms=detector_choice.POSE_CPU_MS * 2)
    nano = dataclasses.replace(zoo.DETECTOR_RTMDET_NANO, cpu_ms=detector_choice.POSE_CPU_MS / 10)
    monkeypatch.setattr(zoo, "DETECTORS", (zoo.DETECTOR, nano, m))
    assert default_detector("cpu")[0].name == "rtmdet-nano"
    assert default_detector("cuda")[0].name == "rtmdet-m"


def test_the_rules_figures_are_the_benchmark_runs():
    """POSE_CPU_MS and the zoo's cpu_ms come from one bench_predict run (docs/predict_benchmarks.json), whose own
    application of the rule agrees with what `auto` picks."""
    import json
    from pathlib import Path
    run = json.loads((Path(__file__).parent.parent / "docs" / "predict_benchmarks.json").read_text())
    assert detector_choice.POSE_CPU_MS == run["default_rule"]["pose_ms"]
    assert default_detector("cpu")[0].name == run["default_rule"]["detector"]
    assert all(r.get("default") for k, r in run["rows"].items() if k.startswith(run["default_rule"]["detector"] + " "))


def test_the_set_up_table_quotes_its_json():
    """docs/detectors.md's set-up figures are docs/detector_setups.json's (one measurement, shown once)."""
    import json
    import re
    from pathlib import Path
    docs = Path(__file__).parent.parent / "docs"
    measured = json.loads((docs / "detector_setups.json").read_text())["ms_per_image"]
    text = (docs / "detectors.md").read_text()
    for name, row in measured.items():
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| {name} |"))
        shown = [float(v) for v in re.findall(r"\|\s*\**([\d.]+)", line)]
        assert shown == [row[s] for s in ("fp32", "fused", "bf16", "onnxruntime", "openvino", "openvino_bf16")], name
