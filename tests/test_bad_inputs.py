"""Every verb against the bad-input corpus (tests/bad_inputs.py): the exit code, one clear message, no
traceback, and nothing of the inputs or of earlier runs changed."""
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bad_inputs import CASES, Ctx
from helpers import run_cli


def _mount(folder: Path, options: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    return res.returncode == 0


@pytest.fixture(scope="session")
def special_folders(tmp_path_factory):
    """A read-only mount and a tiny (64 kB) file system: as root, permission bits stop nothing, so a
    real mount is the only honest read-only location. Without mount rights, read-only falls back to
    permission bits (which do stop a non-root user) and the full-disk cases are skipped."""
    base = tmp_path_factory.mktemp("mounts")
    ro, full = base / "ro", base / "full"
    mounted = []
    if _mount(ro, "ro,size=64k"):
        mounted.append(ro)
    elif os.geteuid() != 0:
        ro.chmod(0o555)
    else:
        ro = None
    if _mount(full, "size=64k"):
        mounted.append(full)
    else:
        full = None
    yield ro, full
    for m in mounted:
        subprocess.run(["umount", str(m)], capture_output=True)


@pytest.fixture(scope="session")
def small_ckpt(sbn_r18_checkpoint):
    return sbn_r18_checkpoint


@pytest.fixture(scope="session")
def train_run(tmp_path_factory):
    """A finished one-epoch run of a few instances (what `--resume` cases start from)."""
    from test_train import COCO_DIR, small_split
    from frpose_cli.training.train import TrainConfig, run
    tmp = tmp_path_factory.mktemp("trainrun")
    run(TrainConfig(model="sbn-r18", input_size=[64, 32], epochs=1, batch_size=2, workers=0, device="cpu",
                    pretrained="none", out=str(tmp / "run"), seed=1, quiet=True,
                    train_ann=small_split(tmp, "train", 2), train_images=str(COCO_DIR / "train2017"),
                    val_ann=small_split(tmp, "val", 2), val_images=str(COCO_DIR / "val2017")))
    return tmp / "run"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case, tmp_path, small_ckpt, special_folders, request, capsys, monkeypatch):
    ro, full = special_folders
    if "read_only" in case.needs and ro is None:
        pytest.skip("no read-only location can be made here")
    if "full" in case.needs and full is None:
        pytest.skip("no small file system can be mounted here")
    ctx = Ctx(root=tmp_path / "case", ckpt=small_ckpt, read_only=ro, full=full,
              train_run=request.getfixturevalue("train_run") if "train_run" in case.needs else None)
    ctx.root.mkdir()
    monkeypatch.chdir(tmp_path)   # default outputs (runs/...) land here
    argv, protected = case.build(ctx)
    before = {p: _digest(p) for p in protected}
    code, out, err = run_cli(argv, capsys)
    text = out + err
    assert "Traceback" not in text, text
    assert code == case.code, text
    assert case.text in text, text
    if code == 2:
        errors = [ln for ln in err.splitlines() if ln.startswith("frpose: error:")]
        assert len(errors) == 1 and case.text in errors[0], err
    for p, digest in before.items():
        assert p.exists() and _digest(p) == digest, f"{p} changed"
    for rel in case.absent:
        assert not (ctx.root / rel).exists(), rel
    assert len(CASES) >= 40
