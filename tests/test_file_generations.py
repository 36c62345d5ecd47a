"""Every generation of published pose checkpoint loads with no code run (issue 19): mmengine 0.1.x
(the zoo's September 2022 files: message hub, schedulers, preprocessing buffers), mmengine 1.x,
mmcv/mmpose 0.x, the original Simple Baselines legacy files; each gives the reference model's
heatmaps, and `frpose models --inspect` names its layout and what it ignores."""
import copy
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from frpose_cli.errors import FrposeError
from frpose_cli.load import load_pose_model
from frpose_cli.weights.checkpoint import read_checkpoint_file, scan_globals
from frpose_cli.weights.inert import InertObject
from frpose_cli.weights.inspection import inspect_weights
from helpers import reference_sbn, resnet_names, run_cli

DATA = Path(__file__).parent / "data" / "mmengine-0.1.0"
MMENGINE_010 = DATA / "td-hm_toy_mmengine010-73c5d24f_20261204.pth"   # real Runner + publish_model.py
SIZE = (64, 48)
# What an mmpose 1.x config of these models says (width first); mmengine 0.1.x kept it in meta['cfg'].
MMPOSE_CFG = ("codec = dict(type='MSRAHeatmap', input_size=(48, 64), heatmap_size=(12, 16), sigma=2)\n"
              "model = dict(type='TopdownPoseEstimator', data_preprocessor=dict(type='PoseDataPreprocessor', "
              "mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True))\n")


@pytest.fixture(scope="module")
def reference():
    return reference_sbn()


def mmpose_names(model, head: str) -> dict:
    return {(head if k.startswith(("deconv_layers.", "final_layer.")) else "backbone.") + k: v
            for k, v in resnet_names(model).items()}


def _under_real_names(obj, classes: dict):
    """``obj`` with each inert placeholder turned back into an instance of a class named as the
    original (module path included), so that pickle writes the original's GLOBAL."""
    if isinstance(obj, InertObject):
        module, name = obj.original.rsplit(".", 1)
        cls = classes.setdefault(obj.original, type(name, (), {"__module__": module, "__qualname__": name}))
        new = object.__new__(cls)
        new.__dict__.update(vars(obj))
        return new
    if isinstance(obj, dict):
        new = copy.copy(obj)
        for k, v in obj.items():
            new[k] = _under_real_names(v, classes)
        return new
    if isinstance(obj, (list, tuple)):
        return type(obj)(_under_real_names(v, classes) for v in obj)
    return obj


def save_under_real_names(obj, path, monkeypatch) -> None:
    classes: dict = {}
    obj = _under_real_names(obj, classes)
    for full, cls in classes.items():   # pickle checks the class is importable under its name
        parts = full.split(".")[:-1]
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            module = sys.modules.get(name) if name in sys.modules and not name.startswith("mmengine") else None
            if module is None:
                module = types.ModuleType(name)
                monkeypatch.setitem(sys.modules, name, module)
        setattr(sys.modules[".".join(parts)], cls.__qualname__, cls)
    torch.save(obj, path)
    for full in classes:
        for name in [n for n in list(sys.modules) if n == full.split(".")[0] or n.startswith(full.split(".")[0] + ".")]:
            monkeypatch.delitem(sys.modules, name)


def mmengine_010_file(model, path, monkeypatch, mean=None) -> Path:
    """The real mmengine 0.1.0 bookkeeping (vendored) around ``model``'s weights, as the zoo's files."""
    real = read_checkpoint_file(MMENGINE_010)
    buffers = {k: v for k, v in real["state_dict"].items() if k.startswith("data_preprocessor.")}
    if mean is not None:
        buffers["data_preprocessor.mean"] = torch.tensor(mean).view(3, 1, 1)
    ckpt = dict(real, state_dict={**buffers, **mmpose_names(model, "head.")},
                meta=dict(real["meta"], cfg=MMPOSE_CFG))
    save_under_real_names(ckpt, path, monkeypatch)
    return path


