"""One way to load and run a pose model, whatever the weights: ``load_pose_model`` → ``PoseModel``.

The weights argument is resolved by :mod:`frpose_cli.weights` (file, zoo name or URL; the kind
of file is read from its content), then put behind a backend:

=============  ===============================================================================
backend        what runs
=============  ===============================================================================
torch          the PoseNet in an inference set-up of :mod:`frpose_cli.optimize` (``fused`` by
               default: BatchNorm folded, channels_last), or a TorchScript export
onnxruntime    an ONNX export, or a PyTorch network exported to ONNX in memory
               (:mod:`frpose_cli.onnxrt`); CPU only
auto           ONNX files → onnxruntime, TorchScript → torch, PyTorch weights → the fastest set-up
               measured for the device (:func:`frpose_cli.optimize.default_setup`)
=============  ===============================================================================

A :class:`PoseModel` is an ``nn.Module``: ``heatmaps = pose_model(images_nchw_float)``, with
``.card`` (input size, keypoints, normalisation and channel order), ``.codec_name``,
``.backend``, ``.setup`` and ``.weights``, so ``run_heatmaps`` and ``evaluate_model`` take it as
they take a plain network.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from .cards import ModelCard
from .errors import FrposeError
from .export_format import METADATA_KEY, card_from_metadata
from .onnxrt import OnnxRuntimeNet, onnxruntime_net, ort_session
from .optimize import default_setup, input_memory_format, prepare_for_inference
from .weights import WeightsFile, check_card_agrees, load_network, resolve_weights

BACKENDS = ("auto", "torch", "onnxruntime")


class PoseModel(nn.Module):
    """Common face of every backend: ``forward(images) -> heatmaps`` (N, K, Hh, Wh) float32."""

    def __init__(self, net: nn.Module, card: ModelCard, codec_name: str | None, backend: str, setup: str,
                 weights: WeightsFile | None = None, what: str = ""):
        super().__init__()
        self.net, self.card, self.codec_name = net, card, codec_name or card.codec
        self.backend, self.setup, self.weights, self.what = backend, setup, weights, what

    @property
    def input_memory_format(self) -> torch.memory_format:
        return input_memory_format(self.setup)

    @property
    def fixed_batch(self) -> int | None:
        """The batch a static-batch ONNX export takes (None: any)."""
        return getattr(self.net, "fixed_batch", None)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images.contiguous(memory_format=self.input_memory_format)).float()


def _cpu_only(backend: str, device: torch.device) -> None:
    if device.type != "cpu":
        raise FrposeError(f"the {backend} backend runs on the CPU here; drop --device or use --backend torch")


def load_onnx(weights: WeightsFile, model_name=None, input_size=None, threads=None) -> PoseModel:
    session = ort_session(str(weights.path), threads)
    meta = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if meta is None:
        raise FrposeError(f"{weights.path}: an ONNX file without frpose metadata; export it with `frpose export`")
    card, codec_name, _ = card_from_metadata(meta, str(weights.path))
    check_card_agrees(card, model_name, input_size, str(weights.path))
    return PoseModel(OnnxRuntimeNet(session), card, codec_name, "onnxruntime", "onnxruntime", weights, "ONNX file")


def load_torchscript(weights: WeightsFile, model_name=None, input_size=None, device=None) -> PoseModel:
    extra = {f"{METADATA_KEY}.json": ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)   # "torch.jit.load is deprecated"
            module = torch.jit.load(str(weights.path), map_location=device or "cpu", _extra_files=extra)
    except Exception as e:
        raise FrposeError(f"{weights.path}: not a readable TorchScript file ({type(e).__name__})") from None
    if not extra[f"{METADATA_KEY}.json"]:
        raise FrposeError(f"{weights.path}: a TorchScript file without frpose metadata; export it with `frpose export`")
    card, codec_name, _ = card_from_metadata(extra[f"{METADATA_KEY}.json"], str(weights.path))
    check_card_agrees(card, model_name, input_size, str(weights.path))
    return PoseModel(module.eval(), card, codec_name, "torchscript", "eager", weights, "TorchScript file")


def load_pose_model(weights, model_name: str | None = None, input_size=None, backend: str = "auto",
                    device: torch.device | str | None = None, setup: str | None = None,
                    threads: int | None = None, progress: bool = True) -> PoseModel:
    """Load any supported weights (see module docstring) into a ready-to-run :class:`PoseModel`.

    ``weights``: a path, zoo name or URL (or a resolved :class:`~frpose_cli.weights.WeightsFile`);
    ``setup``: a torch set-up of :data:`frpose_cli.optimize.SETUPS` (implies ``backend="torch"``
    unless it is ``onnxruntime``); ``progress``: show download progress.
    """
    if backend not in BACKENDS:
        raise FrposeError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    weights = weights if isinstance(weights, WeightsFile) else resolve_weights(weights, progress)
    kind = weights.kind
    if kind == "onnx":
        if backend == "torch":
            raise FrposeError(f"{weights.path} is an ONNX file: run it with --backend onnxruntime")
        _cpu_only("onnxruntime", device)
        return load_onnx(weights, model_name, input_size, threads)
    if kind == "torchscript":
        if backend == "onnxruntime":
            raise FrposeError(f"{weights.path} is a TorchScript file: it runs with --backend torch; export an "
                              "ONNX file for onnxruntime")
        return load_torchscript(weights, model_name, input_size, device)
    loaded = load_network(weights, model_name, input_size)
    if setup is None:
        setup = {"auto": default_setup(device), "torch": "fused", "onnxruntime": "onnxruntime"}[backend]
    elif backend == "onnxruntime" and setup != "onnxruntime":
        raise FrposeError(f"set-up {setup} is a torch set-up; it does not run with --backend onnxruntime")
    if setup == "onnxruntime":
        _cpu_only("onnxruntime", device)
        net = onnxruntime_net(loaded.net, threads)
    else:
        net = prepare_for_inference(loaded.net, device, setup)
    return PoseModel(net, loaded.card, loaded.codec_name, "onnxruntime" if setup == "onnxruntime" else "torch",
                     setup, weights, loaded.what)
