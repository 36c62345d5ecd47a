"""The GPU check's entry points behave without a GPU: the cuda tier is collected and skips, and
scripts/gpu_check.sh refuses in one line (issue 22)."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_refuses_in_one_line_without_a_gpu():
    res = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().count("\n") == 0 and res.stderr.startswith("gpu_check: no CUDA GPU here")


def test_the_cuda_tier_is_collected():
    res = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "cuda",
                          str(ROOT / "tests" / "test_cuda.py")], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    names = [line for line in res.stdout.splitlines() if "::" in line]
    assert len(names) >= 8 and any("ddp_over_nccl" in n for n in names) and any("peak_memory" in n for n in names)
