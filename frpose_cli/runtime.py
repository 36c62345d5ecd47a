"""One way to load and run a pose model, whatever the file: ``load_pose_model`` → ``PoseModel``.

Files understood (detected from the content, not trusted from the name):

* frpose checkpoints (``frpose train``; they record card, input size and codec);
* published state dicts: Simple Baselines (bare or a training checkpoint with ``module.``
  prefixes) and mmpose SimpleBaseline (see :mod:`frpose_cli.published`) — they record no
  card, so the card is ``--model`` or ``sbn-r{depth}`` inferred from the encoder, and the
  input size is ``--input-size`` or the card's;
* a bare frpose state dict (needs ``--model``);
* ONNX and TorchScript files written by ``frpose export`` (they carry their metadata).

A :class:`PoseModel` is an ``nn.Module``: ``heatmaps = pose_model(images_nchw_float)``,
with ``.card``, ``.codec_name``, ``.backend`` and ``.setup``, so ``run_heatmaps`` and
``evaluate_model`` take it as they take a plain network.  Every checkpoint read uses
``weights_only=True`` (:func:`frpose_cli.checkpoint.read_checkpoint_file`).
"""
from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .cards import ModelCard, load_card
from .checkpoint import FORMAT as CHECKPOINT_FORMAT, card_from_checkpoint, check_weights_path, load_state_into, \
    read_checkpoint_file
from .errors import FrposeError
from .optimize import default_setup, input_memory_format, prepare_for_inference
from .published import LAYOUT_NAMES, infer_depth, load_published_into, published_to_sbn, unwrap_state_dict

BACKENDS = ("auto", "torch", "onnxruntime")
EXPORT_FORMAT = "frpose-export/1"
METADATA_KEY = "frpose"            # ONNX metadata_props key / TorchScript extra file "frpose.json"


class PoseModel(nn.Module):
    """Common face of every backend: ``forward(images) -> heatmaps`` (N, K, Hh, Wh) float32."""

    backend = "torch"
    precision = "fp32"          # set by frpose_cli.precision.wrap; exported files say theirs
    selection = None            # --precision auto: the autoselect.Selection that chose it

    def __init__(self, card: ModelCard, codec_name: str | None, setup: str, source: str):
        super().__init__()
        self.card, self.codec_name, self.setup, self.source = card, codec_name or card.codec, setup, source

    @property
    def input_memory_format(self) -> torch.memory_format:
        return input_memory_format(self.setup)

    def describe(self) -> str:
        return (f"{self.card.name} {self.card.input_size[0]}x{self.card.input_size[1]} "
                f"({self.backend}, {self.setup}, {self.precision})")


class TorchPoseModel(PoseModel):
    """A PyTorch network (eager, BN-folded, bf16 or compiled, see :mod:`frpose_cli.optimize`)."""

    def __init__(self, net: nn.Module, card, codec_name=None, setup="eager", source=""):
        super().__init__(card, codec_name, setup, source)
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images.contiguous(memory_format=self.input_memory_format)).float()


class TorchScriptPoseModel(TorchPoseModel):
    backend = "torchscript"


class OnnxRuntimeNet(nn.Module):
    """An ONNX Runtime CPU session as a module.  A static-batch graph runs larger batches in chunks."""

    def __init__(self, session):
        super().__init__()
        self.session = session
        inp = session.get_inputs()[0]
        self.input_name = inp.name
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        # No weights live in torch; a zero-size parameter lets callers ask for the device
        # (next(model.parameters()).device), as run_heatmaps and evaluate_model do.
        self.device_anchor = nn.Parameter(torch.empty(0), requires_grad=False)

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        if self.device_anchor.device.type != "cpu":
            raise FrposeError("the onnxruntime backend runs on the CPU here; drop --device or use --backend torch")
        return out

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.detach().to("cpu", torch.float32).contiguous().numpy()
        step = self.fixed_batch or max(len(x), 1)
        outs = []
        for i in range(0, len(x), step):
            chunk = x[i:i + step]
            n = len(chunk)
            if n < step:   # a static-batch graph takes exactly `step` images: pad the last chunk
                chunk = np.concatenate([chunk, np.zeros((step - n, *chunk.shape[1:]), np.float32)])
            outs.append(torch.from_numpy(self.session.run(None, {self.input_name: chunk})[0][:n]))
        return torch.cat(outs)