def generation(name: str, model, path: Path, monkeypatch) -> Path:
    sbn = resnet_names(model)
    if name == "mmengine-0.1":
        return mmengine_010_file(model, path, monkeypatch)
    if name == "mmengine-1.x":   # publish_model.py of 2023 keeps meta + state_dict
        torch.save({"meta": {"mmengine_version": "0.7.1", "epoch": 210, "cfg": MMPOSE_CFG,
                             "dataset_meta": {"dataset_name": "coco", "sigmas": np.full(17, 0.05, np.float32),
                                              "flip_indices": list(range(17))}},
                    "state_dict": mmpose_names(model, "head.")}, path)
    elif name == "mmpose-0.x":   # mmcv runner: meta of strings, keypoint_head.*
        torch.save({"meta": {"mmcv_version": "1.3.9", "time": "Tue Jul 27 12:02:25 2021", "seed": 0,
                             "env_info": "sys.platform: linux\nPython: 3.7.10", "exp_name": "res18_coco.py",
                             "config": "data_cfg = dict(\n    image_size=[48, 64],\n    heatmap_size=[12, 16])\n"},
                    "state_dict": mmpose_names(model, "keypoint_head.")}, path)
    elif name == "sbn-training":   # the original code's checkpoint.pth.tar, DataParallel-wrapped
        torch.save({"epoch": 140, "model": "pose_resnet", "perf": 0.704,
                    "state_dict": {f"module.{k}": v for k, v in sbn.items()},
                    "optimizer": {"state": {}, "param_groups": [{"lr": 1e-5, "params": [0]}]}},
                   path, _use_new_zipfile_serialization=False)
    elif name == "sbn-final":      # final_state.pth.tar: the bare state dict, PyTorch-0.4-era format
        torch.save({k: v for k, v in sbn.items() if not k.endswith("num_batches_tracked")}, path,
                   _use_new_zipfile_serialization=False)
    return path


EXPECT = {   # layout named by --inspect, parts it must say it ignores, channel order
    "mmengine-0.1": ("mmpose SimpleBaseline", ["message_hub", "param_schedulers", "data_preprocessor.mean"], "rgb"),
    "mmengine-1.x": ("mmpose SimpleBaseline", ["meta: ignored"], "rgb"),
    "mmpose-0.x": ("mmpose SimpleBaseline (mmpose 0.x keypoint_head.*)", ["meta: ignored"], "rgb"),
    "sbn-training": ("Simple Baselines (original)", ["optimizer: ignored", "perf: ignored"], "bgr"),
    "sbn-final": ("Simple Baselines (original)", ["a bare state dict"], "bgr"),
}


@pytest.mark.parametrize("name", list(EXPECT))
def test_each_file_generation_loads_and_gives_the_reference_heatmaps(reference, name, tmp_path, monkeypatch, capsys):
    path = generation(name, reference, tmp_path / f"{name}.pth", monkeypatch)
    recorded = name.startswith(("mmengine", "mmpose"))   # their configs say 64x48
    given = None if recorded else (64, 64)   # a size given by hand follows --input-size's rule (multiples of 32)
    model = load_pose_model(path, input_size=given, setup="eager")
    assert model.card.name == "sbn-r18" and tuple(model.card.input_size) == (given or SIZE)
    assert model.card.channel_order == EXPECT[name][2]
    x = torch.randn(2, 3, *SIZE)
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x), atol=1e-6)
    assert "warning" not in capsys.readouterr().err   # the preprocessing buffers agree with the card

    text = inspect_weights(str(path)).text()
    layout, ignored, order = EXPECT[name]
    assert f"layout         {layout}\n" in text + "\n" and "sbn-r18: fits" in text
    assert all(part in text for part in ignored), text
    assert f"channel order  {order}" in text
    if recorded:
        assert "input size     64x48 (recorded in meta)" in text
    if name == "mmengine-0.1":
        assert "inert          mmengine.logging.history_buffer.HistoryBuffer" in text
        assert "data_preprocessor mean/std agree with sbn-r18" in text


