"""Faults a new user meets (issue 23): links in scanned folders, a folder in a list file, an image
whose header lies about its size, annotation files merged without renumbering."""
import copy
import json
import os
import shutil
import struct

import cv2
import numpy as np
import pytest

from frpose_cli.cards import load_card
from frpose_cli.data.images import ImageReadError, decode_image_bytes, set_max_pixels
from frpose_cli.data.sources import Source
from frpose_cli.weights.checkpoint import save_checkpoint
from helpers import run_cli

VAL = ["000000000785.jpg", "000000040083.jpg", "000000196141.jpg"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    card = load_card("sbn-r18", (64, 48))
    return save_checkpoint(tmp_path_factory.mktemp("faults") / "m.pt", card.build_model(), card)


def linked_folder(tmp_path, coco_root):
    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(coco_root / "val2017" / VAL[0], src / "b.jpg")
    shutil.copy(coco_root / "val2017" / VAL[1], src / "sub" / "c.jpg")
    shutil.copy(coco_root / "val2017" / VAL[2], outside / "far.jpg")
    os.symlink("b.jpg", src / "a_link_to_b.jpg")              # comes first: named as itself, a duplicate of b
    os.symlink("missing.jpg", src / "dangling.jpg")
    os.symlink("..", src / "sub" / "up")                       # a loop
    os.symlink(outside / "far.jpg", src / "far1.jpg")          # outside the source: processed once
    os.symlink(outside / "far.jpg", src / "far2.jpg")
    os.symlink(outside, src / "linked_dir")                    # its file is far.jpg again
    return src


def test_links_are_named_by_their_own_path_and_each_file_runs_once(tmp_path, coco_root):
    files = {f.name: f.ignored for f in Source(str(linked_folder(tmp_path, coco_root))).files()}
    assert files["b.jpg"] is None and files["sub/c.jpg"] is None and files["far1.jpg"] is None
    assert files["a_link_to_b.jpg"].startswith("duplicate: a link to b.jpg")
    assert files["far2.jpg"] == "duplicate: the same file as far1.jpg (processed once)"
    assert files["linked_dir/far.jpg"] == "duplicate: the same file as far1.jpg (processed once)"
    assert "loop" in files["sub/up"] and files["dangling.jpg"] is None   # reported when read
    assert len(files) == 8


def test_predict_on_a_folder_with_links(tmp_path, coco_root, checkpoint, capsys):
    src = linked_folder(tmp_path, coco_root)
    code, _, err = run_cli(["predict", src, "-w", checkpoint, "--detector", "whole-image", "--precision", "fp32",
                            "--out", tmp_path / "out", "--no-vis", "--no-progress", "--workers", "0"], capsys)
    assert code == 1, err   # the dangling link was skipped
    report = json.loads((tmp_path / "out" / "images.json").read_text())
    done = [im["file_name"] for im in report["images"]]
    assert sorted(done) == ["b.jpg", "far1.jpg", "sub/c.jpg"]
    assert [s["file_name"] for s in report["skipped"]] == ["dangling.jpg"]
    assert "broken symbolic link" in report["skipped"][0]["reason"]
    assert {i["file_name"] for i in report["ignored"]} == {"a_link_to_b.jpg", "far2.jpg", "linked_dir/far.jpg", "sub/up"}
    names = [p["file_name"] for p in json.loads((tmp_path / "out" / "predictions.json").read_text())]
    assert sorted(set(names)) == sorted(done)


def test_a_folder_line_in_a_list_file_says_so(tmp_path, coco_root):
    (tmp_path / "list.txt").write_text(f"{coco_root / 'val2017'}\n{coco_root / 'val2017' / VAL[0]}\n")
    items = list(Source(str(tmp_path / "list.txt")))
    assert items[0].error.startswith("a folder, not an image") and items[1].image is not None


def _lying_jpeg(width, height) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))
    data = bytearray(buf.tobytes())
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def test_an_image_declaring_too_many_pixels_is_refused_before_decoding(tmp_path, monkeypatch):
    with pytest.raises(ImageReadError, match="declares 20000×20000 pixels, over the budget of 150 megapixels"):
        decode_image_bytes(_lying_jpeg(20000, 20000))
    monkeypatch.setenv("FRPOSE_MAX_PIXELS", "100")
    with pytest.raises(ImageReadError, match="declares 16×16"):
        decode_image_bytes(_lying_jpeg(16, 16))
    set_max_pixels(1000)
    try:
        assert decode_image_bytes(_lying_jpeg(16, 16))[0].shape == (16, 16, 3)   # the option beats the variable
    finally:
        set_max_pixels(None)


