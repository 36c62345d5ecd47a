"""Own keypoint sets from train to overlay: subsets of the vendored data written by
scripts/make_keypoint_subset.py, trained tiny (64x32, 1 epoch, few persons), then eval, predict, export."""
import dataclasses
import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from frpose_cli.cards import load_card
from frpose_cli.weights.checkpoint import load_checkpoint
from frpose_cli.data.codecs import codec_for_card
from frpose_cli.data.dataset import CocoPoseDataset, keypoint_spec, load_coco
from frpose_cli.data.keypoints import COCO17_OKS_SIGMAS
from frpose_cli.data.oks_sigmas import FROM_COCO, FROM_DEFAULT, FROM_FLAG
from helpers import run_cli

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "make_keypoint_subset.py"
FIVE = ["nose", "left_shoulder", "right_shoulder", "left_hip", "right_hip"]
RENAMED = "head,s1,s2,h1,h2"
TINY = ["--input-size", "64x32", "--epochs", "1", "--batch-size", "3", "--workers", "0", "--pretrained", "none",
        "--device", "cpu", "--no-progress"]


def subset_script():
    spec = importlib.util.spec_from_file_location("make_keypoint_subset", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_subset(root: Path, *args, train_persons=6, val_persons=4) -> Path:
    """The script's dataset in ``root``, then cut to a few persons so training stays fast."""
    subset_script().main([str(root), *args])
    for split, keep in (("train2017", train_persons), ("val2017", val_persons)):
        path = root / "annotations" / f"person_keypoints_{split}.json"
        data = json.loads(path.read_text())
        data["annotations"] = [a for a in data["annotations"] if a["num_keypoints"] > 0 and not a["iscrowd"]][:keep]
        path.write_text(json.dumps(data))
    return root


def lines_with(text: str, needle: str) -> list[str]:
    return [ln for ln in text.splitlines() if needle in ln]


def overlay_marks_keypoints(run: Path, records) -> float:
    """Share of predicted keypoints whose overlay pixel differs clearly from the input image."""
    hits = total = 0
    for r in records:
        src = cv2.imread(str(run.parent / "data" / "val2017" / r["file_name"]))
        vis = cv2.imread(str(run / "vis" / r["file_name"]))
        assert vis is not None and vis.shape == src.shape
        for x, y, _ in np.asarray(r["keypoints"]).reshape(-1, 3):
            xi, yi = int(round(x)), int(round(y))
            if 0 <= yi < src.shape[0] and 0 <= xi < src.shape[1]:
                total += 1
                hits += int(np.abs(vis[yi, xi].astype(int) - src[yi, xi].astype(int)).max() > 40)
    return hits / max(total, 1)


def test_the_script_writes_a_coco_root_and_refuses_to_overwrite(tmp_path):
    root = make_subset(tmp_path / "data", "--names", RENAMED, "--category-sigmas", "--category-flip-pairs")
    assert sorted(p.name for p in root.iterdir()) == ["annotations", "person_detection_results", "train2017", "val2017"]
    assert len(list((root / "val2017").glob("*.jpg"))) == 4
    spec = keypoint_spec(load_coco(root / "annotations" / "person_keypoints_train2017.json"))
    # Names frpose cannot read, but the category says pairs and σ (mmpose's metadata fields).
    assert spec.names == tuple(RENAMED.split(",")) and spec.flip_pairs == ((1, 2), (3, 4))
    assert spec.sigmas == pytest.approx([COCO17_OKS_SIGMAS[i] for i in (0, 5, 6, 11, 12)])
    assert set(spec.skeleton) == {(3, 4), (1, 3), (2, 4), (1, 2)}
    with pytest.raises(SystemExit, match="not an empty folder"):
        subset_script().main([str(root)])


def test_coco_named_subset_trains_evaluates_predicts_and_exports_with_no_extra_flag(tmp_path, capsys):
    data = make_subset(tmp_path / "data")
    run = tmp_path / "run"
    code, out, err = run_cli(["train", "frpose-r18", "--data", data, "--out", run, *TINY], capsys)
    assert code == 0, err
    assert not lines_with(err, "warning") and not lines_with(err, "flip augmentation off"), err
    ckpt = load_checkpoint(run / "last.pt")
    kp = ckpt["card"]["keypoints"]
    assert kp["names"] == FIVE and kp["flip_pairs"] == [[1, 2], [3, 4]] and kp["sigmas_from"] == FROM_COCO
    assert kp["sigmas"] == pytest.approx([COCO17_OKS_SIGMAS[i] for i in (0, 5, 6, 11, 12)])
    assert sorted(map(tuple, kp["skeleton"])) == [(1, 2), (1, 3), (2, 4), (3, 4)]
    epoch = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()][-1]
    assert 0 <= epoch["val_AP"] <= 1 and 0 <= epoch["val_PCK"] <= 1

    metrics = tmp_path / "m.json"
    code, out, err = run_cli(["eval", "--weights", run / "last.pt", "--data", data, "--gt-boxes", "--backend",
                              "torch", "--workers", "0", "--no-progress", "--json", metrics,
                              "--out", tmp_path / "res.json"], capsys)
    assert code == 0, err
    assert "flip test on" in err and "OKS σ 0.026 … 0.107 from COCO's table" in err and not lines_with(err, "warning")
    m = json.loads(metrics.read_text())
    assert 0 <= m["AP"] <= 1 and 0 <= m["PCK"] <= 1 and m["PCK_persons"] == 4
    assert set(m["PCK_per_keypoint"]) == set(FIVE)
    assert f"PCK@0.2 of the box: {100 * m['PCK']:.1f}" in out and "AP50" in out
    results = json.loads((tmp_path / "res.json").read_text())
    assert results and all(len(r["keypoints"]) == 15 for r in results)
    assert epoch["val_AP"] == pytest.approx(m["AP"], abs=1e-6)   # validation = eval of the saved weights

    onnx_file = tmp_path / "five.onnx"
    code, out, err = run_cli(["export", "--weights", run / "last.pt", "--out", onnx_file], capsys)
    assert code == 0 and "PASS" in out, err
    import onnx
    meta = json.loads({p.key: p.value for p in onnx.load(str(onnx_file)).metadata_props}["frpose"])
    assert meta["keypoint_names"] == FIVE and meta["oks_sigmas"] == pytest.approx(kp["sigmas"])
    assert meta["flip_pairs"] == [[1, 2], [3, 4]] and len(meta["skeleton"]) == 4

    # The exported file alone predicts (the checkpoint itself predicts in the renamed-set test).
    code, out, err = run_cli(["predict", data / "val2017", "--weights", onnx_file, "--boxes",
                              next((data / "person_detection_results").glob("*.json")), "--det-thr", "0.9",
                              "--kpt-thr", "0", "--out", tmp_path / "pred", "--no-progress"], capsys)
    assert code == 0, out + err
    records = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert records and all(len(r["keypoints"]) == 15 for r in records)
    assert overlay_marks_keypoints(tmp_path / "pred", records) > 0.6


