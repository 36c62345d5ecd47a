"""torchrun on CPU: 2 processes × batch B reproduce 1 process × batch 2B (gloo, SyncBatchNorm).

Tolerances (docs/training.md).  First step: the 2-process gradient (all-reduced, two-pass
SyncBatchNorm statistics) must equal a float64 single-process gradient to 1e-4 relative per
tensor (~1e-5 observed); the float32 single-process gradient itself is only within ~4e-3 of
float64 here (PyTorch's CPU BatchNorm on 8-value stage-4 statistics), so against it we
allow 1e-2.  After k Adam steps: Adam moves each weight by about ±lr whatever the size of
its gradient, so elements whose gradient is at rounding level may step the other way; no
weight may differ by more than 2·k·lr and the update as a whole must agree to 15 %
(≈7 % observed, tiny batch, random init), the loss to 1e-3.
"""
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from frpose_cli.cards import load_card
from frpose_cli.weights.checkpoint import load_checkpoint
from frpose_cli.training.train import TrainConfig, run

COCO_DIR = Path(__file__).parent / "data" / "coco"
LR, STEPS = 1e-3, 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(ann, out, batch_size, sync_bn, epochs=STEPS):
    return dict(model="sbn-r18", train_ann=str(ann), train_images=str(COCO_DIR / "train2017"), input_size=[64, 32],
                epochs=epochs, batch_size=batch_size, lr=LR, workers=0, device="cpu", pretrained="none", seed=3,
                val_every=0, quiet=True, out=str(out), sync_bn=sync_bn)


SCRIPT = """
import sys, torch
from frpose_cli.training.train import TrainConfig, run
cfg, grads_file = {cfg!r}, {grads!r}
def keep_first_gradients(epoch, step, model):
    if epoch == 0 and step == 0 and torch.distributed.get_rank() == 0:
        torch.save({{k: p.grad.clone() for k, p in model.named_parameters()}}, grads_file)
run(TrainConfig(**cfg), on_step=keep_first_gradients)
"""


def run_two_processes(tmp_path, ann, name, sync_bn, epochs=STEPS):
    script = tmp_path / f"{name}.py"
    script.write_text(textwrap.dedent(SCRIPT.format(cfg=config(ann, tmp_path / name, 2, sync_bn, epochs),
                                                    grads=str(tmp_path / f"{name}_grads.pt"))))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(free_port()), str(script)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    return load_checkpoint(tmp_path / name / "last.pt"), torch.load(tmp_path / f"{name}_grads.pt")


def grad_error(a, b):
    return max((a[k] - b[k]).norm().item() / (b[k].norm().item() + 1e-30) for k in b)


def float64_gradients(ann):
    """The first step's gradient of the 4-person batch, computed in float64 in one process."""
    from torch.utils.data import DistributedSampler, default_collate

    from frpose_cli.data.codecs import codec_for_card
    from frpose_cli.data.dataset import CocoPoseDataset
    from frpose_cli.training.losses import JointsMSELoss
    card = load_card("sbn-r18", "64x32")
    ds = CocoPoseDataset(ann, COCO_DIR / "train2017", card, codec_for_card(card), train=True, seed=3)
    torch.manual_seed(3)
    model = card.build_model().double()
    batch = default_collate([ds[i] for i in DistributedSampler(ds, 1, 0, shuffle=True, seed=3)])
    out = model(batch["image"].double())
    JointsMSELoss()(out, batch["target"].double(), batch["target_weight"].double()).backward()
    return {k: p.grad.float() for k, p in model.named_parameters()}


@pytest.mark.slow
def test_two_processes_match_one_process_with_double_batch(tmp_path):
    data = json.loads((COCO_DIR / "annotations" / "person_keypoints_train2017.json").read_text())
    data["annotations"] = [a for a in data["annotations"] if a["num_keypoints"] > 0 and not a["iscrowd"]][:4]
    ann = tmp_path / "train.json"
    ann.write_text(json.dumps(data))        # 4 people: one step of 2×2 or 1×4 per epoch

    grads = {}
    def keep(epoch, step, model):
        if epoch == 0 and step == 0:
            grads.update({k: p.grad.clone() for k, p in model.named_parameters()})
    run(TrainConfig(**config(ann, tmp_path / "single", 4, False)), on_step=keep)
    single = load_checkpoint(tmp_path / "single" / "last.pt")
    ddp, ddp_grads = run_two_processes(tmp_path, ann, "ddp", sync_bn=True)

    assert ddp["train_config"]["batch_size"] == 2 and single["train_config"]["batch_size"] == 4
    assert grad_error(ddp_grads, float64_gradients(ann)) < 1e-4
    assert grad_error(ddp_grads, grads) < 1e-2
    assert ddp["metrics"]["train_loss"] == pytest.approx(single["metrics"]["train_loss"], rel=1e-3)
    torch.manual_seed(3)
    init = load_card("sbn-r18", "64x32").build_model().state_dict()
    diff2 = ref2 = worst = 0.0
    for key, w in single["state_dict"].items():
        if w.is_floating_point() and "running" not in key:
            d = (ddp["state_dict"][key] - init[key]) - (w - init[key])
            diff2, ref2 = diff2 + d.pow(2).sum().item(), ref2 + (w - init[key]).pow(2).sum().item()
            worst = max(worst, d.abs().max().item())
    assert worst <= 2 * STEPS * LR + 1e-6
    assert (diff2 / ref2) ** 0.5 < 0.15, f"relative update difference {(diff2 / ref2) ** 0.5:.3g}"

    # without SyncBatchNorm each process normalises with its own half batch: visibly different (first step's
    # gradients only: one epoch is enough)
    _, plain_grads = run_two_processes(tmp_path, ann, "plain", sync_bn=False, epochs=1)
    assert grad_error(plain_grads, grads) > 5e-2


