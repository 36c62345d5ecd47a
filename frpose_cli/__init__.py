"""frpose: full-resolution encoder-decoder networks for top-down human pose estimation.

Python use::

    from frpose_cli import load_card
    card = load_card("frpose-r34", input_size="256x192")
    model = card.build_model()          # torch.nn.Module, heatmaps at full input resolution

    from frpose_cli import load_pose_model
    pose = load_pose_model("sbn-r50")   # a checkpoint, zoo name or URL → PoseModel (downloads once)
"""
import tqdm as _tqdm

# tqdm starts a monitor thread with its first bar; a bar wraps each DataLoader, whose workers are
# forked right after, and a fork while that thread is starting can deadlock the child (CPython's
# threading._after_fork).  The monitor only tunes refresh rates: frpose runs without it.
_tqdm.tqdm.monitor_interval = 0

from frpose_cli.cards import ModelCard, list_cards, load_card, parse_input_size
from frpose_cli.errors import FrposeError
from frpose_cli.data.keypoints import COCO17, KeypointSpec
from frpose_cli.net.network import ArchSpec, PoseNet
from frpose_cli.load import PoseModel, load_pose_model

__version__ = "0.1.0"
__all__ = ["ArchSpec", "COCO17", "FrposeError", "KeypointSpec", "ModelCard", "PoseModel", "PoseNet",
           "list_cards", "load_card", "load_pose_model", "parse_input_size", "__version__"]
