"""A process killed (SIGKILL: no cleanup runs) while writing any file frpose writes leaves the previous
file whole. Every writer of the package is covered; each is killed once while the new bytes are being
written and once just before the rename that would publish them."""
import json
import os
import subprocess
import sys

import pytest

from bad_inputs import VAL, image_folder

KILL = """
import os, signal, sys
point, calls = os.environ["KILL_POINT"], [0]
real = {"fsync": os.fsync, "replace": os.replace}[point]
def killer(*args):
    calls[0] += 1
    if calls[0] == int(os.environ.get("KILL_AT", "1")):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args)
setattr(os, point, killer)
"""

# name → (file it writes, Python that writes it there; TARGET is the path)
WRITERS = {
    "json": ("out.json", "from frpose_cli.fileio import atomic_write_json; atomic_write_json(TARGET, [1, 2, 3])"),
    "text": ("metrics.jsonl", "from frpose_cli.training.train_log import MetricsLog; log = MetricsLog(TARGET.parent); "
                              "log.path = TARGET; log.add({'kind': 'epoch', 'epoch': 1, 'train_loss': 1.0}); log.flush()"),
    "checkpoint": ("last.pt", "from frpose_cli.cards import load_card; from frpose_cli.weights.checkpoint import save_checkpoint; "
                              "c = load_card('sbn-r18', (64, 64)); save_checkpoint(TARGET, c.build_model(), c)"),
    "overlay": ("vis.jpg", "import numpy as np; from frpose_cli.inference.draw import write_image; "
                           "write_image(TARGET, np.zeros((20, 30, 3), np.uint8))"),
    "plot": ("curve.png", "from frpose_cli.training.train_log import MetricsLog; log = MetricsLog(TARGET.parent); "
                          "[log.add({'kind': 'epoch', 'epoch': e, 'train_loss': 1.0 / e}) for e in (1, 2)]; log.draw(TARGET)"),
    "video": ("clip.mp4", "import numpy as np; from frpose_cli.inference.draw import VideoOverlayWriter; "
                          "v = VideoOverlayWriter(TARGET, 10); [v.write(np.zeros((32, 32, 3), np.uint8)) for _ in range(3)]; v.close()"),
    "onnx": ("m.onnx", "from frpose_cli.cards import load_card; from frpose_cli.deploy.export import export_model; "
                       "c = load_card('sbn-r18', (64, 64)); export_model(c.build_model(), c, 'onnx', TARGET)"),
    "torchscript": ("m.ts", "from frpose_cli.cards import load_card; from frpose_cli.deploy.export import export_model; "
                            "c = load_card('sbn-r18', (64, 64)); export_model(c.build_model(), c, 'torchscript', TARGET)"),
    "submission-zip": ("r.zip", "from frpose_cli.fileio import atomic_write_binary; import zipfile; "
                                "atomic_write_binary(TARGET, lambda f: zipfile.ZipFile(f, 'w').writestr('a.json', '[]'))"),
}


def run_killed(code: str, point: str, at: int = 1, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "KILL_POINT": point, "KILL_AT": str(at)}
    return subprocess.run([sys.executable, "-c", KILL + code], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=300)


# Killed once the new bytes are written but not yet on disk (fsync) for every writer; killed at the
# rename itself for the generic writer and the video (its own temp-file path).
KILLS = [(w, "fsync") for w in sorted(WRITERS)] + [("json", "replace"), ("video", "replace")]


@pytest.mark.parametrize("writer,point", KILLS, ids=[f"{w}-{p}" for w, p in KILLS])
def test_a_killed_writer_leaves_the_previous_file(writer, point, tmp_path):
    name, code = WRITERS[writer]
    target = tmp_path / name
    target.write_bytes(b"the previous good file")
    res = run_killed(f"from pathlib import Path; TARGET = Path({str(target)!r})\n{code}", point)
    assert res.returncode == -9, res.stderr     # it really died mid-write
    assert target.read_bytes() == b"the previous good file"
    # and with nothing killing it, the same code does replace the file (the test can fail)
    exec(code, {"TARGET": target})
    assert target.read_bytes() != b"the previous good file"


def test_predict_killed_while_saving_a_resumed_run_keeps_its_results(tmp_path, capsys):
    from bad_inputs import Ctx
    from helpers import run_cli
    from frpose_cli.cards import load_card
    from frpose_cli.weights.checkpoint import save_checkpoint
    card = load_card("sbn-r18", (64, 64))
    ckpt = save_checkpoint(tmp_path / "w.pt", card.build_model(), card)
    folder = image_folder(Ctx(root=tmp_path, ckpt=ckpt), "in", count=2)
    args = ["predict", str(folder), "-w", str(ckpt), "--detector", "whole-image", "--no-flip", "--no-progress", "--backend", "torch",
            "--out", str(tmp_path / "run")]
    cli = "import sys; from frpose_cli.cli.app import main; sys.argv = ['frpose'] + {args!r}; main()"
    code, _, err = run_cli(args, capsys)   # the run to resume: in this process (only the resumed runs are killed)
    assert code == 0, err
    files = sorted(p for p in (tmp_path / "run").rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in files}
    for point in ("fsync", "replace"):   # the resumed run only re-saves predictions.json / images.json
        res = run_killed(cli.format(args=[*args, "--resume"]), point)
        assert res.returncode == -9, res.stderr
        assert {p: p.read_bytes() for p in files} == before
    assert len(json.loads((tmp_path / "run" / "predictions.json").read_text())) == 2
    assert VAL.is_dir()
