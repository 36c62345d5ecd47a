"""`frpose train` core: checkpoints, logs, exact resume, encoder weights, loss."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch
import torchvision

from frpose_cli.cards import load_card
from frpose_cli.weights.checkpoint import load_checkpoint
from frpose_cli.errors import FrposeError
from frpose_cli.training.losses import JointsMSELoss
from frpose_cli.training.train import TrainConfig, run
from frpose_cli.weights.init_weights import apply_pretrained
from frpose_cli.weights.loader import load_network, resolve_weights

COCO_DIR = Path(__file__).parent / "data" / "coco"


def small_split(tmp_path, split, keep):
    """The tests/data split with only the first ``keep`` usable annotations (fast runs)."""
    data = json.loads((COCO_DIR / "annotations" / f"person_keypoints_{split}2017.json").read_text())
    good = [a for a in data["annotations"] if a["num_keypoints"] > 0 and not a["iscrowd"]][:keep]
    data["annotations"] = good
    path = tmp_path / f"{split}.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ann")
    return {"train_ann": small_split(tmp, "train", 6), "train_images": str(COCO_DIR / "train2017"),
            "val_ann": small_split(tmp, "val", 3), "val_images": str(COCO_DIR / "val2017")}


def config(data, out, **kw):
    base = dict(model="sbn-r18", input_size=[64, 32], epochs=1, batch_size=3, workers=0, device="cpu",
                pretrained="none", out=str(out), seed=1, quiet=True, **data)
    base.update(kw)
    return TrainConfig(**base)


def test_train_leaves_a_self_describing_checkpoint_and_logs(data, tmp_path):
    summary = run(config(data, tmp_path / "run", model="frpose-r18", targets="device"))
    run_dir = tmp_path / "run"
    assert summary["start_epoch"] == 0 and summary["train_loss"] > 0 and summary["val_loss"] > 0
    ckpt = load_checkpoint(run_dir / "last.pt")
    assert ckpt["epoch"] == 1 and ckpt["codec"] == {"name": "sbn", "sigma": 0.5 * 8 / 2, "stride": 1}
    loaded = load_network(resolve_weights(run_dir / "last.pt"))          # needs nothing but the file
    model, card = loaded.net, loaded.card
    assert card.name == "frpose-r18" and card.input_size == (64, 32)
    assert card.keypoints.names[5] == "left_shoulder" and (5, 6) in card.keypoints.flip_pairs
    assert model(torch.zeros(1, 3, 64, 32)).shape == (1, 17, 64, 32)
    assert (run_dir / "best.pt").is_file()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    epoch = [r for r in records if r["kind"] == "epoch"]
    assert len(epoch) == 1 and epoch[0]["val_loss"] == pytest.approx(summary["val_loss"])
    # Validation AP (GT boxes, flip test) is that of the saved weights, and picks best.pt.
    from frpose_cli.evaluation.evaluate import evaluate_model
    again = evaluate_model(model, card, data["val_ann"], data["val_images"], boxes=None, flip=True, workers=0)
    assert 0 <= epoch[0]["val_AP"] <= 1 and epoch[0]["val_AP"] == pytest.approx(again["AP"])
    assert ckpt["best"] == {"metric": "AP", "value": epoch[0]["val_AP"], "epoch": 1}
    assert any(r["kind"] == "step" for r in records)
    png = cv2.imread(str(run_dir / "training_curve.png"))
    assert png is not None and png.shape[2] == 3 and png.std() > 0
    with pytest.raises(FrposeError, match="already holds a run"):
        run(config(data, run_dir))


class Interrupt(Exception):
    pass


def test_killed_mid_epoch_and_resumed_gives_the_same_weights(data, tmp_path):
    straight = run(config(data, tmp_path / "a", epochs=2, workers=1, keep_last=True))   # its optimiser state too

    def kill(epoch, step, model):   # dies inside epoch 2, after its first optimiser step
        if epoch == 1 and step == 0:
            raise Interrupt
    with pytest.raises(Interrupt):
        run(config(data, tmp_path / "b", epochs=2, workers=1), on_step=kill)
    assert load_checkpoint(tmp_path / "b" / "last.pt")["epoch"] == 1
    assert "optimizer" in load_checkpoint(tmp_path / "b" / "last.pt")   # unfinished: resumable
    resumed = run(TrainConfig(resume=str(tmp_path / "b"), quiet=True, device="cpu"))
    assert resumed["start_epoch"] == 1 and resumed["train_loss"] == straight["train_loss"]
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert a["epoch"] == b["epoch"] == 2
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    # b finished without --keep-last: its last.pt holds the final weights only
    assert "optimizer" in a and not {"optimizer", "scheduler", "scaler", "rng", "partial"} & set(b)
    assert b["train_config"]["epochs"] == 2 and b["metrics"]["train_loss"] == straight["train_loss"]
    epochs = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in epochs if r["kind"] == "epoch"] == [1, 2]


def test_resume_keeps_the_runs_settings(data, tmp_path):
    run(config(data, tmp_path / "r"))
    with pytest.raises(FrposeError, match="batch-size 4 differs"):
        run(TrainConfig(resume=str(tmp_path / "r"), batch_size=4, quiet=True))
    with pytest.raises(FrposeError, match="no checkpoint"):
        run(TrainConfig(resume=str(tmp_path / "nothing"), quiet=True))


def test_pretrained_encoder_from_file_and_clear_errors(tmp_path, monkeypatch, capsys):
    model = load_card("sbn-r18").build_model()
    resnet = torchvision.models.resnet18()
    torch.save(resnet.state_dict(), tmp_path / "r18.pth")
    assert "120 tensors" in apply_pretrained(model, str(tmp_path / "r18.pth"))
    assert torch.equal(model.stages[2][0].conv1.weight, resnet.layer3[0].conv1.weight)
    assert torch.equal(model.stem[1].running_var, resnet.bn1.running_var)
    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "r34.pth")
    with pytest.raises(FrposeError, match="does not fit a ResNet-18 encoder"):
        apply_pretrained(model, str(tmp_path / "r34.pth"))
    with pytest.raises(FrposeError, match="no such file"):
        apply_pretrained(model, str(tmp_path / "missing.pth"))
    # offline and nothing cached: a clear error, and `auto` falls back with a warning
    monkeypatch.setenv("FRPOSE_HOME", str(tmp_path / "home"))
    with pytest.raises(FrposeError, match="resnet18-f37072fd.pth is not in the cache .* downloads are off"):
        apply_pretrained(model, "imagenet")
    capsys.readouterr()
    assert apply_pretrained(model, "auto").startswith("encoder: random initialisation (--pretrained auto")
    err = capsys.readouterr().err   # the fallback is a warning like every other, through frpose_cli.errors.warn
    assert err.startswith("frpose: warning: encoder: random initialisation") and err.count("\n") == 1
    (tmp_path / "home" / "weights").mkdir(parents=True)
    torch.save(resnet.state_dict(), tmp_path / "home" / "weights" / "resnet18-f37072fd.pth")
    assert "ImageNet ResNet-18 from" in apply_pretrained(model, "auto")


def test_joints_mse_loss_matches_sbn_semantics():
    torch.manual_seed(0)
    pred, target = torch.rand(2, 4, 8, 6), torch.rand(2, 4, 8, 6)
    weight = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 0.0]])
    per_joint = [torch.nn.functional.mse_loss(pred[:, j] * weight[:, j, None, None],
                                              target[:, j] * weight[:, j, None, None]) for j in range(4)]
    expect = 0.5 * torch.stack(per_joint).mean()
    torch.testing.assert_close(JointsMSELoss()(pred, target, weight), expect)
    changed = pred.clone()
    changed[0, 1] += 5                                    # a zero-weight joint changes nothing
    torch.testing.assert_close(JointsMSELoss()(changed, target, weight), expect)
    assert JointsMSELoss(use_target_weight=False)(changed, target, weight) > expect


def test_cli_reports_bad_data_in_one_line(tmp_path):
    res = subprocess.run([sys.executable, "-m", "frpose_cli.cli.app", "train", "sbn-r18", "--data", str(tmp_path / "x")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "no such folder" in res.stderr
