"""frpose: full-resolution encoder-decoder networks for top-down human pose estimation.

Python use::

    from frpose_cli import load_card
    card = load_card("frpose-r34", input_size="256x192")
    model = card.build_model()          # torch.nn.Module, heatmaps at full input resolution
"""
from .cards import ModelCard, list_cards, load_card, parse_input_size
from .errors import FrposeError
from .keypoints import COCO17, KeypointSpec
from .net.network import ArchSpec, PoseNet

__version__ = "0.1.0"
__all__ = ["ArchSpec", "COCO17", "FrposeError", "KeypointSpec", "ModelCard", "PoseNet",
           "list_cards", "load_card", "parse_input_size", "__version__"]
