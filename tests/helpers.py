"""Shared test helpers (imported as ``from helpers import …``; tests/ is on sys.path under pytest)."""
import sys

import pytest
import torch

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
