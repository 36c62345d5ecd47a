"""Sharded `predict` and `eval`: torchrun (gloo, CPU), `--shard i/n` array jobs, `frpose merge`, resume
of a killed rank.  The merged files must equal a one-process run's, byte for byte.

torchrun tests are few and tiny (sbn-r18 at 64x64, a handful of small images): each launch costs
seconds of interpreter start-up on this machine.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from frpose_cli.cli import app as cli
from frpose_cli.cards import load_card
from frpose_cli.weights.checkpoint import save_checkpoint
from helpers import randomised, run_cli

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data" / "coco"
VAL = DATA / "val2017"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    card = load_card("sbn-r18", (64, 64))
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "sbn-r18.pt", randomised(card.build_model()), card)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """COCO-named and other images, a short video, a damaged file and a note: every kind of entry."""
    root = tmp_path_factory.mktemp("src") / "imgs"
    (root / "sub").mkdir(parents=True)
    for i, path in enumerate(sorted(VAL.glob("*.jpg"))):
        img = cv2.imread(str(path))
        small = cv2.resize(img, (96, round(img.shape[0] * 96 / img.shape[1])))
        cv2.imwrite(str(root / path.name), small)
        cv2.imwrite(str(root / "sub" / f"frame{i}.png"), small[:, ::-1])
    writer = cv2.VideoWriter(str(root / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(3):
        writer.write(np.roll(cv2.resize(small, (64, 48)), 5 * i, axis=1))
    writer.release()
    data = (VAL / "000000196141.jpg").read_bytes()
    (root / "cut.jpg").write_bytes(data[: len(data) // 3])
    (root / "notes.txt").write_text("not an image\n")
    return root


def predict_args(ckpt, folder, out, *extra):
    return ["predict", folder, "-w", ckpt, "--detector", "whole-image", "--out", out, "--no-progress",
            "--batch-size", "1", "--backend", "torch", *extra]


@pytest.fixture(scope="module")
def single(ckpt, folder, tmp_path_factory):
    """The one-process run every split must reproduce (no DataLoader workers)."""
    out = tmp_path_factory.mktemp("single") / "run"
    assert in_process(predict_args(ckpt, folder, out, "--workers", "0")) == 1   # the cut JPEG is skipped
    return out


def in_process(args) -> int:
    """`frpose ARGS` in this process with one thread, as each torchrun rank runs (OMP_NUM_THREADS=1)."""
    old, threads = sys.argv, torch.get_num_threads()
    sys.argv = ["frpose", *map(str, args)]
    torch.set_num_threads(1)
    try:
        cli.main()
    except SystemExit as e:
        return e.code or 0
    finally:
        sys.argv = old
        torch.set_num_threads(threads)
    return 0


def env(**extra):
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **extra}


def torchrun(args, nproc=2, nnodes=1, node_rank=0, port=None, script=None, extra_env=None, cwd=None):
    launch = [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nnodes), "--node-rank", str(node_rank),
              "--nproc-per-node", str(nproc), "--master-addr", "127.0.0.1", "--master-port", str(port or free_port())]
    target = [str(script)] if script else ["-m", "frpose_cli"]
    return subprocess.Popen([*launch, *target, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env(**(extra_env or {})), cwd=cwd or ROOT)


def same_run(a: Path, b: Path) -> None:
    """Identical predictions.json bytes, and images.json equal but for the split record."""
    assert (a / "predictions.json").read_bytes() == (b / "predictions.json").read_bytes()
    ia, ib = (json.loads((d / "images.json").read_text()) for d in (a, b))
    ia.pop("shards"), ib.pop("shards")
    assert ia == ib


def test_single_run_numbers_images_frames_and_skips_in_stream_order(single, folder):
    records = json.loads((single / "predictions.json").read_text())
    info = json.loads((single / "images.json").read_text())
    names = [i["file_name"] for i in info["images"]]
    assert names == ["000000000785.jpg", "000000040083.jpg", "000000196141.jpg", "000000197388.jpg",
                     "clip.avi", "clip.avi", "clip.avi", "sub/frame0.png", "sub/frame1.png", "sub/frame2.png",
                     "sub/frame3.png"]
    ids = [i["image_id"] for i in info["images"]]
    # COCO names keep their ids; the rest count the stream: 0-3 images, clip's frames 4-6, cut.jpg 7 (skipped),
    # sub/ 8-11 (notes.txt is not counted)
    assert ids == [785, 40083, 196141, 197388, 4, 5, 6, 8, 9, 10, 11]
    assert [r["image_id"] for r in records] == ids and len(records) == 11
    assert [s["file_name"] for s in info["skipped"]] == ["cut.jpg"]
    assert [s["file_name"] for s in info["ignored"]] == ["notes.txt"]


@pytest.mark.slow
def test_torchrun_two_nodes_predict_equals_one_process(single, ckpt, folder, tmp_path):
    out = tmp_path / "run"
    port = free_port()
    nodes = [torchrun(predict_args(ckpt, folder, out), nproc=1, nnodes=2, node_rank=n, port=port) for n in (0, 1)]
    results = [p.communicate(timeout=300) for p in nodes]
    assert nodes[0].returncode == 1, results[0][1][-3000:]   # the run's skipped file: exit 1, from rank 0
    assert nodes[1].returncode == 0, results[1][1][-3000:]   # the other rank leaves reporting to rank 0
    same_run(single, out)
    assert sorted(p.name for p in (out / "parts").iterdir()) == ["session1-shard0-of2.jsonl",
                                                                 "session1-shard1-of2.jsonl"]
    info = json.loads((out / "images.json").read_text())["shards"]
    assert info["count"] == 2 and "p mod n" in info["rule"]
    assert [(p["shard"], p["finished"]) for p in info["parts"]] == [("0/2", True), ("1/2", True)]
    assert sum(p["images"] for p in info["parts"]) == 11
    stdout = results[0][0]
    assert "shard 0/2:" in stdout and "shard 1/2:" in stdout and "images/s" in stdout
    assert "predict shard 1/2:" in results[1][0]
    assert sorted(p.name for p in (out / "vis").rglob("*.*")) == \
        sorted(p.name for p in (single / "vis").rglob("*.*"))


KILL_RANK = """
import os, signal, sys
real = os.fsync
calls = [0]
def fsync(fd):
    real(fd)
    if os.readlink(f"/proc/self/fd/{fd}").endswith(".jsonl"):
        calls[0] += 1
        if calls[0] == int(os.environ["KILL_AT"]) and os.environ.get("RANK") == os.environ["KILL_RANK"]:
            os.kill(os.getpid(), signal.SIGKILL)
