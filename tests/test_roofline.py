"""The network's own roofline (frpose_cli/deploy/roofline.py): layer costs counted from a forward pass, the
bandwidth curve, and the bound on a pass's time."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from frpose_cli.deploy.roofline import (
    SMALL_BANDWIDTH_SIZES,
    LayerCost,
    bandwidth_at,
    layer_costs,
    measure_bandwidth,
    roofline,
)
from frpose_cli.net.rtmdet import PUBLISHED, RTMDet, spec_for


def test_layer_costs_count_flops_and_elements_by_hand():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 5, padding=2, groups=8),
                        nn.Conv2d(8, 4, 1, stride=2), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    costs = layer_costs(net, torch.zeros(2, 3, 16, 16))
    assert [c.kind for c in costs] == ["conv 3x3", "depthwise 5x5", "conv 1x1", "linear"]
    assert [c.name for c in costs] == ["0", "2", "3", "5"]
    conv, dw, pw, fc = costs
    assert conv.flops == 2 * (2 * 8 * 16 * 16) * 3 * 9                 # every output value: 27 multiply-adds
    assert conv.elements == 2 * 3 * 256 + 2 * 8 * 256 + 8 * 27
    assert dw.flops == 2 * (2 * 8 * 256) * 25                           # one input channel per output channel
    assert dw.elements == 2 * 8 * 256 * 2 + 8 * 25
    assert pw.flops == 2 * (2 * 4 * 64) * 8                             # stride 2: a quarter of the outputs
    assert fc.flops == 2 * (2 * 10) * 256 and fc.elements == 2 * 256 + 2 * 10 + 10 * 256
    assert conv.bytes("fp32") == 2 * conv.bytes("bf16") == 4 * conv.bytes("int8")
    assert not any(m._forward_hooks for m in net.modules())               # the hooks are removed


def test_layer_costs_agree_with_torch_flop_counter_on_rtmdet():
    from torch.utils.flop_counter import FlopCounterMode
    model = RTMDet(spec_for(**PUBLISHED["rtmdet-nano"])).eval()
    x = torch.zeros(1, 3, 64, 64)
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(x)
    costs = layer_costs(model, x)
    # a shared head conv is counted at each level it runs on; torch counts the same calls
    assert sum(c.flops for c in costs) == pytest.approx(counter.get_total_flops(), rel=1e-6)
    assert any(c.kind == "depthwise 5x5" for c in costs)


def test_layer_costs_agree_with_torch_flop_counter_on_the_papers_network():
    """Transposed convolutions (the decoders) count as torch counts them.  The GC blocks' attention pooling is a
    batched matrix product inside a module, not a layer: left out (0.01 % of the FLOPs), so only convolutions
    are compared."""
    from torch.utils.flop_counter import FlopCounterMode

    from frpose_cli.cards import load_card
    model = load_card("frpose-r18", (64, 48)).build_model().eval()
    x = torch.zeros(1, 3, 64, 48)
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(x)
    costs = layer_costs(model, x)
    assert any(c.kind.startswith("deconv") for c in costs)
    convolutions = counter.get_flop_counts()["Global"][torch.ops.aten.convolution]
    assert sum(c.flops for c in costs) == pytest.approx(convolutions, rel=1e-9)


def test_layer_costs_refuse_a_non_module():
    with pytest.raises(TypeError, match="model"):
        layer_costs(lambda x: x, torch.zeros(1))


def test_bandwidth_curve_is_measured_at_each_size():
    curve = measure_bandwidth(SMALL_BANDWIDTH_SIZES, repeats=1)
    assert sorted(curve) == sorted(SMALL_BANDWIDTH_SIZES)
    assert all(0 < v < 1e5 for v in curve.values())       # GB/s: positive and not absurd
    with pytest.raises(ValueError, match="sizes"):
        measure_bandwidth((100,))
    with pytest.raises(ValueError, match="repeats"):
        measure_bandwidth(SMALL_BANDWIDTH_SIZES, repeats=0)


def test_bandwidth_at_takes_the_smallest_size_that_holds_the_working_set():
    curve = {1024: 300.0, 4096: 100.0, 16384: 20.0}
    assert bandwidth_at(curve, 10) == 300.0
    assert bandwidth_at(curve, 1024) == 300.0
    assert bandwidth_at(curve, 1025) == 100.0
    assert bandwidth_at(curve, 10 ** 9) == 20.0            # beyond the largest: the largest's (DRAM)
    with pytest.raises(ValueError, match="curve"):
        bandwidth_at({}, 10)


def test_roofline_bounds_each_layer_by_its_slower_limit():
    curve = {10 ** 9: 100.0}                                # 100 GB/s at every size
    dense = LayerCost("a", "conv 3x3", flops=2e9, elements=1_000_000)       # 4 MB: 0.04 ms; 2 GFLOP at 1000: 2 ms
    thin = LayerCost("b", "depthwise 5x5", flops=1e6, elements=25_000_000)  # 100 MB: 1 ms; 1 MFLOP: 0.001 ms
    r = roofline([dense, thin], "fp32", 1000.0, curve)
    assert r.seconds == pytest.approx(2e-3 + 1e-3)
    assert r.memory_bound_layers == 1 and r.memory_bound_flops_share == pytest.approx(1e6 / (2e9 + 1e6))
    assert r.gflops == pytest.approx((2e9 + 1e6) / 3e-3 / 1e9)
    assert r.share(6e-3) == pytest.approx(0.5)
    # bf16 moves half the bytes: the memory-bound layer takes half as long
    assert roofline([dense, thin], "bf16", 1000.0, curve).seconds == pytest.approx(2e-3 + 0.5e-3)
    assert "1 layers, 0 % of the FLOPs, are memory-bound" in r.method() or "memory-bound" in r.method()
    for bad, match in ((dict(precision="fp64"), "precision"), (dict(compute_gflops=0.0), "compute_gflops"),
                       (dict(costs=[]), "costs")):
        kwargs = dict(costs=[dense], precision="fp32", compute_gflops=1000.0, curve=curve) | bad
        with pytest.raises(ValueError, match=match):
            roofline(**kwargs)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(1e3, 1e12), st.integers(1, 10 ** 9)), min_size=1, max_size=12),
       st.floats(1.0, 5000.0), st.floats(1.0, 500.0))
def test_roofline_never_exceeds_the_compute_ceiling_and_grows_with_bandwidth(layers, compute, bandwidth):
    costs = [LayerCost(str(i), "conv 3x3", f, e) for i, (f, e) in enumerate(layers)]
    r = roofline(costs, "fp32", compute, {2 ** 30: bandwidth})
    assert r.gflops <= compute * (1 + 1e-9)
    faster = roofline(costs, "fp32", compute, {2 ** 30: 2 * bandwidth})
    assert faster.seconds <= r.seconds * (1 + 1e-12)
    assert faster.memory_bound_layers <= r.memory_bound_layers
