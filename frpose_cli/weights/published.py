"""Published checkpoints → PoseNet weights: key-layout detection and renaming.

Layouts recognised in a state dict (after unwrapping ``{"state_dict": ...}``):

=================  ===========================================================  ==================
layout             keys                                                         fits
=================  ===========================================================  ==================
frpose             ``stem.*``, ``stages.*``, ``decoders.*``, ``final_layer.*``    every card
sbn                ``conv1.*``, ``bn1.*``, ``layer1-4.*``, ``deconv_layers.N.*``,   ``sbn-*`` cards
                   ``final_layer.*`` (Simple Baselines; ``module.`` stripped)
mmpose             ``backbone.*`` + ``head.deconv_layers.*`` + ``head.final_layer.*``  ``sbn-*`` cards
                   (mmpose 0.x: ``keypoint_head.*``)
resnet             torchvision ResNet (``conv1``, ``layer1-4``, ``fc``): encoder only   ``--pretrained``
=================  ===========================================================  ==================

Renaming (SBN and mmpose after stripping ``module.``/``backbone.``/``head.``):
``conv1``→``stem.0``, ``bn1``→``stem.1``, ``layerN``→``stages.{N-1}``,
``deconv_layers.{3i}``→``decoders.{i}.0`` (ConvTranspose2d), ``deconv_layers.{3i+1}``→
``decoders.{i}.1`` (BatchNorm; ``3i+2`` is the ReLU, which has no weights),
``final_layer``→``final_layer``.  The SBN head is exactly three deconv-BN-ReLU decoders
and a 1×1 conv, so only cards with that head (3 decoders, no GCB, no fusion) take these files.

Not weights: mmengine 0.1.x saved its ``ImgDataPreprocessor``'s ``data_preprocessor.mean`` /
``.std`` buffers (0-255 scale, 3×1×1) into ``state_dict``; mmpose drops them on load and so do we
(:func:`split_preprocessor`), after checking them against the card's normalisation
(:func:`preprocessor_disagreement`), since they say what input scaling the weights were trained on.
"""
from __future__ import annotations

import re

import torch

from frpose_cli.weights.checkpoint import describe_key_mismatch
from frpose_cli.errors import FrposeError

LAYOUTS = ("frpose", "sbn", "mmpose", "resnet")
LAYOUT_NAMES = {"frpose": "frpose", "sbn": "Simple Baselines (original)", "mmpose": "mmpose SimpleBaseline",
                "resnet": "torchvision ResNet (ImageNet classifier)"}
# What each layout's weights were trained on: the original Simple Baselines loader feeds OpenCV's
# BGR images unconverted (with ImageNet's RGB mean/std applied by channel index); mmpose converts
# to RGB in its data preprocessor; frpose checkpoints record their own (card.normalize).
LAYOUT_CHANNEL_ORDER = {"frpose": "rgb", "sbn": "bgr", "mmpose": "rgb"}
_ENCODER = [("conv1.", "stem.0."), ("bn1.", "stem.1."), ("layer1.", "stages.0."), ("layer2.", "stages.1."),
            ("layer3.", "stages.2."), ("layer4.", "stages.3.")]
_DECONV = re.compile(r"deconv_layers\.(\d+)\.(.*)")
_DECODER = re.compile(r"decoders\.(\d+)\.([01])\.(.*)")
# Blocks per ResNet stage 3 → depth (with stage 1's block type telling 34 from 50).
_STAGE3_BLOCKS = {2: (18,), 6: (34, 50), 23: (101,), 36: (152,)}


PREPROCESSOR = "data_preprocessor."


def split_preprocessor(state: dict) -> tuple[dict, dict]:
    """``state`` without the ``data_preprocessor.*`` buffers, and those buffers (short names)."""
    kept, buffers = {}, {}
    for key, value in state.items():
        bare = key[len("module."):] if key.startswith("module.") else key
        if bare.startswith(PREPROCESSOR):
            buffers[bare[len(PREPROCESSOR):]] = value
        else:
            kept[key] = value
    return kept, buffers


