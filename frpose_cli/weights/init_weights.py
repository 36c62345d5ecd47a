"""Where a new training run's weights start: ImageNet for the encoder (``--pretrained``) and
published pose weights for every part two networks share (``--init``).

``--pretrained`` takes

* ``auto`` (default): the zoo's ImageNet ResNet (torchvision's IMAGENET1K_V1 file) from the
  weights cache, downloaded when missing and allowed; when it cannot be had (offline), random
  initialisation with a one-line warning;
* ``imagenet``: the same, but failing to get it is an error;
* a file: a torchvision ResNet state dict (or a dict holding one under ``state_dict``/``model``);
* ``none``: random initialisation.

``--init WEIGHTS`` (any weights argument: zoo name, URL, file; :mod:`frpose_cli.weights.loader`) copies
every layer whose tensors all exist, with the same names and shapes, in both networks.  From Simple Baselines into the
paper's network that is the encoder and decoders 1-3 with their BatchNorms; GCBs, SA-MFCD,
decoders 4-5 and the final layer keep their initialisation.  It replaces ``--pretrained``.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch

from frpose_cli.weights import zoo
from frpose_cli.weights.checkpoint import read_checkpoint_file
from frpose_cli.errors import FrposeError, warn
from frpose_cli.weights.loader import frpose_state_dict, resolve_weights

# torchvision ResNet key prefix → PoseNet key prefix
_PREFIXES = {"conv1.": "stem.0.", "bn1.": "stem.1.", "layer1.": "stages.0.", "layer2.": "stages.1.",
             "layer3.": "stages.2.", "layer4.": "stages.3."}


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


def _imagenet_file(depth: int, required: bool):
    entry = zoo.imagenet_entry(depth)
    try:
        return entry.fetch()
    except FrposeError:
        if required:
            raise
        return None


def apply_pretrained(model, spec: str | None, warn=warn) -> str:
    """Initialise the encoder as ``spec`` says (see module docstring); returns what was done.  ``warn``
    receives the one-line warning of ``auto`` falling back to random initialisation."""
    spec = (spec or "auto").strip()
    depth = model.spec.depth
    if spec.lower() == "none":
        return "encoder: random initialisation (--pretrained none)"
    if spec.lower() in ("auto", "imagenet"):
        path = _imagenet_file(depth, required=spec.lower() == "imagenet")
        if path is None:
            warn(f"encoder: random initialisation — the ImageNet ResNet-{depth} weights are not in the cache and "
                 f"cannot be downloaded now; the paper's recipe starts from ImageNet: pass --pretrained FILE, or "
                 f"copy {zoo.imagenet_entry(depth).url} into the cache")
            return f"encoder: random initialisation (--pretrained {spec}: no ImageNet ResNet-{depth} weights here)"
        n = load_encoder_weights(model, read_checkpoint_file(path), str(path))
        return f"encoder: ImageNet ResNet-{depth} from {path} ({n} tensors)"
    path = Path(spec)
    if not path.is_file():
        raise FrposeError(f"--pretrained {spec}: no such file (or use imagenet, auto, none)")
    n = load_encoder_weights(model, read_checkpoint_file(path), str(path))
    return f"encoder: ResNet-{depth} weights from {path} ({n} tensors)"


def _role(key: str) -> str:
    if key.startswith(("stem.", "stages.")):
        return "encoder"
    if key.startswith("decoders."):
        return f"decoder {int(key.split('.')[1]) + 1}"
    return key.split(".")[0].replace("_", " ")


def init_from(model, given: str) -> tuple[str, dict]:
    """Copy every tensor of ``given`` whose name and shape ``model`` shares (module docstring).

    Returns a one-line summary and a record for the run: source, what the file was, the count
    copied and kept, and the copies by role."""
    weights = resolve_weights(given)
    state, what = frpose_state_dict(weights)
    own = model.state_dict()
    fits = {k for k, v in own.items() if k in state and tuple(state[k].shape) == tuple(v.shape)}
    # A layer is copied whole or not at all (the final layer's 17 biases fit, its weights do not).
    layer_fits = {}
    for k in own:
        layer = k.rsplit(".", 1)[0]
        layer_fits[layer] = layer_fits.get(layer, True) and k in fits
    shared = {k: state[k] for k in own if layer_fits[k.rsplit(".", 1)[0]]}
    encoder = [k for k in own if _role(k) == "encoder"]
    fitting = sum(k in shared for k in encoder)
    if fitting < len(encoder):   # a warm start from another backbone depth is a mistake, not a start
        raise FrposeError(f"--init {given}: its encoder does not fit ResNet-{model.spec.depth} ({fitting} of "
                          f"{len(encoder)} encoder tensors fit); is it a model of another backbone depth?")
    model.load_state_dict(shared, strict=False)
    copied = Counter(_role(k) for k in shared)
    kept = Counter(_role(k) for k in own if k not in shared)
    roles = ", ".join(f"{role} {n}" for role, n in sorted(copied.items()))
    rest = ", ".join(f"{role} {n}" for role, n in sorted(kept.items()))
    line = (f"init: {len(shared)} tensors from {weights} ({what}): {roles}; {sum(kept.values())} keep their "
            f"initialisation" + (f" ({rest})" if rest else ""))
    record = {"source": str(given), "file": str(weights.path), "what": what, "copied": len(shared),
              "kept": sum(kept.values()), "copied_by_role": dict(copied), "kept_by_role": dict(kept)}
    return line, record
