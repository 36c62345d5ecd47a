"""The one weights loader: checkpoints as they really are (mmpose 1.x with numpy metadata, pickled
code refused), channel order per layout, the zoo's table, and `--init` warm starts."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from frpose_cli.weights import zoo
from frpose_cli.cards import load_card
from frpose_cli.data.codecs import codec_for_card
from frpose_cli.data.dataset import CocoPoseDataset
from frpose_cli.errors import FrposeError
from frpose_cli.weights.init_weights import init_from
from frpose_cli.inference.predict import PosePredictor
from frpose_cli.load import load_pose_model
from helpers import reference_sbn, resnet_names

SIZE = (64, 64)
COCO = Path(__file__).parent / "data" / "coco"


def mmpose_checkpoint(model: nn.Module) -> dict:
    """mmpose 1.x layout: ``backbone.*``/``head.*`` weights beside ``meta`` holding numpy arrays."""
    state = {}
    for key, value in resnet_names(model).items():
        head = key.startswith(("deconv_layers.", "final_layer."))
        state[("head." if head else "backbone.") + key] = value
    meta = {"mmengine_version": "0.7.1", "seed": np.int64(21), "epoch": 210,
            "dataset_meta": {"dataset_name": "coco", "num_keypoints": 17,
                             "sigmas": np.linspace(0.025, 0.107, 17).astype(np.float32),
                             "keypoint_colors": np.zeros((17, 3), np.uint8),
                             "flip_indices": [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]}}
    return {"meta": meta, "state_dict": state}


@pytest.fixture(scope="module")
def reference():
    return reference_sbn()


def test_mmpose_1x_checkpoint_with_numpy_meta_loads_and_matches_the_reference(reference, tmp_path):
    path = tmp_path / "td-hm_res18_coco-64x64.pth"
    torch.save(mmpose_checkpoint(reference), path)
    model = load_pose_model(path, input_size=SIZE, setup="eager")
    assert model.card.name == "sbn-r18" and model.card.channel_order == "rgb"
    x = torch.randn(2, 3, *SIZE)
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x), atol=1e-6)
    fused = load_pose_model(path, input_size=SIZE, backend="torch")   # BN folded, channels_last
    with torch.no_grad():
        assert torch.allclose(fused(x), reference(x), atol=1e-4)


class SystemPayload:
    """Unpickling this would run a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("zip_format", [True, False])
def test_a_code_executing_pickle_is_refused_naming_the_global(reference, tmp_path, zip_format):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pth"
    ckpt = mmpose_checkpoint(reference)
    ckpt["meta"]["hook"] = SystemPayload(marker)
    torch.save(ckpt, path, _use_new_zipfile_serialization=zip_format)
    global_name = f"{os.system.__module__}.system"   # posix.system on Linux
    with pytest.raises(FrposeError, match=f"refused to load: it needs the Python global {global_name}") as err:
        load_pose_model(path, input_size=SIZE)
    msg = str(err.value)
    assert "\n" not in msg and "weights_only=False" not in msg and "runs code" in msg
    assert not marker.exists(), "the payload ran"