class OnnxRuntimePoseModel(PoseModel):
    backend = "onnxruntime"

    def __init__(self, session, card, codec_name=None, source=""):
        super().__init__(card, codec_name, "onnxruntime", source)
        self.net = OnnxRuntimeNet(session)

    @property
    def fixed_batch(self):
        return self.net.fixed_batch

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


# --- file kinds -----------------------------------------------------------------------------

def detect_file_kind(path: Path) -> str:
    """``onnx``, ``torchscript`` or ``torch`` (anything torch.load may read)."""
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
    return "torch"


def _agree(card: ModelCard, model_name, input_size, source) -> None:
    if model_name and model_name != card.name:
        raise FrposeError(f"{source} holds a {card.name} model, not {model_name}")
    if input_size is not None and tuple(input_size) != tuple(card.input_size):
        raise FrposeError(f"{source} is for {card.input_size[0]}x{card.input_size[1]} inputs, "
                          f"not {input_size[0]}x{input_size[1]}")


def card_from_metadata(meta_json: str, source: str) -> tuple[ModelCard, str | None, dict]:
    try:
        meta = json.loads(meta_json)
    except (TypeError, ValueError):
        raise FrposeError(f"{source}: its frpose metadata is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        raise FrposeError(f"{source}: metadata is not '{EXPORT_FORMAT}'")
    card = ModelCard.from_dict(meta["card"], source=source)
    return card, (meta.get("codec") or {}).get("name"), meta


# --- torch-readable files -------------------------------------------------------------------

def network_from_torch_file(path: Path, model_name=None, input_size=None):
    """Any torch-readable checkpoint → ``(net in eval mode, card, codec name, description)``."""
    obj = read_checkpoint_file(path)
    source = str(path)
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        card = card_from_checkpoint(obj, source)
        _agree(card, model_name, input_size, source)
        net = card.build_model()
        load_state_into(net, obj["state_dict"], source)
        return net.eval(), card, (obj.get("codec") or {}).get("name"), "frpose checkpoint"
    layout, state = published_to_sbn(unwrap_state_dict(obj, source))
    if layout == "resnet":
        raise FrposeError(f"{source} is a torchvision ResNet classifier (encoder only, no pose head): use it "
                          "to initialise training with `frpose train MODEL --pretrained FILE`")
    if layout == "unknown":
        raise FrposeError(f"{source}: unrecognised key layout (e.g. {next(iter(state))}); expected an frpose "
                          "checkpoint, a Simple Baselines or mmpose SimpleBaseline state dict")
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
    return net.eval(), card, card.codec, f"{LAYOUT_NAMES[layout]} state dict"


# --- ONNX Runtime ---------------------------------------------------------------------------

def ort_session(model_bytes_or_path, threads: int | None = None):
    try:
        import onnxruntime as ort
    except ImportError:
        raise FrposeError("the onnxruntime backend needs the onnxruntime package: pip install onnxruntime") from None
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Same thread budget as torch, so backends are compared (and share the machine) fairly.
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(model_bytes_or_path, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise FrposeError(f"onnxruntime cannot load the model ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200] if str(e) else 'no detail'})") from None


def load_onnx(path: Path, model_name=None, input_size=None, threads=None) -> OnnxRuntimePoseModel:
    session = ort_session(str(path), threads)
    meta = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if meta is None:
        raise FrposeError(f"{path}: an ONNX file without frpose metadata; export it with `frpose export`")
    card, codec_name, meta = card_from_metadata(meta, str(path))
    _agree(card, model_name, input_size, str(path))
    model = OnnxRuntimePoseModel(session, card, codec_name, str(path))
    model.precision = meta.get("precision", "fp32")
    return model


def onnx_model_from_net(net: nn.Module, card, codec_name=None, source="", threads=None) -> OnnxRuntimePoseModel:
    """Export ``net`` to ONNX in memory and open it in ONNX Runtime (what bench and
    ``--backend onnxruntime`` with a torch checkpoint use)."""
    from .export import onnx_bytes
    data = onnx_bytes(net, card, codec_name=codec_name, dynamic_batch=True)
    return OnnxRuntimePoseModel(ort_session(data, threads), card, codec_name, source)


def onnxruntime_net(net: nn.Module, threads=None) -> OnnxRuntimeNet:
    """The ``onnxruntime`` inference set-up: ``net`` exported in memory with symbolic batch,
    height and width (the network is fully convolutional), run by ONNX Runtime."""
    from .export import onnx_bytes_any_size
    return OnnxRuntimeNet(ort_session(onnx_bytes_any_size(net), threads))


def load_torchscript(path: Path, model_name=None, input_size=None, device=None) -> TorchScriptPoseModel:
    extra = {f"{METADATA_KEY}.json": ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)   # "torch.jit.load is deprecated"
            module = torch.jit.load(str(path), map_location=device or "cpu", _extra_files=extra)
    except Exception as e:
        raise FrposeError(f"{path}: not a readable TorchScript file ({type(e).__name__})") from None
    if not extra[f"{METADATA_KEY}.json"]:
        raise FrposeError(f"{path}: a TorchScript file without frpose metadata; export it with `frpose export`")
    card, codec_name, meta = card_from_metadata(extra[f"{METADATA_KEY}.json"], str(path))
    _agree(card, model_name, input_size, str(path))
    model = TorchScriptPoseModel(module.eval(), card, codec_name, "eager", str(path))
    model.precision = meta.get("precision", "fp32")
    return model


# --- entry point ----------------------------------------------------------------------------

def check_file_precision(model: PoseModel, precision: str | None) -> PoseModel:
    """An exported file runs in the precision it was exported in; asking for another is an error."""
    if precision not in (None, "auto", model.precision):
        raise FrposeError(f"{model.source} was exported in {model.precision}; it runs as it is: drop "
                          f"--precision {precision}, or export the checkpoint with --precision {precision}")
    return model


def load_pose_model(weights, model_name: str | None = None, input_size=None, backend: str = "auto",
                    device: torch.device | str | None = None, setup: str | None = None,
                    threads: int | None = None, precision: str | None = None, calib_data=None,
                    log=None) -> PoseModel:
    """Load any supported file (see module docstring) into a ready-to-run :class:`PoseModel`.

    ``backend``: ``auto`` (ONNX files → onnxruntime, TorchScript → torch, PyTorch weights → the
    fastest set-up, :func:`~frpose_cli.optimize.default_setup`: ONNX Runtime on CPU), ``torch``
    (``setup`` or fused) or ``onnxruntime`` (PyTorch weights are exported to ONNX in memory).
    ``precision`` (PyTorch weights; exported files run in the precision they were exported in):
    see :func:`frpose_cli.precision.runnable_model`; None is the device's default.
    """
    if backend not in BACKENDS:
        raise FrposeError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    path = check_weights_path(weights)
    device = torch.device(device) if device is not None else torch.device("cpu")
    kind = detect_file_kind(path)
    if kind == "onnx":
        if backend == "torch":
            raise FrposeError(f"{path} is an ONNX file: run it with --backend onnxruntime")
        if device.type != "cpu":
            raise FrposeError("the onnxruntime backend runs on the CPU here; drop --device or use --backend torch")
        return check_file_precision(load_onnx(path, model_name, input_size, threads), precision)
    if kind == "torchscript":
        if backend == "onnxruntime":
            raise FrposeError(f"{path} is a TorchScript file: it runs with --backend torch; export an "
                              "ONNX file for onnxruntime")
        return check_file_precision(load_torchscript(path, model_name, input_size, device), precision)
    net, card, codec_name, what = network_from_torch_file(path, model_name, input_size)
    if setup is None:
        from .precision import runnable_model
        return runnable_model(net, card, device, precision, backend, codec_name, str(path), calib_data, log)
    if backend == "auto":
        backend = "torch" if setup else ("onnxruntime" if default_setup(device) == "onnxruntime" else "torch")
    if backend == "onnxruntime":
        if device.type != "cpu":
            raise FrposeError("the onnxruntime backend runs on the CPU here; drop --device or use --backend torch")
        return onnx_model_from_net(net, card, codec_name, str(path), threads)
    setup = setup if setup and setup != "onnxruntime" else "fused"
    return TorchPoseModel(prepare_for_inference(net, device, setup), card, codec_name, setup, str(path))
