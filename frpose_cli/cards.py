"""Model cards: one YAML file per named model in ``models/`` (in a wheel: ``frpose_cli.model_cards``).

A card says everything needed to build, train and run a model: architecture, input
size, heatmap codec and σ, keypoint metadata, normalisation, the paper's training
recipe and the paper's reference figures.  Checkpoints embed the card they were
trained with, so later verbs need only the checkpoint.
"""
from __future__ import annotations

import dataclasses
import numbers
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from frpose_cli.errors import ArgumentTypeError, ArgumentValueError, FrposeError
from frpose_cli.data.keypoints import KeypointSpec
from frpose_cli.net.network import ArchSpec, PoseNet

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CHANNEL_ORDERS = ("rgb", "bgr")
MAX_INPUT_SIDE = 2048
_CHECKOUT_CARDS = Path(__file__).resolve().parent.parent / "models"


def parse_input_size(text: str, what: str = "input size") -> tuple[int, int]:
    """``"256x192"`` → ``(256, 192)`` (height × width, both multiples of 32)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX×,]\s*(\d+)\s*", str(text))
    if not m:
        raise ArgumentValueError(f"{what} must look like HxW, e.g. 256x192 (got {text!r})")
    return _checked_size(int(m.group(1)), int(m.group(2)), what)


def check_input_size(value, what: str = "input_size") -> tuple[int, int]:
    """The Python API's input size: ``"HxW"`` text or an (H, W) pair of ints → ``(H, W)``, by the rule
    :func:`parse_input_size` applies to the CLI's ``--input-size``."""
    if isinstance(value, str):
        return parse_input_size(value, what)
    want = f"{what} must be (height, width), two ints, or 'HxW' text"
    if not isinstance(value, (tuple, list)):
        raise ArgumentTypeError(f"{want} (got {type(value).__name__} {value!r})")
    if len(value) != 2:
        raise ArgumentValueError(f"{want} (got {len(value)} values: {value!r})")
    if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in value):
        raise ArgumentTypeError(f"{want} (got {value!r})")
    return _checked_size(int(value[0]), int(value[1]), what)


def _checked_size(h: int, w: int, what: str) -> tuple[int, int]:
    if h % 32 or w % 32 or h <= 0 or w <= 0:
        raise ArgumentValueError(f"{what} {h}x{w}: height and width must be positive multiples of 32 "
                                 "(the encoder downsamples 32×)")
    if max(h, w) > MAX_INPUT_SIDE:
        raise ArgumentValueError(f"{what} {h}x{w}: at most {MAX_INPUT_SIDE} pixels a side (person crops are "
                                 "256x192 or 384x288 in the paper; full-resolution heatmaps grow with the square)")
    return h, w


def size_key(hw) -> str:
    return f"{hw[0]}x{hw[1]}"


@dataclass(frozen=True)
class ModelCard:
    name: str
    description: str
    arch: ArchSpec
    input_size: tuple[int, int]
    keypoints: KeypointSpec
    codec: str = "sbn"
    sigma_table: dict = field(default_factory=dict)   # "HxW" → σ in heatmap pixels
    normalize: dict = field(default_factory=lambda: {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)})
    train: dict = field(default_factory=dict)
    paper: list = field(default_factory=list)

    @property
    def stride(self) -> int:
        return self.arch.stride

    @property
    def heatmap_size(self) -> tuple[int, int]:
        return self.input_size[0] // self.stride, self.input_size[1] // self.stride

    @property
    def sigma(self) -> float:
        """σ at this card's input size; sizes without an entry scale σ with the input height
        from the nearest listed size (σ is a fraction of the person's size, not a pixel constant)."""
        key = size_key(self.input_size)
        if key in self.sigma_table:
            return float(self.sigma_table[key])
        if not self.sigma_table:
            raise FrposeError(f"card {self.name} has no heatmap sigma")
        ref = min(self.sigma_table, key=lambda k: abs(parse_input_size(k)[0] - self.input_size[0]))
        return float(self.sigma_table[ref]) * self.input_size[0] / parse_input_size(ref)[0]

    def recipe(self, key: str):
        """A number of the training recipe (``train`` in the card, written by scripts/make_cards.py)."""
        if key not in self.train:
            raise FrposeError(f"card {self.name} has no train.{key}: its training recipe is incomplete "
                              "(cards are written by scripts/make_cards.py)")
        return self.train[key]

    @property
    def channel_order(self) -> str:
        """``rgb`` or ``bgr``: the channel order the weights were trained on (``normalize.channel_order``;
        mean/std apply per channel index either way, as the original Simple Baselines code did)."""
        return str(self.normalize.get("channel_order", "rgb"))

    def with_channel_order(self, order: str) -> "ModelCard":
        if order not in CHANNEL_ORDERS:
            raise FrposeError(f"channel order must be one of {', '.join(CHANNEL_ORDERS)} (got {order!r})")
        return dataclasses.replace(self, normalize={**self.normalize, "channel_order": order})

    def with_input_size(self, input_size) -> "ModelCard":
        if isinstance(input_size, str):
            input_size = parse_input_size(input_size)
        return dataclasses.replace(self, input_size=tuple(int(v) for v in input_size))

    def paper_reference(self) -> dict | None:
        for row in self.paper:
            if tuple(row.get("input_size", ())) == tuple(self.input_size):
                return row
        return None

    def build_model(self) -> PoseNet:
        return PoseNet(self.arch)

    def to_dict(self) -> dict:
        return {
            "name": self.name, "description": self.description,
            "architecture": {k: v for k, v in self.arch.to_dict().items() if k != "num_keypoints"},
            "input_size": list(self.input_size),
            "heatmap": {"codec": self.codec, "sigma": dict(self.sigma_table)},
            "keypoints": self.keypoints.to_dict(), "normalize": dict(self.normalize),
            "train": dict(self.train), "paper": list(self.paper),
        }

    @classmethod
    def from_dict(cls, d: dict, source: str = "card") -> "ModelCard":
        try:
            keypoints = KeypointSpec.from_dict(d["keypoints"])
            arch = ArchSpec(**d["architecture"], num_keypoints=keypoints.num_keypoints)
            heat = d.get("heatmap", {})
            return cls(
                name=str(d["name"]), description=str(d.get("description", "")), arch=arch,
                input_size=tuple(int(v) for v in d["input_size"]), keypoints=keypoints,
                codec=str(heat.get("codec", "sbn")),
                sigma_table={str(k): float(v) for k, v in heat.get("sigma", {}).items()},
                normalize=dict(d.get("normalize") or {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}),
                train=dict(d.get("train") or {}), paper=list(d.get("paper") or []),
            )
        except FrposeError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise FrposeError(f"{source}: invalid model card ({type(e).__name__}: {e})") from None