def test_renamed_set_with_sigmas_trains_without_flip_and_evaluates(tmp_path, capsys):
    data = make_subset(tmp_path / "data", "--names", RENAMED)
    run = tmp_path / "run"
    sigmas = [0.03, 0.07, 0.07, 0.1, 0.1]
    code, out, err = run_cli(["train", "sbn-r18", "--data", data, "--out", run, "--sigmas",
                              ",".join(map(str, sigmas)), "--val-every", "0", *TINY], capsys)
    assert code == 0, err
    assert not lines_with(err, "warning"), err
    flip_lines = lines_with(err, "flip augmentation off")
    assert len(flip_lines) == 1 and "no keypoint name says left or right" in flip_lines[0]   # said once
    kp = load_checkpoint(run / "last.pt")["card"]["keypoints"]
    assert kp["sigmas"] == pytest.approx(sigmas) and kp["sigmas_from"] == FROM_FLAG and kp["flip_pairs"] is None

    metrics = tmp_path / "m.json"
    code, out, err = run_cli(["eval", "--weights", run / "last.pt", "--data", data, "--gt-boxes", "--backend",
                              "torch", "--workers", "0", "--no-progress", "--json", metrics, "--pck-ref", "s1,h2",
                              "--out", tmp_path / "res.json"], capsys)
    assert code == 0, err
    assert "flip test off (no keypoint name says left or right)" in err and "from --sigmas" in err
    m = json.loads(metrics.read_text())
    assert 0 <= m["AP"] <= 1 and m["PCK"] is not None and m["PCK_reference"] == "s1,h2"

    code, out, err = run_cli(["predict", data / "val2017", "--weights", run / "last.pt", "--backend", "torch",
                              "--detector",
                              "whole-image", "--out", tmp_path / "pred", "--no-progress"], capsys)
    assert code == 0, out + err
    assert len(lines_with(err, "flip test off")) == 1
    records = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert len(records) == 4 and all(len(r["keypoints"]) == 15 for r in records)
    assert len(list((tmp_path / "pred" / "vis").glob("*.jpg"))) == 4


def test_unknown_names_without_sigmas_train_with_one_warning(tmp_path, capsys):
    data = make_subset(tmp_path / "data", "--names", RENAMED, train_persons=3)
    code, out, err = run_cli(["train", "sbn-r18", "--data", data, "--out", tmp_path / "run", "--val-every", "0",
                              *TINY], capsys)
    assert code == 0, err
    warning = lines_with(err, "warning: OKS σ 0.07 for all 5 keypoints")
    assert len(warning) == 1 and "head, s1, s2" in warning[0]
    kp = load_checkpoint(tmp_path / "run" / "last.pt")["card"]["keypoints"]
    assert kp["sigmas"] == [0.07] * 5 and kp["sigmas_from"] == FROM_DEFAULT


def test_a_set_without_left_right_is_never_flipped_and_a_paired_one_is(tmp_path):
    renamed = make_subset(tmp_path / "renamed", "--names", RENAMED)
    five = make_subset(tmp_path / "five")
    card = load_card("sbn-r18", "64x32")
    flips = {}
    for name, root in (("renamed", renamed), ("five", five)):
        spec = keypoint_spec(load_coco(root / "annotations" / "person_keypoints_train2017.json"))
        c = dataclasses.replace(card, keypoints=spec, arch=dataclasses.replace(card.arch, num_keypoints=5))
        ds = CocoPoseDataset(root / "annotations" / "person_keypoints_train2017.json", root / "train2017", c,
                             codec_for_card(c), train=True, build_targets=False)
        seen = []
        for epoch in range(6):
            ds.set_epoch(epoch)
            seen += [ds[i]["flipped"] for i in range(len(ds))]
        flips[name] = sum(seen)
    assert flips["renamed"] == 0 and flips["five"] > 0
