"""The GPU check's entry points behave without a GPU: the cuda tier is collected and skips, and
scripts/gpu_check.sh refuses in one line (issue 22)."""
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_refuses_in_one_line_without_a_gpu():
    res = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().count("\n") == 0 and res.stderr.startswith("gpu_check: no CUDA GPU here")


def test_the_cuda_tier_is_marked_and_skips_without_a_gpu():
    import importlib.util
    import torch
    spec = importlib.util.spec_from_file_location("cuda_tier", ROOT / "tests" / "test_cuda.py")
    tier = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tier)
    tests = [name for name in vars(tier) if name.startswith("test_")]
    assert len(tests) >= 6 and "test_ddp_over_nccl_at_world_size_1_with_syncbn" in tests
    marks = {m.name: m for m in tier.pytestmark}
    assert "cuda" in marks and marks["skipif"].args[0] == (not torch.cuda.is_available())