PARENT = """
import os, sys, time, torch
from frpose_cli.distributed import worker_init

class Stuck(torch.utils.data.IterableDataset):
    def __iter__(self):   # one item, then stuck inside the dataset (as a deadlocked decode would be)
        yield os.getpid()
        time.sleep(600)

loader = torch.utils.data.DataLoader(Stuck(), batch_size=None, num_workers=2,
                                     worker_init_fn=worker_init() if sys.argv[1] == "on" else None)
it = iter(loader)   # kept: a dropped iterator shuts its workers down
pids = set()
while len(pids) < 2:
    pids.add(next(it))
print(" ".join(map(str, sorted(pids))), flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
@pytest.mark.parametrize("init", ["on", "off"])
def test_loader_workers_end_with_a_killed_parent(tmp_path, init):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    proc = subprocess.Popen([sys.executable, str(script), init], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    workers = [int(p) for p in proc.stdout.readline().split()]
    assert len(workers) == 2
    proc.kill()
    proc.wait()

    def alive(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split(")")[-1].split()[0] != "Z"
        except FileNotFoundError:
            return False
    import time
    deadline = time.time() + (10 if init == "on" else 3)   # "off": long enough to see them stay
    while time.time() < deadline and any(alive(p) for p in workers):
        time.sleep(0.2)
    left = [p for p in workers if alive(p)]
    for p in left:
        os.kill(p, 9)
    if init == "on":
        assert not left, "workers outlived their killed parent"
    else:   # the defect it prevents: a stuck worker outlives the parent (torch's watchdog never runs)
        assert left == workers


def test_no_thread_is_started_by_a_progress_bar_before_loader_workers_fork():
    """A thread starting while DataLoader workers fork can deadlock a worker (seen as a hung suite):
    tqdm's monitor thread, started by the first bar, is off in frpose."""
    code = ("import threading, frpose_cli, tqdm\n"
            "before = threading.active_count()\n"
            "list(tqdm.tqdm(range(3), mininterval=0))\n"
            "print(threading.active_count() - before, tqdm.tqdm.monitor is None)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "True"], out.stdout


PREEMPT_SCRIPT = """
import os, signal, sys, torch
from frpose_cli.training.preempt import Preempted
from frpose_cli.training.train import TrainConfig, run
def signal_rank_1(epoch, step, model):   # the scheduler's signal reaches one rank only
    if (epoch, step) == (0, 0) and torch.distributed.get_rank() == 1:
        os.kill(os.getpid(), signal.SIGTERM)
try:
    run(TrainConfig(**{cfg!r}), on_step=signal_rank_1)
except Preempted as e:
    print(f"rank {{os.environ['RANK']}}: {{e}}", flush=True)
    sys.exit(e.exit_code)
"""


@pytest.mark.slow
def test_under_torchrun_a_signal_to_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    data = json.loads((COCO_DIR / "annotations" / "person_keypoints_train2017.json").read_text())
    data["annotations"] = [a for a in data["annotations"] if a["num_keypoints"] > 0 and not a["iscrowd"]][:8]
    ann = tmp_path / "train.json"
    ann.write_text(json.dumps(data))        # 8 people: 2 steps of 2×2 per epoch
    script = tmp_path / "preempt.py"
    script.write_text(textwrap.dedent(PREEMPT_SCRIPT.format(cfg=config(ann, tmp_path / "run", 2, False))))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(free_port()), str(script)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode != 0
    for rank, name in ((0, "a signal on another rank"), (1, "SIGTERM")):
        assert f"rank {rank}: stopped by {name} at epoch 1, step 1 of 2" in res.stdout, res.stdout + res.stderr[-2000:]
    assert load_checkpoint(tmp_path / "run" / "last.pt")["partial"]["step"] == 1
