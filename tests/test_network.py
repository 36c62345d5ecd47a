"""The networks of the paper: shapes, sizes, GCB identity at init, SA-MFCD and skip wiring."""
import dataclasses
import pytest
import torch

from frpose_cli.deploy.bench import count_macs, count_params
from frpose_cli.cards import list_cards, load_card
from frpose_cli.net.gcb import GlobalContextBlock


SMALL = (64, 64)


@pytest.mark.parametrize("name", list_cards())
def test_every_card_builds_runs_forward_and_backward(name):
    card = load_card(name, input_size=SMALL)
    model = card.build_model().train()
    x = torch.randn(2, 3, *SMALL)
    out = model(x)
    assert out.shape == (2, card.keypoints.num_keypoints, *card.heatmap_size)
    # FR cards predict at full input resolution, SBN cards at a quarter.
    expected_stride = 4 if name.startswith("sbn-") else 1
    assert card.stride == expected_stride
    assert card.heatmap_size == (SMALL[0] // expected_stride, SMALL[1] // expected_stride)
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert torch.isfinite(torch.stack([g.abs().sum() for g in grads])).all()
    # The encoder receives gradient (the head's tiny init must not block it).
    assert model.stem[0].weight.grad.abs().sum() > 0


def test_gcb_is_identity_at_initialisation():
    torch.manual_seed(0)
    block = GlobalContextBlock(64).eval()
    x = torch.randn(2, 64, 9, 7)
    y, sah = block(x)
    assert torch.equal(y, x)
    assert sah.shape == (2, 1, 9, 7)
    # After a training step the block is no longer the identity: the zero init is a start, not a freeze.
    torch.nn.init.normal_(block.transform[-1].weight)
    assert not torch.allclose(block(x)[0], x)


def test_gcb_context_is_attention_weighted_mean():
    torch.manual_seed(0)
    block = GlobalContextBlock(8, ratio=1.0)
    x = torch.randn(1, 8, 4, 5)
    captured = {}
    block.transform.register_forward_hook(lambda m, i, o: captured.setdefault("ctx", i[0]))
    block(x)
    w = torch.softmax(block.attention(x).flatten(1), dim=1)          # 1 × HW
    expected = (x.flatten(2) * w[:, None, :]).sum(-1)                  # 1 × C
    assert torch.allclose(captured["ctx"].flatten(1), expected, atol=1e-6)


def _decoder_outputs(model, x, perturb=None):
    outs = {}
    hooks = [d.register_forward_hook(lambda m, i, o, k=k: outs.__setitem__(k, o.clone()))
             for k, d in enumerate(model.decoders, start=1)]
    for name, fusion in model.fusions.items():
        hooks.append(fusion.register_forward_hook(
            lambda m, i, o, k=int(name): outs.__setitem__(k, o.clone())))
    if perturb is not None:
        hooks.append(perturb)
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return outs


def test_sa_mfcd_reaches_decoders_2_to_4_and_only_them():
    torch.manual_seed(0)
    model = load_card("frpose-r18", input_size=SMALL).build_model().eval()
    x = torch.randn(1, 3, *SMALL)
    base = _decoder_outputs(model, x)
    hook = model.sa_mfcd.register_forward_hook(lambda m, i, o: o + torch.randn_like(o))
    changed = _decoder_outputs(model, x, hook)
    # Decoder 1 runs before any fusion; 2-4 take the SA-MFCD map; 5 inherits the change from 4.
    assert torch.equal(base[1], changed[1])
    for d in (2, 3, 4):
        assert not torch.allclose(base[d], changed[d]), f"decoder {d} does not see SA-MFCD"
    # The refined map is resized to each decoder's resolution before fusion.
    fusion_in = {}
    hooks = [f.register_forward_hook(lambda m, i, o, k=int(n): fusion_in.__setitem__(k, i[1].shape))
             for n, f in model.fusions.items()]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    assert fusion_in == {2: (1, 256, 8, 8), 3: (1, 256, 16, 16), 4: (1, 256, 32, 32)}


def test_sa_mfcd_attention_map_gates_features():
    torch.manual_seed(0)
    model = load_card("frpose-r18", input_size=SMALL).build_model().eval()
    x = torch.randn(1, 3, *SMALL)
    # Zeroing the fused attention map zeroes the refined features handed to the decoders.
    hook = model.sa_mfcd.attention_fuse.register_forward_hook(lambda m, i, o: torch.zeros_like(o))
    seen = {}
    h2 = model.sa_mfcd.register_forward_hook(lambda m, i, o: seen.setdefault("refined", o))
    with torch.no_grad():
        model(x)
    hook.remove(), h2.remove()
    assert torch.count_nonzero(seen["refined"]) == 0


def test_vanilla_skip_feeds_same_stride_encoder_maps():
    torch.manual_seed(0)
    model = load_card("fr-sbn-gcb-skip-r34", input_size=SMALL).build_model().eval()
    x = torch.randn(1, 3, *SMALL)
    shapes = {}
    hooks = [f.register_forward_hook(lambda m, i, o, k=int(n): shapes.__setitem__(k, tuple(i[1].shape)))
             for n, f in model.fusions.items()]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    # stride 8 ← stage 2 (128 ch), stride 4 ← stage 1 (64 ch), stride 2 ← stem (64 ch)
    assert shapes == {2: (1, 128, 8, 8), 3: (1, 64, 16, 16), 4: (1, 64, 32, 32)}
    assert model.sa_mfcd is None


def test_arch_spec_rejects_inconsistent_choices():
    arch = load_card("frpose-r34").arch
    for bad in ({"depth": 35}, {"fusion": "sa_mfcd", "gcb": False}, {"decoder_widths": (256, 256, 256), "fusion": "skip"},
                {"fusion": "attention"}):
        with pytest.raises(ValueError):
            dataclasses.replace(arch, **bad)


@pytest.mark.parametrize("name,params_m", [("sbn-r50", 34.0), ("sbn-r101", 53.0), ("sbn-r152", 68.6)])
def test_sbn_parameter_counts_match_table_2(name, params_m):
    model = load_card(name).build_model()
    assert abs(count_params(model) / 1e6 - params_m) <= 0.3


def test_frpose_r34_size_and_cost_match_table_2():
    """With SA-MFCD's up-sampling learned (the cards' reading): Table 2's 33 M / 21.3 G / 48.0 G within
    3 % / 5 %; the interpolating variant stays 2.4 M and 1.2 G short (docs/design.md)."""
    model = load_card("frpose-r34").build_model()
    assert abs(count_params(model) / 1e6 - 33.0) / 33.0 <= 0.03
    assert abs(count_macs(model, (256, 192)) / 1e9 - 21.3) / 21.3 <= 0.05
    assert abs(count_macs(model, (384, 288)) / 1e9 - 48.0) / 48.0 <= 0.05
    interp = load_card("frpose-r34-interp").build_model()
    assert (count_params(model) - count_params(interp)) / 1e6 == pytest.approx(2.36, abs=0.05)
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in model.sa_mfcd.modules()) == 3
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in interp.sa_mfcd.modules())