def _card_files() -> dict[str, object]:
    """Card name → file, from a checkout's models/ if present, else the installed package data."""
    files = {}
    if _CHECKOUT_CARDS.is_dir():
        files = {p.stem: p for p in _CHECKOUT_CARDS.glob("*.yaml")}
    if not files:
        try:
            root = resources.files("frpose_cli.model_cards")
            files = {p.name[:-5]: p for p in root.iterdir() if p.name.endswith(".yaml")}
        except (ModuleNotFoundError, FileNotFoundError):
            files = {}
    return files


def _natural(name: str):
    """``frpose-r18`` before ``frpose-r101``: digit runs compare as numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def list_cards() -> list[str]:
    return sorted(_card_files(), key=_natural)


# Files a MODEL argument is mistaken for (checkpoints, exported models): their error names the option that takes them
WEIGHTS_SUFFIXES = (".pt", ".pth", ".ckpt", ".onnx", ".xml", ".ts", ".bin", ".safetensors")


def unknown_card(name: str, use: str = "pass it as --weights {name}", weights: bool | None = None) -> FrposeError:
    """The one-line error for a MODEL that is no card: weights given where a card name goes (`export best.pt`,
    other tools' habit) are told the option that takes them (``use``); other names get the list of cards.
    ``weights``: whether ``name`` names weights (None: guessed from its form, a URL, a weights suffix, a file)."""
    if weights is None:
        weights = "://" in name or Path(name).suffix.lower() in WEIGHTS_SUFFIXES or Path(name).expanduser().is_file()
    if weights:
        return FrposeError(f"{name} is weights, not a model card name: {use.format(name=name)}")
    return FrposeError(f"unknown model {name!r}; known models: {', '.join(list_cards())}")


def check_card_name(name: str, use: str = "pass it as --weights {name}", weights: bool | None = None) -> None:
    """Raise :func:`unknown_card`'s error unless ``name`` is a card or a card's YAML path (checked before
    slower work: reading annotations, downloading weights)."""
    if not name.endswith((".yaml", ".yml")) and name not in _card_files():
        raise unknown_card(name, use, weights)


def load_card(name: str, input_size=None) -> ModelCard:
    """Load a named card, or a card from a YAML path; optionally override its input size."""
    path = Path(name)
    if name.endswith((".yaml", ".yml")):
        if not path.is_file():
            raise FrposeError(f"model card file not found: {name}")
        text, source = path.read_text(), name
    else:
        files = _card_files()
        if name not in files:
            raise unknown_card(name)
        text, source = files[name].read_text(), f"models/{name}.yaml"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise FrposeError(f"{source}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise FrposeError(f"{source}: a model card must be a YAML mapping")
    card = ModelCard.from_dict(data, source)
    return card.with_input_size(input_size) if input_size is not None else card
