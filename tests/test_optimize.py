"""Inference set-ups must not change results."""
import torch

from frpose_cli.cards import load_card
from frpose_cli.runtime.optimize import fold_batchnorm, input_memory_format, prepare_for_inference


def _randomise_batchnorm(model):
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model


def test_fold_batchnorm_removes_every_bn_and_keeps_outputs():
    torch.manual_seed(0)
    for name in ("frpose-r18", "sbn-r50", "fr-sbn-gcb-skip-r34"):
        model = _randomise_batchnorm(load_card(name, (64, 64)).build_model()).eval()
        x = torch.randn(2, 3, 64, 64)
        with torch.no_grad():
            ref = model(x)
            folded = fold_batchnorm(model)
            out = folded(x)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules()), name
        assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()), "original untouched"
        assert torch.allclose(out, ref, atol=1e-4 * ref.abs().max().item()), name


def test_fused_setup_matches_eager():
    torch.manual_seed(0)
    model = _randomise_batchnorm(load_card("frpose-r18", (64, 64)).build_model()).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        fast = prepare_for_inference(model, torch.device("cpu"), "fused")
        out = fast(x.contiguous(memory_format=input_memory_format("fused")))
    assert torch.allclose(out, ref, atol=1e-4 * ref.abs().max().item())