def test_a_card_dict_without_the_up_sampling_field_is_the_interpolating_network():
    """Checkpoints of earlier frpose versions record no ``fusion_upsample``: they were trained interpolating."""
    from frpose_cli.cards import ModelCard
    d = load_card("frpose-r34").to_dict()
    assert d["architecture"].pop("fusion_upsample") == "deconv"
    old = ModelCard.from_dict(d)
    assert old.arch.fusion_upsample == "interpolate"
    assert set(old.build_model().state_dict()) == set(load_card("frpose-r34-interp").build_model().state_dict())


def test_table_1_ablations_differ_only_in_their_components():
    names = ["sbn-r34", "fr-sbn-r34", "fr-sbn-gcb-r34", "fr-sbn-gcb-skip-r34", "frpose-r34"]
    counts = [count_params(load_card(n).build_model()) for n in names]
    assert counts == sorted(counts), "each Table 1 row adds parameters to the one before"
    arch = {n: load_card(n).arch for n in names}
    assert arch["sbn-r34"].decoder_widths == (256, 256, 256)
    assert arch["fr-sbn-r34"].decoder_widths == (256, 256, 256, 128, 32) and not arch["fr-sbn-r34"].gcb
    assert arch["fr-sbn-gcb-r34"].gcb and arch["fr-sbn-gcb-r34"].fusion == "none"
    assert arch["fr-sbn-gcb-skip-r34"].fusion == "skip"
    assert arch["frpose-r34"].fusion == "sa_mfcd"


def test_posenet_encoder_is_torchvision_resnet_layout():
    """Every tensor of torchvision's ResNet (but the classifier) has its place in the encoder, same shape,
    and the encoder has nothing else: what ImageNet weights and published SBN files rely on."""
    import torchvision
    renames = {"conv1.": "stem.0.", "bn1.": "stem.1.", **{f"layer{i}.": f"stages.{i - 1}." for i in range(1, 5)}}
    for depth in (18, 50):
        model = load_card(f"sbn-r{depth}").build_model()
        ours = {k: v.shape for k, v in model.state_dict().items() if k.startswith(("stem.", "stages."))}
        ref = getattr(torchvision.models, f"resnet{depth}")(weights=None).state_dict()
        mapped = {}
        for key, value in ref.items():
            if key.startswith("fc."):
                continue
            prefix = next(p for p in renames if key.startswith(p))
            mapped[renames[prefix] + key[len(prefix):]] = value.shape
        assert mapped == ours, depth
