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
