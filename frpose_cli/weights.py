"""ImageNet weights for the encoder: a torchvision ResNet state dict → ``model.encoder``.

``--pretrained`` takes

* a file: a torchvision ResNet state dict (or a dict holding one under ``state_dict`` /
  ``model``), read with ``weights_only=True``;
* ``imagenet``: torchvision's IMAGENET1K_V1 file from the torch hub cache, downloaded
  when missing and the machine is online; offline → a clear error;
* ``auto`` (default): the cached torchvision file when present, otherwise random
  initialisation with a warning (never downloads; what tests and offline smoke runs get);
* ``none``: random initialisation.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import read_checkpoint_file
from .errors import FrposeError

# torchvision ResNet key prefix → PoseNet key prefix
_PREFIXES = {"conv1.": "stem.0.", "bn1.": "stem.1.", "layer1.": "stages.0.", "layer2.": "stages.1.",
             "layer3.": "stages.2.", "layer4.": "stages.3."}


def torchvision_url(depth: int) -> str:
    import torchvision
    return getattr(torchvision.models, f"ResNet{depth}_Weights").IMAGENET1K_V1.url


def hub_cache_file(depth: int) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / torchvision_url(depth).rsplit("/", 1)[-1]


def encoder_state_from_resnet(state: dict, source: str) -> dict:
    """Rename a torchvision ResNet state dict to PoseNet encoder keys (the fc head is dropped)."""
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise FrposeError(f"{source}: not a ResNet state dict (expected a dict of tensors)")
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        for old, new in _PREFIXES.items():
            if key.startswith(old):
                out[new + key[len(old):]] = value
                break
    if not out:
        raise FrposeError(f"{source}: no torchvision ResNet keys (conv1.*, bn1.*, layer1-4.*) in it")
    return out


def load_encoder_weights(model, state: dict, source: str) -> int:
    """Load ResNet weights into the encoder; every encoder tensor must be covered. Returns the count."""
    encoder = encoder_state_from_resnet(state, source)
    own = {k: v for k, v in model.state_dict().items() if k.startswith(("stem.", "stages."))}
    missing = [k for k in own if k not in encoder]
    extra = [k for k in encoder if k not in own]
    shapes = [k for k in own if k in encoder and tuple(own[k].shape) != tuple(encoder[k].shape)]
    if missing or extra or shapes:
        raise FrposeError(f"{source} does not fit a ResNet-{model.spec.depth} encoder "
                          f"({len(missing)} missing, {len(extra)} unexpected, {len(shapes)} mis-shaped tensors, "
                          f"e.g. {(missing + extra + shapes)[0]}); is it a ResNet of another depth?")
    model.load_state_dict({k: encoder[k] for k in own}, strict=False)
    return len(own)


def apply_pretrained(model, spec: str | None) -> str:
    """Initialise ``model.encoder`` as ``spec`` says (see module docstring); returns what was done."""
    spec = (spec or "auto").strip()
    depth = model.spec.depth
    if spec.lower() == "none":
        return "encoder: random initialisation (--pretrained none)"
    if spec.lower() in ("auto", "imagenet"):
        cached = hub_cache_file(depth)
        if cached.is_file():
            n = load_encoder_weights(model, read_checkpoint_file(cached), str(cached))
            return f"encoder: ImageNet ResNet-{depth} from {cached} ({n} tensors)"
        if spec.lower() == "auto":
            return (f"warning: encoder: random initialisation — no ImageNet ResNet-{depth} weights in "
                    f"{cached.parent}; the paper's recipe starts from ImageNet: pass --pretrained FILE "
                    "or --pretrained imagenet")
        try:
            state = torch.hub.load_state_dict_from_url(torchvision_url(depth), map_location="cpu",
                                                       progress=False, weights_only=True)
        except Exception as e:  # URLError, timeouts, HTTP errors: all mean "not available"
            raise FrposeError(f"cannot get ImageNet ResNet-{depth} weights: not in {cached.parent} and the "
                              f"download failed ({type(e).__name__}); offline? pass --pretrained FILE "
                              f"(a torchvision resnet{depth} state dict) or --pretrained none") from None
        n = load_encoder_weights(model, state, torchvision_url(depth))
        return f"encoder: ImageNet ResNet-{depth} downloaded to {cached} ({n} tensors)"
    path = Path(spec)
    if not path.is_file():
        raise FrposeError(f"--pretrained {spec}: no such file (or use imagenet, auto, none)")
    n = load_encoder_weights(model, read_checkpoint_file(path), str(path))
    return f"encoder: ResNet-{depth} weights from {path} ({n} tensors)"
