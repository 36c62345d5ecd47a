"""Preemption and divergence in `frpose train` (issue 23): SIGTERM/SIGUSR1 mid-epoch save a resumable
checkpoint and `--resume` ends bit for bit where the uninterrupted run ends; a diverging loss stops
the run in one line and leaves the last good last.pt."""
import json
import os
import signal
from pathlib import Path

import pytest
import torch

from frpose_cli.cards import ModelCard
from frpose_cli.training.preempt import EXIT_PREEMPTED, Diverged, Preempted
from frpose_cli.training.train import TrainConfig, run
from frpose_cli.weights.checkpoint import load_checkpoint
from helpers import run_cli

COCO = Path(__file__).parent / "data" / "coco"


@pytest.fixture(scope="module")
def train_ann(tmp_path_factory):
    data = json.loads((COCO / "annotations" / "person_keypoints_train2017.json").read_text())
    data["annotations"] = [a for a in data["annotations"] if a["num_keypoints"] > 0 and not a["iscrowd"]][:8]
    path = tmp_path_factory.mktemp("ann") / "train.json"
    path.write_text(json.dumps(data))
    return str(path)


def config(train_ann, out, **kw):
    base = dict(model="frpose-r18", input_size=[64, 32], epochs=2, batch_size=2, workers=0, device="cpu",
                pretrained="none", out=str(out), seed=3, quiet=True, train_ann=train_ann,
                train_images=str(COCO / "train2017"))
    return TrainConfig(**{**base, **kw})


def test_sigterm_mid_epoch_then_resume_equals_the_uninterrupted_run(train_ann, tmp_path):
    straight = run(config(train_ann, tmp_path / "a", keep_last=True))   # both keep the optimiser state to compare

    def preempt(epoch, step, model):   # the scheduler's SIGTERM arrives during step 2 of epoch 1
        if (epoch, step) == (0, 1):
            os.kill(os.getpid(), signal.SIGTERM)
    with pytest.raises(Preempted, match="stopped by SIGTERM at epoch 1, step 2 of 4") as e:
        run(config(train_ann, tmp_path / "b", keep_last=True), on_step=preempt)
    assert e.value.exit_code == EXIT_PREEMPTED
    saved = load_checkpoint(tmp_path / "b" / "last.pt")
    assert saved["epoch"] == 0 and saved["partial"]["step"] == 2
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL   # the handler is gone after the run

    resumed = run(TrainConfig(resume=str(tmp_path / "b"), quiet=True, device="cpu"))
    assert resumed["train_loss"] == straight["train_loss"]
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert a["epoch"] == b["epoch"] == 2 and "partial" not in b
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    for s_a, s_b in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(s_a["exp_avg"], s_b["exp_avg"]) and torch.equal(s_a["exp_avg_sq"], s_b["exp_avg_sq"])
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])


def test_sigusr1_through_the_cli_exits_with_the_documented_code(train_ann, tmp_path, capsys, monkeypatch):
    from frpose_cli.training import losses
    calls = []
    forward = losses.JointsMSELoss.forward

    def signalled(self, *args):   # SLURM's --signal=USR1@… during the second step
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGUSR1)
        return forward(self, *args)
    monkeypatch.setattr(losses.JointsMSELoss, "forward", signalled)
    code, _, err = run_cli(["train", "sbn-r18", "--input-size", "64x32", "--epochs", "2", "--batch-size", "2",
                            "--workers", "0", "--device", "cpu", "--pretrained", "none", "--train-ann", train_ann,
                            "--train-images", COCO / "train2017", "--out", tmp_path / "r"], capsys)
    assert code == EXIT_PREEMPTED, err
    assert "frpose: stopped: stopped by SIGUSR1 at epoch 1, step 2" in err and "--resume" in err
    assert load_checkpoint(tmp_path / "r" / "last.pt")["partial"]["step"] == 2


def test_a_diverging_learning_rate_stops_in_one_line_and_keeps_last_pt(train_ann, tmp_path, monkeypatch):
    recipe = ModelCard.recipe
    monkeypatch.setattr(ModelCard, "recipe", lambda self, k: 1e40 if k == "lr_factor" else recipe(self, k))
    cfg = config(train_ann, tmp_path / "d", model="sbn-r18", input_size=[64, 32], epochs=3, lr_steps=[1])
    with pytest.raises(Diverged) as e:   # epoch 2 runs at lr 1e-3 × 1e40
        run(cfg)
    message = str(e.value)
    assert "\n" not in message and message.startswith("training diverged: the loss is")
    assert "at epoch 2, step" in message and "last.pt (epoch 1) is kept" in message
    kept = load_checkpoint(tmp_path / "d" / "last.pt")
    assert kept["epoch"] == 1 and all(torch.isfinite(v).all() for v in kept["state_dict"].values()
                                      if v.is_floating_point())


def test_a_second_resume_of_a_run_still_training_is_refused(train_ann, tmp_path):
    from frpose_cli.errors import FrposeError
    run(config(train_ann, tmp_path / "r", model="sbn-r18", input_size=[64, 32], epochs=1, keep_last=True))
    seen = []

    def resume_again(epoch, step, model):   # while this resume trains, another one starts
        if not seen:
            with pytest.raises(FrposeError, match="is in use by another frpose run right now") as e:
                run(TrainConfig(resume=str(tmp_path / "r"), epochs=3, quiet=True, device="cpu"))
            seen.append(str(e.value))
    run(TrainConfig(resume=str(tmp_path / "r"), epochs=2, quiet=True, device="cpu"), on_step=resume_again)
    assert seen and load_checkpoint(tmp_path / "r" / "last.pt")["epoch"] == 2
