import os
import tempfile
from pathlib import Path

import pytest
import torch

# Tests never reach the internet and never touch the user's weights cache: downloads are off and the
# cache is a fresh folder (tests that download turn this off for a loopback server of their own).
os.environ["FRPOSE_OFFLINE"] = "1"
os.environ["FRPOSE_HOME"] = tempfile.mkdtemp(prefix="frpose-test-home-")
os.environ.pop("FRPOSE_MIRROR", None)

# Two cores: keep torch from oversubscribing when pytest-xdist is not used.
torch.set_num_threads(min(2, os.cpu_count() or 1))

# Never touch the user's cache, and keep verbs deterministic: `--precision auto` (the CPU default)
# gates and times set-ups, so tests run float32 unless they ask for a precision (tests/test_precision.py).
os.environ["FRPOSE_HOME"] = tempfile.mkdtemp(prefix="frpose-test-home-")
os.environ["FRPOSE_PRECISION"] = "fp32"

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def coco_root() -> Path:
    return DATA / "coco"


@pytest.fixture
def without_openvino(monkeypatch):
    """The machine as it is without the optional openvino package: `import openvino` fails and
    importlib finds no such package (tests/test_openvino.py covers it present and absent)."""
    import sys
    from frpose_cli.runtime import ovrt
    monkeypatch.setitem(sys.modules, "openvino", None)
    ovrt._core.cache_clear()
    yield
    ovrt._core.cache_clear()


@pytest.fixture
def one_thread():
    """torch on one thread (tests that compare with OMP_NUM_THREADS=1 torchrun ranks, or that would wait for a
    busy core on a shared 2-core machine: a ReLU measured 8 ms with two threads, 0.06 ms with one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def frpose_r18_checkpoint(tmp_path_factory) -> Path:
    """One frpose-r18 128x96 checkpoint with seeded random weights, shared by the predict, tracking and live
    tests (their networks' outputs are checked for shape and plumbing, or replaced by an oracle)."""
    from frpose_cli.cards import load_card
    from frpose_cli.weights.checkpoint import save_checkpoint
    card = load_card("frpose-r18", (128, 96))
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "frpose-r18.pt", card.build_model(), card)


@pytest.fixture(scope="session")
def sbn_r18_checkpoint(tmp_path_factory) -> Path:
    """One sbn-r18 64x64 checkpoint with seeded random weights (the smallest card), for tests of plumbing,
    argument checks and bad inputs; read only."""
    from frpose_cli.cards import load_card
    from frpose_cli.weights.checkpoint import save_checkpoint
    card = load_card("sbn-r18", (64, 64))
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "sbn-r18.pt", card.build_model(), card)
