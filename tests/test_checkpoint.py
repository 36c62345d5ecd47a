"""Checkpoint files: atomic frpose checkpoints round-trip; bad files are one-line errors."""
import pytest
import torch

from frpose_cli.cards import load_card
from frpose_cli.weights.checkpoint import read_checkpoint_file, save_checkpoint
from frpose_cli.errors import FrposeError
from frpose_cli.weights.loader import load_network, resolve_weights


def model_from_checkpoint(path, model_name=None, input_size=None):
    loaded = load_network(resolve_weights(path), model_name, input_size)
    return loaded.net, loaded.card, torch.load(path, weights_only=True)


def test_checkpoint_round_trip_rebuilds_the_same_model(tmp_path):
    card = load_card("frpose-r18", (64, 64))
    torch.manual_seed(0)
    model = card.build_model().eval()
    path = save_checkpoint(tmp_path / "m.pt", model, card)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"], "no temp file left behind"
    again, card2, ckpt = model_from_checkpoint(path)
    assert card2 == card and ckpt["codec"]["stride"] == 1
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))


def test_checkpoint_of_another_model_or_size_is_refused(tmp_path):
    card = load_card("sbn-r18", (64, 64))
    path = save_checkpoint(tmp_path / "m.pt", card.build_model(), card)
    with pytest.raises(FrposeError, match="holds a sbn-r18 model, not frpose-r18"):
        model_from_checkpoint(path, model_name="frpose-r18")
    with pytest.raises(FrposeError, match="is for 64x64 inputs, not 128x96"):
        model_from_checkpoint(path, input_size=(128, 96))


@pytest.mark.parametrize("content,needle", [(b"not a checkpoint at all", "not a readable PyTorch checkpoint"),
                                            (b"", "not a readable PyTorch checkpoint")])
def test_damaged_files_are_one_line_errors(tmp_path, content, needle):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(FrposeError, match=needle) as err:
        read_checkpoint_file(path)
    assert "\n" not in str(err.value)
    with pytest.raises(FrposeError, match="checkpoint not found"):
        read_checkpoint_file(tmp_path / "missing.pt")
    with pytest.raises(FrposeError, match="weights not found: .*missing.pt .*zoo name"):
        resolve_weights(tmp_path / "missing.pt")
    with pytest.raises(FrposeError, match="is a folder"):
        read_checkpoint_file(tmp_path)
