"""`frpose eval --analyze` end to end (tables, JSON, PNGs, --compare, --oracle) and test-dev files."""
import contextlib
import io
import json
import re
import shutil
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from frpose_cli.cards import load_card
from frpose_cli.weights.checkpoint import save_checkpoint
from helpers import run_cli
from test_analyze import as_result, injected, people
from test_eval_cli import assert_one_line_error

DATA = Path(__file__).parent / "data" / "coco"
ANN = DATA / "annotations" / "person_keypoints_val2017.json"
DET_JSON = DATA / "person_detection_results" / "COCO_val2017_detections_AP_H_56_person_subset.json"


def formatted(value, out: set) -> set:
    """Every way the tables print a number of the JSON figures."""
    if isinstance(value, dict):
        for v in value.values():
            formatted(v, out)
    elif isinstance(value, bool):
        pass
    elif isinstance(value, int):
        out.add(str(value))
    elif isinstance(value, float):
        out.update({f"{value:.1f}", f"{value:+.1f}"})
    return out


def table_values(stdout: str, start: str) -> list[str]:
    """The value cells (all but the row label) of the tables printed after ``start``."""
    cells = []
    for line in stdout[stdout.index(start):].splitlines():
        parts = [p for p in re.split(r"\s{2,}", line.strip()) if p]
        cells += [p for p in parts[1:] if re.fullmatch(r"[+-]?\d+(\.\d+)?", p)]
    return cells


def test_analyze_results_file_tables_json_and_pngs(tmp_path, capsys):
    res, expected, _, _ = injected()
    (tmp_path / "r.json").write_text(json.dumps(res))
    out_dir, metrics = tmp_path / "analysis", tmp_path / "m.json"
    code, stdout, err = run_cli(["eval", "--results", tmp_path / "r.json", "--ann", ANN, "--analyze",
                                 "--analysis-dir", out_dir, "--json", metrics], capsys)
    assert code == 0, err
    record = json.loads(metrics.read_text())
    analysis = record["analysis"]
    assert analysis == json.loads((out_dir / "analysis.json").read_text())
    assert analysis["table"]["keypoint_classes"]["inversion"]["count"] == expected["inversion"]
    # every figure printed in the analysis tables is a figure of the JSON file
    values = table_values(stdout, "AP after correcting")
    assert len(values) > 100
    known = formatted(analysis["table"], set())
    assert not [v for v in values if v not in known]
    assert f"{analysis['table']['ap']['original']['AP']:.1f}" in stdout
    for name in ("pr_curves.png", "keypoint_errors.png"):
        png = out_dir / name
        assert png.stat().st_size > 10_000
        img = cv2.imread(str(png))
        assert img is not None and img.std() > 10          # drawn, not a blank canvas
    # never overwrite another run's figures
    code, _, err = run_cli(["eval", "--results", tmp_path / "r.json", "--ann", ANN, "--analyze",
                            "--analysis-dir", out_dir], capsys)
    assert_one_line_error(code, err, "already holds")


def test_compare_side_by_side_with_results_file_or_earlier_json(tmp_path, capsys):
    res, _, _, _ = injected()
    (tmp_path / "a.json").write_text(json.dumps(res))
    perfect = [as_result(p, score=r["score"]) for r, p in zip(res, people())]
    (tmp_path / "b.json").write_text(json.dumps(perfect))
    code, stdout, err = run_cli(["eval", "--results", tmp_path / "a.json", "--ann", ANN, "--analyze", "--compare",
                                 tmp_path / "b.json", "--analysis-dir", tmp_path / "one", "--json",
                                 tmp_path / "m.json"], capsys)
    assert code == 0, err
    assert "AP A" in stdout and "AP B" in stdout and "A: a; B: b" in stdout
    cmp = json.loads((tmp_path / "m.json").read_text())["analysis"]["compare"]
    assert cmp["name"] == "b" and cmp["table"]["ap"]["original"]["AP"] == 100.0
    # the --json of the earlier run as the other side
    code, stdout2, err = run_cli(["eval", "--results", tmp_path / "b.json", "--ann", ANN, "--analyze", "--compare",
                                  tmp_path / "m.json", "--analysis-dir", tmp_path / "two"], capsys)
    assert code == 0, err
    assert "A: b; B: m" in stdout2
    assert cv2.imread(str(tmp_path / "two" / "pr_curves.png")).shape[0] > \
        cv2.imread(str(tmp_path / "one" / "pr_curves.png")).shape[0] * 0.9


@pytest.mark.parametrize("args,needle", [
    (["--compare", "X.json"], "add --analyze"),
    (["--analyze", "--compare", "MISSING.json"], "not found"),
    (["--analyze", "--compare", ANN], "neither a keypoint results file"),
])
def test_analyze_usage_errors(tmp_path, capsys, args, needle):
    res, _, _, _ = injected()
    (tmp_path / "r.json").write_text(json.dumps(res))
    args = [tmp_path / a if a == "MISSING.json" else a for a in args]
    code, _, err = run_cli(["eval", "--results", tmp_path / "r.json", "--ann", ANN, "--analysis-dir",
                            tmp_path / "d", *args], capsys)
    assert_one_line_error(code, err, needle)


