"""Published checkpoints (Simple Baselines, mmpose) load through --weights and give the source's outputs."""
import pytest
import torch
import torchvision

from frpose_cli.cards import load_card
from frpose_cli.errors import FrposeError
from frpose_cli.weights.published import detect_layout, frpose_key_to_sbn, infer_depth, published_to_sbn
from frpose_cli.load import load_pose_model
from frpose_cli.weights.init_weights import apply_pretrained
from helpers import randomised_all

SIZE = (64, 64)


def sbn_names(model) -> dict:
    """PoseNet keys → the original Simple Baselines names (written independently of frpose_cli.weights.published)."""
    out = {}
    for key, value in model.state_dict().items():
        parts = key.split(".")
        if parts[0] == "stem":
            key = {"0": "conv1", "1": "bn1"}[parts[1]] + "." + ".".join(parts[2:])
        elif parts[0] == "stages":
            key = f"layer{int(parts[1]) + 1}." + ".".join(parts[2:])
        elif parts[0] == "decoders":
            key = f"deconv_layers.{3 * int(parts[1]) + int(parts[2])}." + ".".join(parts[3:])
        out[key] = value.clone()
    return out


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(0)
    card = load_card("sbn-r18", SIZE)
    model = randomised_all(card.build_model())
    x = torch.randn(2, 3, *SIZE)
    with torch.no_grad():
        ref = model(x)
    return model, x, ref


def layouts(model) -> dict:
    sbn = sbn_names(model)
    head = ("deconv_layers.", "final_layer.")
    return {
        "sbn_bare": sbn,
        "sbn_training": {"epoch": 140, "model": "pose_resnet_18", "perf": 0.7,
                         "state_dict": {f"module.{k}": v for k, v in sbn.items()},
                         "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0, 1]}]}},
        "sbn_pre041": {k: v for k, v in sbn.items() if not k.endswith("num_batches_tracked")},
        "mmpose": {"meta": {"mmpose_version": "1.3.1", "epoch": 210},
                   "state_dict": {("head." if k.startswith(head) else "backbone.") + k: v for k, v in sbn.items()}},
        "mmpose_0x": {"meta": {"mmpose_version": "0.29.0"},
                      "state_dict": {("keypoint_head." if k.startswith(head) else "backbone.") + k: v
                                     for k, v in sbn.items()}},
    }


@pytest.mark.parametrize("layout", ["sbn_bare", "sbn_training", "sbn_pre041", "mmpose", "mmpose_0x"])
def test_published_layouts_give_the_source_models_outputs(source, layout, tmp_path):
    model, x, ref = source
    path = tmp_path / f"{layout}.pth"
    torch.save(layouts(model)[layout], path)
    # No --model: the card is inferred from the encoder depth; --input-size picks the size.
    loaded = load_pose_model(path, input_size=SIZE, backend="torch", setup="eager")
    assert loaded.card.name == "sbn-r18" and loaded.card.input_size == SIZE
    with torch.no_grad():
        out = loaded(x)
    assert torch.equal(out, ref)


def test_layout_detection_and_key_mapping(source):
    model, _, _ = source
    sets = layouts(model)
    assert detect_layout(model.state_dict()) == "frpose"
    for name, expected in (("sbn_bare", "sbn"), ("mmpose", "mmpose")):
        assert detect_layout(sets[name].get("state_dict", sets[name])) == expected
    layout, state = published_to_sbn(sets["sbn_training"]["state_dict"])
    assert layout == "sbn" and "deconv_layers.7.running_var" in state and "final_layer.bias" in state
    assert infer_depth(state) == 18
    assert frpose_key_to_sbn("decoders.2.1.weight") == "deconv_layers.7.weight"
    assert frpose_key_to_sbn("stages.3.1.conv2.weight") == "layer4.1.conv2.weight"
    resnet = torchvision.models.resnet18(weights=None).state_dict()
    assert detect_layout(resnet) == "resnet"


def test_other_architecture_names_missing_and_unexpected_keys(tmp_path):
    r34 = sbn_names(load_card("sbn-r34", SIZE).build_model())
    torch.save(r34, tmp_path / "r34.pth")
    with pytest.raises(FrposeError) as e:
        load_pose_model(tmp_path / "r34.pth", model_name="sbn-r18", input_size=SIZE)
    msg = str(e.value)
    assert "unexpected keys: layer1.2." in msg and "try sbn-r34" in msg and "\n" not in msg

    r18 = sbn_names(load_card("sbn-r18", SIZE).build_model())
    del r18["deconv_layers.4.weight"]
    r18["deconv_layers.9.weight"] = torch.zeros(3)
    torch.save(r18, tmp_path / "odd.pth")
    with pytest.raises(FrposeError) as e:
        load_pose_model(tmp_path / "odd.pth", model_name="sbn-r18", input_size=SIZE)
    msg = str(e.value)
    assert "1 missing keys: deconv_layers.4.weight" in msg and "1 unexpected keys: deconv_layers.9.weight" in msg

    r18 = sbn_names(load_card("sbn-r18", SIZE).build_model())
    r18["final_layer.weight"] = torch.zeros(16, 256, 1, 1)   # 16 joints, not 17
    torch.save(r18, tmp_path / "mpii.pth")
    with pytest.raises(FrposeError, match="shape mismatches: final_layer.weight"):
        load_pose_model(tmp_path / "mpii.pth", input_size=SIZE)


def test_published_files_fit_only_sbn_cards_and_resnets_point_to_pretrained(source, tmp_path):
    model, _, _ = source
    torch.save(sbn_names(model), tmp_path / "sbn.pth")
    with pytest.raises(FrposeError, match="fits only the sbn-\\* cards"):
        load_pose_model(tmp_path / "sbn.pth", model_name="frpose-r18", input_size=SIZE)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "resnet18.pth")
    with pytest.raises(FrposeError, match="--pretrained FILE"):
        load_pose_model(tmp_path / "resnet18.pth")
    torch.save({"encoder.w": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(FrposeError, match="unrecognised key layout"):
        load_pose_model(tmp_path / "other.pth")


class Payload:   # a class: unpickling it would need code, which weights_only=True refuses
    def __reduce__(self):
        return (print, ("code ran",))


def test_checkpoint_needing_pickled_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "x": Payload()}, path)
    with pytest.raises(FrposeError, match="refused to load: it needs the Python global builtins.print"):
        load_pose_model(path)
    assert "code ran" not in capsys.readouterr().out


def test_torchvision_resnet_initialises_an_fr_card_encoder(tmp_path):
    resnet = torchvision.models.resnet18(weights=None)
    torch.save(resnet.state_dict(), tmp_path / "r18.pth")
    model = load_card("frpose-r18", SIZE).build_model()
    assert "tensors" in apply_pretrained(model, str(tmp_path / "r18.pth"))
    assert torch.equal(model.stages[3][1].conv2.weight, resnet.layer4[1].conv2.weight)
    assert torch.equal(model.stem[1].running_var, resnet.bn1.running_var)
