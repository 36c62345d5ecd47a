"""The one answer to "what is this weights argument?" for every verb.

``--weights`` (and ``train --init``, ``eval MODEL`` with no ``--weights``) may be

=====================  ==========================================================================
a file                 kind detected from the content (:func:`detect_file_kind`): ``torch``
                       (frpose checkpoint, Simple Baselines or mmpose state dict / checkpoint, a
                       bare frpose state dict), ``onnx``, ``torchscript`` or ``openvino`` (an IR
                       ``.xml`` with its ``.bin`` beside it; ``frpose export``)
a zoo name             ``sbn-r50``, ``sbn-r152-384x288``, … (:mod:`frpose_cli.weights.zoo`): downloaded
                       once into the cache, hash-checked
an ``http(s)://`` URL  downloaded into the same cache (hash checked when the file name carries one)
=====================  ==========================================================================

:func:`resolve_weights` turns the argument into a local file (:class:`WeightsFile`);
:func:`load_network` reads a torch-kind file into a PoseNet with its card, codec and channel
order; :func:`frpose_cli.load.load_pose_model` puts a backend around either.  Every read goes
through :func:`frpose_cli.weights.checkpoint.read_checkpoint_file` (``weights_only=True``).
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

from frpose_cli.weights import zoo
from frpose_cli.cards import ModelCard, load_card
from frpose_cli.weights.checkpoint import FORMAT as CHECKPOINT_FORMAT, card_from_checkpoint, load_state_into, read_checkpoint_file
from frpose_cli.weights.download import fetch, is_url
from frpose_cli.errors import FrposeError, warn
from frpose_cli.weights.published import (LAYOUT_CHANNEL_ORDER, LAYOUT_NAMES, infer_depth, load_published_into,
                                          preprocessor_disagreement, published_to_sbn, recorded_input_size,
                                          sbn_to_frpose, split_preprocessor, unwrap_state_dict)


@dataclass(frozen=True)
class WeightsFile:
    path: Path
    given: str                      # what the user wrote
    entry: zoo.ZooEntry | None = None

    @property
    def kind(self) -> str:
        return detect_file_kind(self.path)

    def __str__(self) -> str:
        return self.given if self.entry is None else f"{self.entry.name} ({self.path})"


def detect_file_kind(path: Path) -> str:
    """``onnx``, ``torchscript``, ``openvino`` (IR ``.xml``) or ``torch`` (anything torch.load may read)."""
    path = Path(path)
    if path.suffix.lower() == ".bin" and path.with_suffix(".xml").is_file():
        raise FrposeError(f"{path} holds an OpenVINO IR's weights: give its {path.with_suffix('.xml').name}")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
        return "torchscript" if any("/code/" in n or n.endswith("constants.pkl") for n in names) else "torch"
    with open(path, "rb") as f:
        head = f.read(1)
    # A serialized ONNX ModelProto opens with field 1 (ir_version, varint): byte 0x08.
    # Legacy torch.save files open with the pickle protocol byte 0x80.
    if path.suffix.lower() == ".onnx" or head == b"\x08":
        return "onnx"
    if head == b"<":   # XML: an OpenVINO IR's <?xml ...?><net ...> (a pickle or zip never opens with it)
        return "openvino"
    return "torch"


def resolve_weights(given, progress: bool = True, pose_only: bool = True) -> WeightsFile:
    """A local file for ``given``: an existing path, else a zoo name, else a URL (see module docstring).
    ``pose_only=False`` (``models --inspect``) also takes the zoo's detector and ImageNet entries."""
    text = str(given)
    path = Path(text).expanduser()
    if path.is_dir():
        raise FrposeError(f"{path} is a folder, not a model file")
    if path.is_file():
        return WeightsFile(path, text)
    entry = zoo.find(text)
    if entry is not None:
        if pose_only and entry.kind != "pose":
            raise FrposeError(f"{text} are {entry.kind} weights, not a pose model")
        return WeightsFile(entry.fetch(progress), text, entry)
    if is_url(text):
        return WeightsFile(fetch(text, what="weights", progress=progress), text)
    raise FrposeError(f"weights not found: {text} (not a file, a zoo name such as "
                      f"{', '.join(e.name for e in zoo.POSE[:3])}, or an http(s):// URL; `frpose models` lists the zoo)")


