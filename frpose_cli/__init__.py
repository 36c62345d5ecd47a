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

__version__ = "0.1.0"

# The public names load on first use (PEP 562): they import torch and torchvision (about 2 s), which
# `frpose --help`, `--version` and a usage error do not need, nor a helper process that writes a file.
_PUBLIC = {"ModelCard": "frpose_cli.cards", "list_cards": "frpose_cli.cards", "load_card": "frpose_cli.cards",
           "parse_input_size": "frpose_cli.cards", "FrposeError": "frpose_cli.errors",
           "COCO17": "frpose_cli.data.keypoints", "KeypointSpec": "frpose_cli.data.keypoints",
           "ArchSpec": "frpose_cli.net.network", "PoseNet": "frpose_cli.net.network",
           "PoseModel": "frpose_cli.load", "load_pose_model": "frpose_cli.load"}
__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'frpose_cli' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
