"""The onnxruntime set-up's graph is exported once per network and kept (runtime/export_cache.py)."""
import numpy as np
import pytest
import torch
from torch import nn

from frpose_cli.runtime import export_cache
from frpose_cli.runtime.onnxrt import onnxruntime_net, ort_session


def onnx_session(net):
    return onnxruntime_net(net).session


def small_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()


@pytest.fixture
def exports(monkeypatch):
    """Counts the real exports."""
    calls = []
    real = export_cache.onnx_bytes_any_size

    def counting(net, *args, **kwargs):
        calls.append(net)
        return real(net, *args, **kwargs)
    monkeypatch.setattr(export_cache, "onnx_bytes_any_size", counting)
    return calls


@pytest.fixture
def kept(tmp_path, monkeypatch):
    """The folder the graphs are kept in, for this test alone."""
    monkeypatch.setattr(export_cache, "cache_folder", lambda: tmp_path / "onnx")
    return tmp_path / "onnx"


def run(session, x):
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_the_second_session_of_a_network_reads_the_kept_graph(kept, exports):
    net = small_net()
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 24)).astype(np.float32)
    first = run(onnx_session(net), x)
    assert len(exports) == 1 and len(list(kept.glob("*.onnx"))) == 1
    same_weights = small_net()   # another object, the same tensors: a checkpoint loaded again
    second = run(onnx_session(same_weights), x)
    assert len(exports) == 1 and np.array_equal(first, second)
    with torch.no_grad():
        np.testing.assert_allclose(second, net(torch.from_numpy(x)).numpy(), atol=1e-5)


def test_other_weights_or_a_changed_tensor_are_exported_again(kept, exports):
    net = small_net()
    onnx_session(net)
    onnx_session(small_net(seed=1))
    assert len(exports) == 2
    with torch.no_grad():
        net[1].running_var.mul_(2)   # in place: the remembered fingerprint must not be reused
    x = np.ones((1, 3, 8, 8), np.float32)
    out = run(onnx_session(net), x)
    assert len(exports) == 3
    with torch.no_grad():
        np.testing.assert_allclose(out, net(torch.from_numpy(x)).numpy(), atol=1e-5)


def test_a_damaged_kept_graph_is_exported_again_and_replaced(kept, exports):
    net = small_net()
    onnx_session(net)
    graph = next(kept.glob("*.onnx"))
    whole = graph.read_bytes()
    graph.write_bytes(whole[: len(whole) // 2])   # a copy cut short
    onnx_session(net)
    assert len(exports) == 2 and graph.read_bytes() == whole
    ort_session(str(graph))   # readable again


def test_only_the_newest_graphs_are_kept(kept, monkeypatch, exports):
    monkeypatch.setattr(export_cache, "KEEP", 2)
    for seed in range(3):
        onnx_session(small_net(seed))
    assert len(list(kept.glob("*.onnx"))) == 2
    onnx_session(small_net(2))   # the newest is still there
    assert len(exports) == 3


def test_a_cache_folder_that_cannot_be_written_only_costs_the_export(tmp_path, monkeypatch, exports):
    blocked = tmp_path / "file"
    blocked.write_text("a file where the folder would be")
    monkeypatch.setattr(export_cache, "cache_folder", lambda: blocked / "onnx")
    x = np.ones((1, 3, 8, 8), np.float32)
    assert run(onnx_session(small_net()), x).shape == (1, 4, 8, 8)
    assert len(exports) == 1


def test_a_checkpoint_loaded_twice_is_exported_once(tmp_path, monkeypatch, exports, sbn_r18_checkpoint):
    """`predict --weights best.pt` on the CPU: the first run exports, the next ones start from the graph."""
    monkeypatch.setenv("FRPOSE_HOME", str(tmp_path / "home"))   # an empty graph cache
    from frpose_cli.load import load_pose_model
    ckpt = sbn_r18_checkpoint
    x = torch.rand(1, 3, 64, 64)
    outs = []
    for _ in range(2):
        model = load_pose_model(str(ckpt), device="cpu", precision="fp32", progress=False)
        assert model.backend == "onnxruntime"
        outs.append(model(x))
    assert len(exports) == 1 and (tmp_path / "home" / "onnx").is_dir()
    assert torch.equal(outs[0], outs[1])