def preprocessor_disagreement(buffers: dict, card) -> str | None:
    """A sentence when the file's preprocessing mean/std differ from ``card.normalize``, else None."""
    if "mean" not in buffers or "std" not in buffers:
        return None
    mean, std = (buffers[k].detach().double().flatten() for k in ("mean", "std"))
    if len(mean) != 3 or len(std) != 3:
        return f"the file's data_preprocessor mean/std have {len(mean)}/{len(std)} values, not 3"
    scale = 255.0 if float(mean.abs().max()) > 1.5 else 1.0   # mmengine keeps them in 0-255 units
    mean, std = mean / scale, std / scale
    want_mean = torch.tensor(card.normalize["mean"], dtype=torch.float64)
    want_std = torch.tensor(card.normalize["std"], dtype=torch.float64)

    def close(a, b):
        return bool(torch.allclose(a, b, atol=2e-3))
    if close(mean, want_mean) and close(std, want_std):
        return None
    shown = (f"mean {[round(float(v), 3) for v in mean]}, std {[round(float(v), 3) for v in std]}"
             f"{' (÷255)' if scale > 1 else ''}")
    card_shown = f"mean {card.normalize['mean']}, std {card.normalize['std']}"
    reversed_order = close(mean.flip(0), want_mean) and (close(std.flip(0), want_std) or close(std, want_std))
    why = ("; it is the card's in reversed channel order: were the weights trained on the other of RGB/BGR?"
           if reversed_order else ": the weights were trained on other input scaling, predictions may be off")
    return f"the file's data_preprocessor normalisation ({shown}) differs from {card.name}'s ({card_shown}){why}"


def recorded_input_size(obj) -> tuple | None:
    """The (height, width) a published checkpoint's embedded config trained at, if it says:
    mmpose 1.x ``codec = dict(..., input_size=(192, 256))`` or 0.x ``image_size=[192, 256]``
    (both width first), in ``meta['cfg']`` / ``meta['config']``."""
    meta = obj.get("meta") if isinstance(obj, dict) else None
    text = next((meta[k] for k in ("cfg", "config") if isinstance(meta, dict) and isinstance(meta.get(k), str)), "")
    m = re.search(r"\binput_size\s*=\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)", text) or \
        re.search(r"\bimage_size\s*=\s*\[\s*(\d+)\s*,\s*(\d+)\s*\]", text)
    return (int(m.group(2)), int(m.group(1))) if m else None


def unwrap_state_dict(obj, source: str) -> dict:
    """The tensor dict inside a training checkpoint (``state_dict``/``model``) or a bare one."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(torch.is_tensor(v) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) and torch.is_tensor(v)
                                                       for k, v in obj.items()):
        raise FrposeError(f"{source}: not a state dict (expected a dict of tensors, or a training checkpoint "
                          "holding one under 'state_dict')")
    return obj


def strip_prefix(state: dict, prefix: str) -> dict:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def detect_layout(state: dict) -> str:
    """One of :data:`LAYOUTS`, or ``"unknown"``.  ``module.`` prefixes must be stripped first."""
    keys = list(state)
    if any(k.startswith("stem.") for k in keys) and any(k.startswith("stages.") for k in keys):
        return "frpose"
    if any(k.startswith("backbone.") for k in keys) and any(k.startswith(("head.", "keypoint_head.")) for k in keys):
        return "mmpose"
    if any(k.startswith("layer1.") for k in keys) and any(k.startswith("conv1.") for k in keys):
        if any(k.startswith("deconv_layers.") for k in keys) or any(k.startswith("final_layer.") for k in keys):
            return "sbn"
        return "resnet"
    return "unknown"


def _sbn_key_to_frpose(key: str) -> str | None:
    for old, new in _ENCODER:
        if key.startswith(old):
            return new + key[len(old):]
    m = _DECONV.fullmatch(key)
    if m and int(m.group(1)) % 3 in (0, 1):
        i = int(m.group(1))
        return f"decoders.{i // 3}.{i % 3}.{m.group(2)}"
    if key.startswith("final_layer."):
        return key
    return None   # kept under its own name, so the mismatch message shows it


def frpose_key_to_sbn(key: str) -> str:
    """Inverse renaming, to name a missing key the way the published file would."""
    for old, new in _ENCODER:
        if key.startswith(new):
            return old + key[len(new):]
    m = _DECODER.fullmatch(key)
    if m:
        return f"deconv_layers.{3 * int(m.group(1)) + int(m.group(2))}.{m.group(3)}"
    return key


def mmpose_to_sbn(state: dict) -> dict:
    """mmpose's ``backbone.`` / ``head.`` (``keypoint_head.`` in 0.x) → Simple Baselines names."""
    out = {}
    for key, value in state.items():
        for prefix in ("backbone.", "head.", "keypoint_head."):
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        out[key] = value
    return out


