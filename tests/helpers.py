"""Shared test helpers (imported as ``from helpers import …``; tests/ is on sys.path under pytest)."""
import sys

import pytest
import torch
import torchvision
from torch import nn

from frpose_cli.cli import app as cli


def run_cli(args, capsys):
    """Run `frpose ...` in-process as the console script does; returns (exit code, stdout, stderr)."""
    old = sys.argv
    sys.argv = ["frpose", *map(str, args)]
    try:
        with pytest.raises(SystemExit) as exc:
            cli.main()
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return exc.value.code or 0, out.out, out.err


def randomised(model, seed=0):
    """Random BN statistics, a large-weight head and active GCBs, so heatmaps are far from flat
    and every part of the network matters to the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
        model.final_layer.weight.normal_(0, 0.1, generator=g)
        for gcb in [*getattr(model, "encoder_gcbs", []), *getattr(model, "decoder_gcbs", [])]:
            gcb.transform[-1].weight.normal_(0, 0.01, generator=g)   # zero-initialised: make them count
    return model.eval()


def randomised_all(model, seed=0):
    """Every tensor random (BN statistics too), so a wrongly mapped key cannot go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif t.is_floating_point():
                t.copy_((torch.rand(t.shape, generator=g) - 0.5) * 0.2)
    return model.eval()


def reference_sbn(depth=18, keypoints=17, seed=0) -> nn.Module:
    """Simple Baselines written independently of frpose: torchvision ResNet + 3 deconv-BN-ReLU + 1x1 conv,
    every tensor random (BN statistics too) so that a wrongly mapped key cannot go unnoticed, and the
    output sensitive to the input."""
    torch.manual_seed(seed)
    resnet = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    backbone = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool,
                             resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4)
    layers, c = [], resnet.fc.in_features
    for _ in range(3):
        layers += [nn.ConvTranspose2d(c, 256, 4, 2, 1, bias=False), nn.BatchNorm2d(256), nn.ReLU(inplace=True)]
        c = 256
    model = nn.Sequential()
    model.backbone, model.deconv_layers, model.final_layer = backbone, nn.Sequential(*layers), nn.Conv2d(256, keypoints, 1)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():   # convolutions keep torch's random init; BN gets random affine and statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                for t, lo, hi in ((m.weight, 0.5, 1.5), (m.bias, -0.1, 0.1), (m.running_mean, -0.1, 0.1),
                                  (m.running_var, 0.5, 1.5)):
                    t.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)
    return model.eval()


def resnet_names(model: nn.Module) -> dict:
    """The reference's tensors under torchvision/SBN names (conv1, bn1, layer1-4, deconv_layers, final_layer)."""
    stem = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
    out = {}
    for key, value in model.state_dict().items():
        part, rest = key.split(".", 1)
        if part == "backbone":
            index, rest = rest.split(".", 1)
            key = f"{stem[index]}.{rest}"
        out[key] = value.clone()
    return out


def confident_random_mobilenet(tmp_path, min_size=256, max_size=427):
    """Torchvision's MobileNetV3 Faster R-CNN with random weights whose box head is sure of 'person':
    boxes a random network proposes, but a stable number of them (nothing is downloaded)."""
    from frpose_cli.inference.detector_archs import ARCHS
    torch.manual_seed(0)
    model = ARCHS["fasterrcnn-mobilenet-v3"][0](91, min_size=min_size, max_size=max_size)
    with torch.no_grad():
        head = model.roi_heads.box_predictor
        head.cls_score.weight.mul_(0.1)
        head.cls_score.bias.zero_()
        head.cls_score.bias[1] = 6.0
        head.bbox_pred.weight.mul_(0.1)
    path = tmp_path / "mobilenet.pth"
    torch.save(model.state_dict(), path)
    return path