@pytest.mark.parametrize("what", ["image", "annotation"])
def test_duplicate_ids_in_an_annotation_file_are_one_line(tmp_path, coco_root, checkpoint, capsys, what):
    data = json.loads((coco_root / "annotations" / "person_keypoints_val2017.json").read_text())
    bad = copy.deepcopy(data)
    records = bad["images"] if what == "image" else bad["annotations"]
    records[1]["id"] = records[0]["id"]
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "person_keypoints_val2017.json").write_text(json.dumps(bad))
    (root / "val2017").symlink_to(coco_root / "val2017")
    code, _, err = run_cli(["eval", "-w", checkpoint, "--data", root, "--gt-boxes", "--workers", "0",
                            "--precision", "fp32", "--out", tmp_path / "e.json", "--no-progress"], capsys)
    assert code == 2 and f"1 {what} id used more than once: {records[0]['id']}" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "e.json").exists()


def test_a_float16_input_onnx_file_is_fed_float16(tmp_path):
    """tests/data/onnx-fp16: made by onnxconverter-common 1.16.0's convert_float_to_float16 (PROVENANCE.md)."""
    import torch
    from frpose_cli.load import load_pose_model
    data = __import__("pathlib").Path(__file__).parent / "data" / "onnx-fp16"
    half = load_pose_model(data / "tiny_fp16_io.onnx")
    full = load_pose_model(data / "tiny_fp32.onnx")
    assert half.card.name == full.card.name == "sbn-r18" and half.net.input_dtype == np.float16
    x = torch.randn(3, 3, 64, 48)
    out = half(x)
    assert out.dtype == torch.float32 and out.shape == (3, 17, 64, 48)
    torch.testing.assert_close(out, full(x), atol=2e-2, rtol=1e-2)


def test_two_processes_writing_the_precision_cache_keep_every_entry(tmp_path):
    import subprocess
    import sys
    from frpose_cli.precision.cache import read_cache
    path = tmp_path / "precision.json"
    go = tmp_path / "go"
    code = ("import sys, time; from frpose_cli.precision.cache import write_cache_entry; from pathlib import Path\n"
            "while not Path(sys.argv[3]).exists(): time.sleep(0.01)\n"   # both start writing together
            "for i in range(150): write_cache_entry(Path(sys.argv[1]), f'{sys.argv[2]}-{i}', {'precision': 'fp32'})")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), name, str(go)]) for name in ("a", "b")]
    import time
    time.sleep(4)   # both imported and waiting
    go.write_text("")
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert set(read_cache(path)) == {f"{n}-{i}" for n in "ab" for i in range(150)}


def test_a_second_predict_into_a_folder_in_use_is_refused_at_the_start(tmp_path, coco_root, checkpoint, capsys):
    import fcntl
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".frpose-lock-all", "a") as held:   # what a live run into --out holds
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        code, _, err = run_cli(["predict", coco_root / "val2017" / VAL[0], "-w", checkpoint, "--detector",
                                "whole-image", "--precision", "fp32", "--out", out, "--no-progress"], capsys)
        assert code == 2 and "is in use by another frpose run right now" in err
        assert sorted(p.name for p in out.iterdir()) == [".frpose-lock-all"]   # no work was done
    # the holder died (its lock is gone with it): the folder is free again
    code, _, err = run_cli(["predict", coco_root / "val2017" / VAL[0], "-w", checkpoint, "--detector",
                            "whole-image", "--precision", "fp32", "--out", out, "--no-progress", "--no-vis"], capsys)
    assert code == 0, err
    assert (out / "predictions.json").is_file()


def test_train_out_holding_another_runs_best_pt_is_refused(tmp_path):
    from frpose_cli.errors import FrposeError
    from frpose_cli.training.train_setup import TrainConfig, new_run_dir
    (tmp_path / "best.pt").write_bytes(b"someone's weights")
    with pytest.raises(FrposeError, match="holds best.pt of another run"):
        new_run_dir(TrainConfig(model="sbn-r18", out=str(tmp_path)))
    assert (tmp_path / "best.pt").read_bytes() == b"someone's weights"