def published_to_sbn(state: dict) -> tuple[str, dict]:
    """Detect the layout and bring SBN/mmpose dicts to plain Simple Baselines names."""
    state = strip_prefix(state, "module.")
    layout = detect_layout(state)
    if layout == "mmpose":
        state = mmpose_to_sbn(state)
    return layout, state


def infer_depth(sbn_state: dict) -> int | None:
    """ResNet depth from the encoder keys of an SBN-named state dict (None when unclear)."""
    blocks = {int(m.group(1)) for k in sbn_state if (m := re.match(r"layer3\.(\d+)\.", k))}
    if not blocks:
        return None
    options = _STAGE3_BLOCKS.get(max(blocks) + 1, ())
    if len(options) == 2:
        return 50 if "layer1.0.conv3.weight" in sbn_state else 34
    return options[0] if options else None


def fits_sbn_head(arch) -> bool:
    return len(arch.decoder_widths) == 3 and not arch.gcb and arch.fusion == "none"


def sbn_to_frpose(sbn_state: dict) -> dict:
    out = {}
    for key, value in sbn_state.items():
        new = _sbn_key_to_frpose(key)
        out[new if new is not None else key] = value
    return out


def fill_batch_counters(model_state: dict, state: dict) -> dict:
    """Checkpoints from PyTorch < 0.4.1 have no BN ``num_batches_tracked``; it does not affect
    inference, so missing counters are filled with zeros rather than reported."""
    state = dict(state)
    for key, value in model_state.items():
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    return state


def load_published_into(model, card, state: dict, layout: str, source: str) -> None:
    """Load an SBN- or mmpose-layout dict (already in SBN names) into ``model``, or one clear error."""
    if not fits_sbn_head(card.arch):
        raise FrposeError(f"{source} is a {LAYOUT_NAMES[layout]} checkpoint: it fits only the sbn-* cards "
                          f"(3 deconv decoders, no GCB or fusion), not {card.name}")
    own = model.state_dict()
    converted = fill_batch_counters(own, sbn_to_frpose(state))
    missing = [frpose_key_to_sbn(k) for k in own if k not in converted]
    unexpected = [k for k in state if _sbn_key_to_frpose(k) not in own]
    shapes = [frpose_key_to_sbn(k) for k in own
              if k in converted and tuple(own[k].shape) != tuple(converted[k].shape)]
    mismatch = describe_key_mismatch(missing, unexpected, shapes)
    if mismatch:
        depth = infer_depth(state)
        hint = (f"it looks like a ResNet-{depth} model, try sbn-r{depth}" if depth and depth != card.arch.depth
                else "is it a checkpoint of another architecture?")
        raise FrposeError(f"{source} ({LAYOUT_NAMES[layout]} layout) does not fit {card.name} "
                          f"({mismatch}); {hint}")
    model.load_state_dict(converted, strict=True)
