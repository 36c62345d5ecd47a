#!/usr/bin/env bash
# The GPU check (issue 22): what a person with a CUDA GPU runs once, in about 5 minutes, from a checkout:
#   bash scripts/gpu_check.sh [COCO_ROOT]
# 1. the cuda test tier (tests/test_cuda.py: AMP training steps, device-side targets, eval CUDA = CPU,
#    fp16/bf16 set-ups through the gate, DDP over NCCL, peak memory at batch 32, predict --overlap);
# 2. the multi-process test tier (-m slow) the CPU suite leaves out for time;
# 3. frpose bench of Table 2's models on the GPU in float32, fp16 and (where native) bf16;
# 4. the zoo's person detectors in each set-up the GPU runs (fp32, fused, fp16, bf16), with their share of the ceilings.
# Compare ratios with the paper's GPU latencies (3.5 ms frpose-r34, 4.8 ms SBN-152 on a 1080 Ti-class card).
# Without a GPU it refuses in one line (exit 2).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); run this on a machine with one" >&2
  exit 2
fi
python3 -c 'import torch; print("gpu_check on", torch.cuda.get_device_name(), "torch", torch.__version__, "CUDA", torch.version.cuda)'
python3 -m pytest -q -m cuda -s tests/test_cuda.py 2>&1 | grep -E "epoch losses|peak GPU memory|gate |^overlap |passed|failed|skipped|Error" || true
# the multi-process tier the CPU suite leaves out for time (torchrun ranks, killed ranks)
python3 -m pytest -q -m slow 2>&1 | tail -n 1
# Table 2's set (sbn-r50/101/152, frpose-r34) at 256x192 and 384x288; a set-up the GPU lacks is listed with why
python3 -m frpose_cli bench --device cuda --setup fused --setup fp16 --setup bf16 --batch 1 --iters 50
# issue 32: the person detectors on the GPU, each set-up against its precision's ceiling and the roofline
python3 -m frpose_cli bench --detector all --device cuda --iters 10
