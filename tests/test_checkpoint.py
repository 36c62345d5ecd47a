"""Checkpoint files: atomic frpose checkpoints round-trip; bad files are one-line errors."""
import pytest
import torch

from frpose_cli.cards import load_card
from frpose_cli.checkpoint import model_from_checkpoint, read_checkpoint_file, save_checkpoint
from frpose_cli.errors import FrposeError


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
    with pytest.raises(FrposeError, match="holds a sbn-r18 checkpoint, not frpose-r18"):
        model_from_checkpoint(path, model_name="frpose-r18")
    with pytest.raises(FrposeError, match="trained at 64x64, not 128x96"):
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
    with pytest.raises(FrposeError, match="is a folder"):
        read_checkpoint_file(tmp_path)