def test_the_real_mmengine_010_file_is_read_as_data_without_mmengine(tmp_path):
    assert "mmengine" not in sys.modules
    ckpt = read_checkpoint_file(MMENGINE_010)
    assert set(ckpt) == {"meta", "state_dict", "message_hub", "param_schedulers"}
    lr = ckpt["message_hub"]["log_scalars"]["train/lr"]
    assert lr.original == "mmengine.logging.history_buffer.HistoryBuffer"
    assert isinstance(lr._log_history, np.ndarray) and len(lr._log_history) == len(lr._count_history) == 12
    assert lr.max_length == 1000000 and ckpt["meta"]["mmengine_version"] == "0.1.0"
    assert [s["param_name"] for s in ckpt["param_schedulers"]] == ["lr", "lr"]
    assert torch.allclose(ckpt["state_dict"]["data_preprocessor.std"].flatten(), torch.tensor([58.395, 57.12, 57.375]))
    assert "mmengine" not in sys.modules
    # The composed test files pickle the bookkeeping exactly as mmengine did: the same globals.
    assert set(scan_globals(MMENGINE_010).names) >= {"mmengine.logging.history_buffer.HistoryBuffer",
                                                     "numpy.core.multiarray._reconstruct", "collections.Counter"}


def test_configdict_and_namespace_pickled_by_real_mmengine_load_as_plain_data():
    meta = read_checkpoint_file(DATA / "meta_configdict_namespace.pth")
    assert meta["cfg_dict"]["codec"]["input_size"] == (192, 256)
    assert vars(meta["args"]) == {"config": "td-hm_res50.py", "seed": 0, "launcher": "none"}


def test_preprocessing_mean_in_the_other_channel_order_is_reported(reference, tmp_path, monkeypatch, capsys):
    path = mmengine_010_file(reference, tmp_path / "bgr-mean.pth", monkeypatch, mean=[103.53, 116.28, 123.675])
    model = load_pose_model(path, setup="eager")
    assert model.card.name == "sbn-r18"
    err = capsys.readouterr().err
    assert err.count("frpose: warning:") == 1 and "in reversed channel order" in err
    assert "in reversed channel order" in inspect_weights(str(path)).text()


class Thing:   # a plain class of some package: not known to be data, so refused (nothing instantiated)
    ran = False

    def __setstate__(self, state):
        Thing.ran = True


def test_an_unknown_class_is_refused_naming_it_and_inspect_still_describes_the_file(reference, tmp_path, capsys):
    path = tmp_path / "other.pth"
    torch.save({"meta": {"x": Thing()}, "state_dict": mmpose_names(reference, "head.")}, path)
    with pytest.raises(FrposeError, match=f"needs the Python global {__name__}.Thing, which frpose does not") as e:
        load_pose_model(path, input_size=(64, 64))
    assert "weights_only" not in str(e.value) and not Thing.ran
    code, out, _ = run_cli(["models", "--inspect", str(path)], capsys)
    assert code == 0 and f"refused    {__name__}.Thing (not known to be plain data)" in out


def test_inspect_on_an_os_system_payload_names_it_and_runs_nothing(reference, tmp_path, capsys):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    path = tmp_path / "evil.pth"
    torch.save({"meta": {"hook": Payload()}, "state_dict": mmpose_names(reference, "head.")}, path)
    code, out, _ = run_cli(["models", "--inspect", str(path)], capsys)
    assert code == 0 and "posix.system (runs code when unpickled)" in out and not marker.exists()
    image = Path(__file__).parent / "data" / "coco" / "val2017" / "000000000785.jpg"
    code, _, err = run_cli(["predict", str(image), "--weights", str(path), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "runs code" in err and "weights_only" not in err and not marker.exists()