os.fsync = fsync
from frpose_cli.cli.app import main
sys.argv = ["frpose"] + sys.argv[1:]
main()
"""


@pytest.mark.slow
def test_a_killed_rank_resumes_without_duplicates_or_losses(single, ckpt, folder, tmp_path):
    script = tmp_path / "kill_rank.py"
    script.write_text(textwrap.dedent(KILL_RANK))
    out = tmp_path / "run"
    args = predict_args(ckpt, folder, out, "--save-every", "1", "--no-vis")
    killed = torchrun(args, script=script, extra_env={"KILL_RANK": "1", "KILL_AT": "2"})
    _, err = killed.communicate(timeout=300)
    assert killed.returncode != 0 and "exitcode: -9" in err, err[-3000:]   # rank 1 died by SIGKILL
    assert not (out / "predictions.json").exists()   # nothing merged from a broken run
    from frpose_cli.inference.run_log import list_logs, read_entries
    rank1 = [log for log in list_logs(out) if log.index == 1]
    assert len(rank1) == 1 and sum("image" in e for e in read_entries(rank1[0].path)) == 2   # killed mid-run

    resumed = torchrun([*args, "--resume"])
    stdout, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 1, err[-3000:]
    # rank 1 had logged files 1 and 3; the cut JPEG and its two frames were left (rank 0 may have finished)
    assert "predict shard 1/2: 2 images, 2 persons, 1 skipped, 2 already done (--resume)" in stdout
    records = json.loads((out / "predictions.json").read_text())
    keys = [(r["file_name"], r.get("frame")) for r in records]
    assert len(keys) == len(set(keys)) == 11                     # no duplicates, no losses
    assert (out / "predictions.json").read_bytes() == (single / "predictions.json").read_bytes()


@pytest.mark.slow
def test_torchrun_eval_two_processes_equals_one_process(ckpt, tmp_path, capsys):
    args = ["eval", "-w", ckpt, "--data", DATA, "--no-progress", "--workers", "0", "--batch-size", "4",
            "--backend", "torch"]
    code, _, err = run_cli([*args, "--out", tmp_path / "one.json", "--json", tmp_path / "one-m.json"], capsys)
    assert code == 0, err
    with_bars = [a for a in args if a != "--no-progress"]
    proc = torchrun([*with_bars, "--out", tmp_path / "two.json", "--json", tmp_path / "two-m.json"])
    stdout, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "eval 0/2" in err and "rank1" in err and "eval 1/2" not in err   # rank 0's bar counts every rank
    assert (tmp_path / "two.json").read_bytes() == (tmp_path / "one.json").read_bytes()
    one, two = (json.loads((tmp_path / f"{n}-m.json").read_text()) for n in ("one", "two"))
    assert one == two and one["PCK"] > 0
    assert "shard 0/2:" in stdout and "shard 1/2:" in stdout and "crops/s" in stdout
    assert sorted(p.name for p in (tmp_path / "two-parts").iterdir()) == ["shard-0-of-2.npz", "shard-1-of-2.npz"]


def test_array_jobs_join_one_folder_and_the_last_one_merges(single, ckpt, folder, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run_cli(predict_args(ckpt, folder, out, "--shard", "2/3"), capsys)
    assert code == 1 and "waiting for shard(s) 0/3, 1/3" in stdout, err   # cut.jpg is in shard 2/3
    # a job whose shard already ran, or made with other options, is refused in one line
    code, _, err = run_cli(predict_args(ckpt, folder, out, "--shard", "2/3"), capsys)
    assert code == 2 and "already holds the results of shard 2/3; pass --resume" in err
    code, _, err = run_cli(predict_args(ckpt, folder, out, "--shard", "0/3", "--no-flip"), capsys)
    assert code == 2 and "was made with other options (flip True ≠ False)" in err
    code, _, _ = run_cli(predict_args(ckpt, folder, out, "--shard", "0/3"), capsys)
    assert code == 0 and not (out / "predictions.json").exists()
    code, stdout, _ = run_cli(predict_args(ckpt, folder, out, "--shard", "1/3", "--resume"), capsys)   # a requeue
    assert code == 1 and "run: 11 images, 11 persons" in stdout
    same_run(single, out)
    # frpose merge rebuilds the same files; several folders of one run merge into a new one
    (out / "predictions.json").unlink()
    code, stdout, _ = run_cli(["merge", out], capsys)
    assert code == 1 and "merge: 11 images" in stdout and "skipped cut.jpg" in stdout
    same_run(single, out)
    split = [tmp_path / f"part{i}" for i in range(2)]
    for i, d in enumerate(split):
        (d / "parts").mkdir(parents=True)
        for log in (out / "parts").glob(f"*shard{i}-of3.jsonl"):
            shutil.copy(log, d / "parts")
    code, _, err = run_cli(["merge", *split, "--out", tmp_path / "joined"], capsys)
    assert code == 2 and "shard(s) 2/3 have not finished" in err and "--partial" in err
    assert not (tmp_path / "joined").exists()
    code, stdout, _ = run_cli(["merge", *split, "--out", tmp_path / "joined", "--partial"], capsys)
    assert code == 1 and "incomplete: shard(s) 2/3" in stdout
    assert len(json.loads((tmp_path / "joined" / "predictions.json").read_text())) == 9   # 11 less shard 2/3's two


@pytest.mark.parametrize("args,message", [
    (["--shard", "3/3"], "--shard takes i/n with 0 ≤ i < n"),
    (["--shard", "x"], "--shard takes i/n"),
    (["--workers", "-1"], "--workers -1: must be a whole number from 0 to 512"),
])
def test_bad_shard_options_are_one_line(ckpt, folder, tmp_path, capsys, args, message):
    code, _, err = run_cli(predict_args(ckpt, folder, tmp_path / "run", *args), capsys)
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("frpose: error:") and message in last and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_shard_needs_out_and_a_network(ckpt, folder, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["predict", folder, "-w", ckpt, "--detector", "whole-image", "--shard", "0/2"], capsys)
    assert code == 2 and "--shard needs --out DIR" in err
    code, _, err = run_cli(["eval", "-w", ckpt, "--data", DATA, "--shard", "0/2"], capsys)
    assert code == 2 and "--shard needs --out RESULTS.json" in err
    code, _, err = run_cli(["eval", "sbn-r18", "--oracle", "--data", DATA, "--shard", "0/2"], capsys)
    assert code == 2 and "run no network" in err
    assert not (tmp_path / "runs").exists()


def test_eval_array_jobs_equal_one_process_and_merge_when_the_merger_was_lost(ckpt, tmp_path, capsys):
    args = ["eval", "-w", ckpt, "--data", DATA, "--no-progress", "--workers", "0", "--gt-boxes", "--backend", "torch"]
    code, _, err = run_cli([*args, "--out", tmp_path / "one.json", "--json", tmp_path / "one-m.json"], capsys)
    assert code == 0, err
    two = [*args, "--out", tmp_path / "two.json", "--json", tmp_path / "two-m.json"]
    code, stdout, _ = run_cli([*two, "--shard", "1/2"], capsys)
    assert code == 0 and "waiting for shard(s) 0/2" in stdout
    code, stdout, err = run_cli([*two, "--shard", "1/2"], capsys)   # a requeued job keeps its part
    assert code == 0 and "waiting for shard(s) 0/2" in stdout
    assert "eval shard 1/2: its part" in err and "kept, not run again" in err
    code, _, err = run_cli(["merge", tmp_path / "two-parts"], capsys)
    assert code == 2 and "shard(s) 0/2 have no part yet" in err
    code, stdout, _ = run_cli([*two, "--shard", "0/2"], capsys)
    assert code == 0 and "shard 0/2:" in stdout and "shard 1/2:" in stdout
    assert (tmp_path / "two.json").read_bytes() == (tmp_path / "one.json").read_bytes()
    assert json.loads((tmp_path / "two-m.json").read_text()) == json.loads((tmp_path / "one-m.json").read_text())
    # the merged files lost: `frpose merge` scores the parts again from what they record
    (tmp_path / "two.json").unlink()
    (tmp_path / "two-m.json").unlink()
    code, stdout, err = run_cli(["merge", tmp_path], capsys)
    assert code == 0, err
    assert (tmp_path / "two.json").read_bytes() == (tmp_path / "one.json").read_bytes()
    assert json.loads((tmp_path / "two-m.json").read_text()) == json.loads((tmp_path / "one-m.json").read_text())
    code, _, err = run_cli(["merge", tmp_path / "two-parts"], capsys)
    assert code == 2 and "already exists" in err    # merged results are never overwritten
    # parts of two runs (here: another flip setting) are not merged
    bad = tmp_path / "mixed"
    bad.mkdir()
    shutil.copy(tmp_path / "two-parts" / "shard-0-of-2.npz", bad)
    with np.load(tmp_path / "two-parts" / "shard-1-of-2.npz") as z:
        arrays = dict(z)
    info = json.loads(str(arrays["info"]))
    info["options"]["flip"] = False
    np.savez(bad / "shard-1-of-2.npz", **{**arrays, "info": np.array(json.dumps(info))})
    code, _, err = run_cli(["merge", bad], capsys)
    assert code == 2 and "parts made with different options (flip True ≠ False)" in err.strip().splitlines()[-1]
    code, _, err = run_cli(["merge", bad, "--partial"], capsys)
    assert code == 2 and "--partial is for predict runs" in err


def copy_log(src: Path, folder: Path, name: str, edit=None) -> Path:
    """A copy of a predict log under ``folder/parts/name``, its header or one line changed by ``edit``."""
    (folder / "parts").mkdir(parents=True, exist_ok=True)
    lines = src.read_text().splitlines(keepends=True)
    if edit is not None:
        lines = edit(lines)
    (folder / "parts" / name).write_text("".join(lines))
    return folder


def other_options(lines):
    header = json.loads(lines[0])
    header["header"]["options"]["flip"] = not header["header"]["options"]["flip"]
    return [json.dumps(header) + "\n", *lines[1:]]


@pytest.mark.parametrize("make,message", [
    (lambda log, t: [copy_log(log, t / "a", log.name), copy_log(log, t / "b", log.name)],
     "session1-shard0-of1.jsonl is in two folders"),
    (lambda log, t: [copy_log(log, t / "a", "session1-shard0-of2.jsonl"),
                     copy_log(log, t / "b", "session1-shard1-of2.jsonl")],
     "is in two logs of session 1"),
    (lambda log, t: [copy_log(log, t / "a", log.name), copy_log(log, t / "b", "session2-shard0-of1.jsonl",
                                                                 other_options)],
     "made with different options (flip True ≠ False)"),
    (lambda log, t: [copy_log(log, t / "a", log.name, lambda ls: [ls[0], "{oops\n", *ls[2:]])],
     "line 2 is damaged"),
    (lambda log, t: [copy_log(log, t / "a", log.name, lambda ls: ls[:-1])],
     "shard(s) 0/1 have not finished"),
    (lambda log, t: [(t / "empty").mkdir() or t / "empty"], "give one predict run folder"),
    (lambda log, t: [t / "nowhere"], "no such folder"),
])
def test_merge_of_bad_parts_is_one_line_exit_2(single, tmp_path, capsys, make, message):
    """Missing or unfinished parts, parts of different runs, a damaged log: refused, nothing written."""
    folders = make(single / "parts" / "session1-shard0-of1.jsonl", tmp_path)
    code, _, err = run_cli(["merge", *folders, "--out", tmp_path / "merged"], capsys)
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("frpose: error:") and message in last and "Traceback" not in err
    assert not (tmp_path / "merged" / "predictions.json").exists()