def test_oracle_analysis_stride_4_loss_is_all_jitter_full_resolution_none(tmp_path, capsys):
    ap = {}
    for name in ("sbn-r18", "frpose-r18"):
        code, _, err = run_cli(["eval", name, "--oracle", "--data", DATA, "--input-size", "128x96", "--analyze",
                                "--analysis-dir", tmp_path / name, "--json", tmp_path / f"{name}.json",
                                "--out", tmp_path / f"{name}-res.json"], capsys)
        assert code == 0, err
        ap[name] = json.loads((tmp_path / f"{name}.json").read_text())["analysis"]["table"]["ap"]
    sbn, fr = ap["sbn-r18"], ap["frpose-r18"]
    assert sbn["original"]["AP"] < 95.0                                   # stride 4 loses AP here
    assert sbn["miss"]["dAP"] == sbn["swap"]["dAP"] == sbn["inversion"]["dAP"] == 0.0
    assert sbn["jitter"]["AP"] == 100.0                                   # ... and jitter is all of it
    assert all(row["AP"] == 100.0 for row in fr.values())                 # full resolution: nothing to fix


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    card = load_card("sbn-r18", (128, 96))
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "sbn-r18.pt", card.build_model(), card)


def make_test_dev_root(tmp_path):
    """A COCO root laid out as for test-dev: image-info file, test2017/, two detection files."""
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    info = {k: v for k, v in json.loads(ANN.read_text()).items() if k != "annotations"}
    info["categories"] = [{"id": 1, "name": "person", "supercategory": "person"}]   # as COCO's: no keypoints
    (root / "annotations" / "image_info_test-dev2017.json").write_text(json.dumps(info))
    shutil.copytree(DATA / "val2017", root / "test2017")
    (root / "person_detection_results").mkdir()
    shutil.copy(DET_JSON, root / "person_detection_results" / "COCO_test-dev2017_detections_subset.json")
    (root / "person_detection_results" / "COCO_val2017_detections.json").write_text("[]")
    return root


def test_test_dev_writes_server_files_that_load_against_the_annotations(tmp_path, capsys, ckpt):
    root = make_test_dev_root(tmp_path)
    out = tmp_path / "sub" / "person_keypoints_test-dev2017_mine_results.json"
    code, stdout, err = run_cli(["eval", "--weights", ckpt, "--data", root, "--split", "test-dev2017", "--alg",
                                 "mine", "--out", out, "--no-progress", "--workers", "0", "--backend", "torch",
                                 "--det-thr", "0.2", "--batch-size", "64"], capsys)
    assert code == 0, err
    assert "COCO_test-dev2017_detections_subset.json" in err           # the split's detection file
    assert "evaluation server" in stdout and str(out.with_suffix(".zip")) in stdout and "AP" not in err
    with zipfile.ZipFile(out.with_suffix(".zip")) as z:
        assert z.namelist() == ["person_keypoints_test-dev2017_mine_results.json"]
        results = json.loads(z.read(z.namelist()[0]))
    assert results == json.loads(out.read_text()) and len(results) > 10
    # what the server does with it: loadRes against the real annotations, then COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(ANN))
        dt = coco.loadRes(results)
        ev = COCOeval(coco, dt, "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert len(dt.anns) == len(results) and 0 <= ev.stats[0] <= 1
    assert {r["category_id"] for r in results} == {1} and all(len(r["keypoints"]) == 51 for r in results)
    # a second run must not overwrite the first one's files
    code, _, err = run_cli(["eval", "--weights", ckpt, "--data", root, "--split", "test-dev2017", "--alg", "mine",
                            "--out", out, "--no-progress", "--workers", "0"], capsys)
    assert_one_line_error(code, err, "exists")


@pytest.mark.parametrize("args,needle", [(["--analyze"], "no annotations"), (["--gt-boxes"], "no annotations"),
                                         (["--alg", "my_net"], "letters, digits")])
def test_test_dev_usage_errors(tmp_path, capsys, ckpt, args, needle):
    root = make_test_dev_root(tmp_path)
    code, _, err = run_cli(["eval", "--weights", ckpt, "--ann", root / "annotations" / "image_info_test-dev2017.json",
                            "--images", root / "test2017", *([] if "--gt-boxes" in args else ["--boxes", DET_JSON]),
                            "--out", tmp_path / "o.json", "--analysis-dir", tmp_path / "a", "--no-progress", *args],
                           capsys)
    assert_one_line_error(code, err, needle)
    assert not np.any([p.suffix == ".zip" for p in tmp_path.iterdir()])