def default_weights_for(card_name: str | None, input_size=None) -> str:
    """The zoo name to use when a verb gets a model card but no ``--weights``."""
    name = card_name or zoo.DEFAULT_POSE
    from frpose_cli.cards import check_card_name
    check_card_name(name, weights=True if zoo.find(name) is not None else None)
    entry = zoo.pose_entry_for(name, input_size)
    if entry is None:
        sizes = ", ".join(f"{e.input_size[0]}x{e.input_size[1]}" for e in zoo.pose_entries_for(name))
        why = (f" at that input size (published: {sizes})" if sizes
               else " (the paper published none)" if name.startswith(("frpose", "fr-sbn"))
               else " (the zoo has none for this card)")
        raise FrposeError(f"no published weights for {name}{why}; pass --weights CKPT (train one with `frpose train`)")
    return entry.name


@dataclass
class LoadedNetwork:
    net: object                     # PoseNet in eval mode, on the CPU
    card: ModelCard                 # with the trained input size and channel order
    codec_name: str | None
    what: str                       # "frpose checkpoint", "mmpose SimpleBaseline state dict", ...
    weights: WeightsFile


def check_card_agrees(card: ModelCard, model_name, input_size, source) -> None:
    if model_name and model_name != card.name:
        raise FrposeError(f"{source} holds a {card.name} model, not {model_name}")
    if input_size is not None and tuple(input_size) != tuple(card.input_size):
        raise FrposeError(f"{source} is for {card.input_size[0]}x{card.input_size[1]} inputs, "
                          f"not {input_size[0]}x{input_size[1]}")


def load_network(weights: WeightsFile, model_name: str | None = None, input_size=None) -> LoadedNetwork:
    """A torch-kind weights file → PoseNet with its card (``model_name``/``input_size`` must agree
    with what an frpose checkpoint records; they choose the card for published files)."""
    source = str(weights.path)
    obj = read_checkpoint_file(weights.path)
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        card = card_from_checkpoint(obj, source)
        check_card_agrees(card, model_name, input_size, source)
        net = card.build_model()
        load_state_into(net, obj["state_dict"], source)
        return LoadedNetwork(net.eval(), card, (obj.get("codec") or {}).get("name"), "frpose checkpoint", weights)
    layout, state, buffers = published_state(obj, source)
    if layout == "resnet":
        raise FrposeError(f"{source} is a torchvision ResNet classifier (encoder only, no pose head): use it "
                          "to initialise training with `frpose train MODEL --pretrained FILE`")
    if layout == "unknown":
        raise FrposeError(f"{source}: unrecognised key layout (e.g. {next(iter(state))}); expected an frpose "
                          "checkpoint, a Simple Baselines or mmpose SimpleBaseline state dict")
    entry = weights.entry
    model_name = model_name or (entry.card if entry else None)
    input_size = input_size or (entry.input_size if entry else None) or recorded_input_size(obj)
    if model_name is None:
        depth = infer_depth(state) if layout != "frpose" else None
        if depth is None:
            raise FrposeError(f"{source} records no model card: pass --model (e.g. sbn-r50)")
        model_name = f"sbn-r{depth}"
    card = load_card(model_name, input_size=input_size)
    net = card.build_model()
    if layout == "frpose":
        load_state_into(net, state, source)
    else:
        load_published_into(net, card, state, layout, source)
        card = card.with_channel_order(entry.channel_order if entry else LAYOUT_CHANNEL_ORDER[layout])
    disagreement = preprocessor_disagreement(buffers, card)
    if disagreement:
        warn(f"{source}: {disagreement}")
    return LoadedNetwork(net.eval(), card, card.codec, f"{LAYOUT_NAMES[layout]} state dict", weights)


def published_state(obj, source: str) -> tuple[str, dict, dict]:
    """A non-frpose-checkpoint file's layout, its tensors (SBN names for SBN/mmpose layouts) and
    the ``data_preprocessor.*`` buffers set aside (not weights: see weights.published)."""
    state, buffers = split_preprocessor(unwrap_state_dict(obj, source))
    layout, state = published_to_sbn(state)
    return layout, state, buffers


def frpose_state_dict(weights: WeightsFile) -> tuple[dict, str]:
    """Every tensor of a torch-kind file under PoseNet names, and what the file was (for ``--init``)."""
    source = str(weights.path)
    obj = read_checkpoint_file(weights.path)
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        return dict(obj["state_dict"]), f"frpose checkpoint ({obj['card'].get('name', '?')})"
    layout, state, _ = published_state(obj, source)
    if layout == "unknown":
        raise FrposeError(f"{source}: unrecognised key layout (e.g. {next(iter(state))})")
    if layout == "resnet":
        raise FrposeError(f"{source} is an ImageNet classifier; give it to --pretrained, not --init")
    return (state if layout == "frpose" else sbn_to_frpose(state)), f"{LAYOUT_NAMES[layout]} state dict"