def test_original_sbn_files_are_fed_bgr(reference, tmp_path):
    """SBN trained on OpenCV's BGR images: the loaded model must see BGR where the reference did."""
    path = tmp_path / "pose_resnet_18_64x64.pth"
    torch.save(resnet_names(reference), path)   # bare state dict in the original names
    predictor = PosePredictor(str(path), input_size=SIZE, device="cpu", flip=False, backend="torch")
    assert predictor.card.channel_order == "bgr"
    rng = np.random.default_rng(0)
    crops_rgb = rng.integers(0, 256, (2, *SIZE, 3), dtype=np.uint8)
    crops_rgb[..., 1:] //= 8   # strongly red: RGB and BGR inputs differ a lot
    got = predictor.heatmaps(crops_rgb)
    bgr = torch.from_numpy(crops_rgb[..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        want = reference((bgr - mean) / std)
    with torch.no_grad():   # what the same weights give on RGB, for scale
        rgb_out = reference((bgr.flip(1) - mean) / std)
    wrong = float((got - rgb_out).abs().max())
    assert float((got - want).abs().max()) < 1e-4 < wrong / 100, wrong


def test_datasets_feed_the_cards_channel_order():
    card = load_card("sbn-r18", SIZE)
    codec = codec_for_card(card)
    ann, images = COCO / "annotations" / "person_keypoints_val2017.json", COCO / "val2017"
    rgb = CocoPoseDataset(ann, images, card, codec, train=False)[0]["image"]
    bgr = CocoPoseDataset(ann, images, card.with_channel_order("bgr"), codec, train=False)[0]["image"]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    # undo the per-index normalisation: the raw pixels of one are the other's, channels reversed
    assert torch.allclose((bgr * std + mean), (rgb * std + mean).flip(0), atol=1e-5)


def test_zoo_names_torchvisions_own_files_and_carries_hashes():
    from torchvision.models import detection
    assert zoo.DETECTOR.url == detection.FasterRCNN_ResNet50_FPN_Weights.COCO_V1.url
    for depth in (18, 34, 50, 101, 152):
        assert zoo.imagenet_entry(depth).url == getattr(torchvision.models, f"ResNet{depth}_Weights").IMAGENET1K_V1.url
    from frpose_cli.weights.download import hash_prefix_in_name
    for entry in zoo.ENTRIES.values():
        assert hash_prefix_in_name(entry.file_name), entry.name
        if entry.kind == "pose":
            card = load_card(entry.card, entry.input_size)
            assert f"{card.input_size[0]}x{card.input_size[1]}" in entry.file_name
            assert f"res{card.arch.depth}_" in entry.file_name and entry.ap > 70


def test_init_copies_exactly_the_shared_tensors(reference, tmp_path):
    path = tmp_path / "sbn18.pth"
    torch.save(mmpose_checkpoint(reference), path)
    card = load_card("frpose-r18", SIZE)
    torch.manual_seed(1)
    model = card.build_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    line, record = init_from(model, str(path))
    after = model.state_dict()
    source = resnet_names(reference)
    # Expected, written from the two architectures: the encoder and decoders 1-3 (deconv + BN).
    shared = [k for k in after if k.startswith(("stem.", "stages.", "decoders.0.", "decoders.1.", "decoders.2."))]
    assert record["copied"] == len(shared) and f"init: {len(shared)} tensors" in line
    assert record["kept"] == len(after) - len(shared)
    renames = {"stem.0.": "conv1.", "stem.1.": "bn1."}
    renames.update({f"stages.{i}.": f"layer{i + 1}." for i in range(4)})
    for key in after:
        if key in shared:
            if key.startswith("decoders."):
                i, j, rest = key.split(".", 3)[1:]
                src = f"deconv_layers.{3 * int(i) + int(j)}.{rest}"
            else:
                prefix = next(p for p in renames if key.startswith(p))
                src = renames[prefix] + key[len(prefix):]
            assert torch.equal(after[key], source[src]), key
        else:
            assert torch.equal(after[key], before[key]), key
    assert record["copied_by_role"]["encoder"] == len([k for k in shared if not k.startswith("decoders.")])
    with pytest.raises(FrposeError, match="encoder does not fit ResNet-50"):
        init_from(load_card("frpose-r50", SIZE).build_model(), str(path))


def test_train_init_is_reported_and_recorded(reference, tmp_path):
    from test_train import config, small_split
    from frpose_cli.weights.checkpoint import load_checkpoint
    from frpose_cli.training.train import run

    path = tmp_path / "sbn18.pth"
    torch.save(mmpose_checkpoint(reference), path)
    data = {"train_ann": small_split(tmp_path, "train", 2), "train_images": str(COCO / "train2017"),
            "val_ann": None, "val_images": None}
    summary = run(config(data, tmp_path / "run", model="frpose-r18", init=str(path), batch_size=2))
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["init"] == summary["init"] and ckpt["init"]["copied"] > 100
    assert ckpt["train_config"]["init"] == str(path)