def test_reports_with_numpy_figures_are_written(tmp_path):
    from frpose_cli.fileio import atomic_write_json
    atomic_write_json(tmp_path / "a.json", {"n": np.int64(3), "x": np.float32(0.5), "v": np.arange(2)})
    assert json.loads((tmp_path / "a.json").read_text()) == {"n": 3, "x": 0.5, "v": [0, 1]}


def test_bench_json_never_overwrites(tmp_path, capsys):
    existing = tmp_path / "figures.json"
    existing.write_text("[]")
    code, _, err = run_cli(["bench", "sbn-r18", "--input-size", "64x32", "--setup", "eager", "--iters", "1",
                            "--warmup", "0", "--batch", "1", "--json", existing], capsys)
    assert code == 2 and "already exists" in err and existing.read_text() == "[]"


def _video_with_rate(path, rate: int):
    """A 3-frame MJPG AVI whose stream header announces ``rate`` frames per second."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for i in range(3):
        writer.write(np.full((48, 64, 3), 60 * i, np.uint8))
    writer.release()
    data = bytearray(path.read_bytes())
    strh = data.find(b"strh") + 8
    struct.pack_into("<II", data, strh + 20, 1, rate)   # dwScale, dwRate
    path.write_bytes(bytes(data))
    return path


def test_a_video_with_an_absurd_frame_rate_and_a_failing_overlay_writer_keep_the_poses(
        tmp_path, checkpoint, capsys, monkeypatch):
    video = _video_with_rate(tmp_path / "clip.avi", 10 ** 9)
    assert cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FPS) == 1e9
    args = ["predict", video, "-w", checkpoint, "--detector", "whole-image", "--precision", "fp32",
            "--no-progress", "--workers", "0"]
    code, _, err = run_cli([*args, "--out", tmp_path / "a"], capsys)
    assert code == 0, err
    assert len(json.loads((tmp_path / "a" / "predictions.json").read_text())) == 3
    assert cv2.VideoCapture(str(next((tmp_path / "a" / "vis").glob("*.mp4")))).read()[0]

    def broken(*args, **kwargs):   # a writer OpenCV cannot open (codec missing, disk quirk, ...)
        raise cv2.error("VideoWriter: cannot open")
    monkeypatch.setattr(cv2, "VideoWriter", broken)
    code, out, err = run_cli([*args, "--out", tmp_path / "b"], capsys)
    assert code == 1 and "overlay not written" in out + err and "Traceback" not in out + err
    assert len(json.loads((tmp_path / "b" / "predictions.json").read_text())) == 3
    report = json.loads((tmp_path / "b" / "images.json").read_text())
    assert len(report["images"]) == 3 and len(report["skipped"]) == 1


def test_max_pixels_on_the_command_line_skips_and_reports(tmp_path, coco_root, checkpoint, capsys):
    from frpose_cli.data import images
    try:
        code, out, err = run_cli(["predict", coco_root / "val2017" / VAL[0], "-w", checkpoint, "--detector",
                                  "whole-image", "--precision", "fp32", "--no-progress", "--no-vis",
                                  "--max-pixels", "1000", "--out", tmp_path / "o"], capsys)
    finally:
        images.set_max_pixels(None)
    assert code == 1 and "over the budget of 0.001 megapixels" in out + err
    assert "megapixels" in json.loads((tmp_path / "o" / "images.json").read_text())["skipped"][0]["reason"]


def test_results_written_at_the_end_never_replace_a_file_another_run_made_meanwhile(tmp_path):
    from concurrent.futures import ThreadPoolExecutor
    from frpose_cli.fileio import create_json
    out = tmp_path / "results.json"
    out.write_text("[1]")                           # another eval finished first
    assert create_json(out, [2]) == tmp_path / "results-2.json"
    assert out.read_text() == "[1]" and json.loads((tmp_path / "results-2.json").read_text()) == [2]
    with ThreadPoolExecutor(4) as pool:             # four at once: four files, nothing lost
        paths = list(pool.map(lambda i: create_json(tmp_path / "many.json", [i]), range(4)))
    assert len(set(paths)) == 4 and sorted(json.loads(p.read_text())[0] for p in paths) == [0, 1, 2, 3]
    assert not list(tmp_path.glob(".*.tmp"))
