"""One way to load and run a pose model, whatever the weights: ``load_pose_model`` → ``PoseModel``.

The weights argument is resolved by :mod:`frpose_cli.weights.loader` (file, zoo name or URL; the kind
of file is read from its content), then put behind a backend:

=============  ===============================================================================
backend        what runs
=============  ===============================================================================
torch          the PoseNet in an inference set-up of :mod:`frpose_cli.runtime.optimize` (``fused`` by
               default: BatchNorm folded, channels_last), or a TorchScript export
onnxruntime    an ONNX export, or a PyTorch network exported to ONNX in memory
               (:mod:`frpose_cli.runtime.onnxrt`); CPU only
openvino       an OpenVINO IR (``.xml``) or float32 ONNX export, or a PyTorch network exported to
               ONNX in memory (:mod:`frpose_cli.runtime.ovrt`); CPU only, optional package
auto           ONNX files → onnxruntime, IR files → openvino, TorchScript → torch, PyTorch weights →
               the set-up ``--precision`` gives (:mod:`frpose_cli.precision.formats`)
=============  ===============================================================================

A :class:`PoseModel` is an ``nn.Module``: ``heatmaps = pose_model(images_nchw_float)``, with
``.card`` (input size, keypoints, normalisation and channel order), ``.codec_name``,
``.backend``, ``.setup``, ``.precision`` and ``.weights``, so ``run_heatmaps`` and
``evaluate_model`` take it as they take a plain network.  PyTorch weights run in the precision
``--precision`` asks for (:mod:`frpose_cli.precision.formats`: fp32, bf16, fp16, int8, or ``auto``, gated
and timed once per model and machine); exported files run in the precision they were exported in,
except that a float32 file on OpenVINO may run with its bf16 hint (``--precision bf16``: the
precision is OpenVINO's compile option, not the file's).
"""
from __future__ import annotations

import os

import torch

from frpose_cli.api_arguments import callable_or_none, in_range, one_of, text_or_none
from frpose_cli.cards import check_input_size
from frpose_cli.device import pick_device
from frpose_cli.errors import ArgumentTypeError, FrposeError
from frpose_cli.runtime.export_format import METADATA_KEY, card_from_metadata, read_torchscript
from frpose_cli.runtime.onnxrt import OnnxRuntimeNet, onnxruntime_net, ort_session
from frpose_cli.precision.runnable import runnable_model
from frpose_cli.runtime.pose_model import PoseModel
from frpose_cli.runtime.optimize import BACKENDS, SETUPS, check_backend, prepare_for_inference, setup_named
from frpose_cli.precision.formats import CHOICES as PRECISION_CHOICES, unavailable_reason
from frpose_cli import hardware
from frpose_cli.weights.loader import WeightsFile, check_card_agrees, load_network, resolve_weights



def _cpu_only(backend: str, device: torch.device) -> None:
    if device.type != "cpu":
        raise FrposeError(f"the {backend} backend runs on the CPU here; drop --device or use --backend torch")


def load_onnx(weights: WeightsFile, model_name=None, input_size=None, threads=None) -> PoseModel:
    session = ort_session(str(weights.path), threads)
    meta = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if meta is None:
        raise FrposeError(f"{weights.path}: an ONNX file without frpose metadata; export it with `frpose export`")
    card, codec_name, meta = card_from_metadata(meta, str(weights.path))
    check_card_agrees(card, model_name, input_size, str(weights.path))
    precision = meta.get("precision", "fp32")
    return PoseModel(OnnxRuntimeNet(session), card, codec_name, "onnxruntime", "int8" if precision == "int8"
                     else "onnxruntime", weights, "ONNX file", precision)


def load_openvino(weights: WeightsFile, model_name=None, input_size=None, threads=None, precision=None,
                  hw=None, what: str = "--backend openvino") -> PoseModel:
    """An IR (``.xml``) or float32 ONNX export on OpenVINO, with the f32 hint or, asked for and
    native here, bf16 (``what``: who asks for OpenVINO, named when it is not installed)."""
    from frpose_cli.runtime import ovrt
    if not ovrt.available():
        raise FrposeError(ovrt.missing_message(what))
    model = ovrt.read_model(weights.path, what)
    meta = ovrt.file_metadata(model)
    if meta is None:
        raise FrposeError(f"{weights.path}: a model without frpose metadata; export it with `frpose export "
                          "--format openvino`")
    card, codec_name, meta = card_from_metadata(meta, str(weights.path))
    check_card_agrees(card, model_name, input_size, str(weights.path))
    if meta.get("precision", "fp32") != "fp32":
        raise FrposeError(f"{weights.path} was exported in {meta['precision']}: run it with --backend onnxruntime")
    run_in = "fp32" if precision in (None, "auto") else precision
    reason = unavailable_reason(run_in, "cpu", hw or hardware.detect("cpu"), "openvino")
    if reason or run_in not in ovrt.HINTS:
        raise FrposeError(f"--precision {run_in}: {reason or 'an OpenVINO model runs in fp32 or bf16'}")
    setup = "openvino" if run_in == "fp32" else "openvino_bf16"
    return PoseModel(ovrt.OpenVinoNet(model, run_in, threads, str(weights.path)), card, codec_name, "openvino",
                     setup, weights, "OpenVINO IR file" if weights.kind == "openvino" else "ONNX file", run_in)


def load_torchscript(weights: WeightsFile, model_name=None, input_size=None, device=None) -> PoseModel:
    module, meta_json = read_torchscript(weights.path, map_location=device or "cpu")
    if not meta_json:
        raise FrposeError(f"{weights.path}: a TorchScript file without frpose metadata; export it with `frpose export`")
    card, codec_name, meta = card_from_metadata(meta_json, str(weights.path))
    check_card_agrees(card, model_name, input_size, str(weights.path))
    return PoseModel(module.eval(), card, codec_name, "torchscript", "eager", weights, "TorchScript file",
                     meta.get("precision", "fp32"))


def check_file_precision(model: PoseModel, precision: str | None) -> PoseModel:
    """An exported file runs in the precision it was exported in; asking for another is an error."""
    if precision not in (None, "auto", model.precision):
        raise FrposeError(f"{model.source} was exported in {model.precision}; it runs as it is: drop "
                          f"--precision {precision}, or export the checkpoint with --precision {precision}")
    return model


def check_load_arguments(weights, model_name=None, input_size=None, backend="auto", device=None, setup=None,
                         threads=None, precision=None, log=None) -> tuple[int, int] | None:
    """:func:`load_pose_model`'s arguments checked before anything is read or downloaded: an
    ArgumentTypeError/ArgumentValueError naming the argument and what it takes.  Returns ``input_size``
    as (H, W), or None."""
    if not isinstance(weights, (str, os.PathLike, WeightsFile)):
        raise ArgumentTypeError(f"weights must be a path, zoo name or URL (str or os.PathLike; got "
                                f"{type(weights).__name__})")
    text_or_none(model_name, "model_name")
    one_of(backend, BACKENDS, "backend")
    if device is not None and (isinstance(device, bool) or not isinstance(device, (str, int, torch.device))):
        raise ArgumentTypeError(f"device must be 'cpu', 'cuda', 'cuda:N', a torch.device or None "
                                f"(got {type(device).__name__} {device!r})")
    one_of(setup, SETUPS, "setup", none_ok=True)
    if threads is not None:
        in_range(threads, "threads")
    one_of(precision, PRECISION_CHOICES, "precision", none_ok=True)
    callable_or_none(log, "log")
    return None if input_size is None else check_input_size(input_size)


def load_pose_model(weights, model_name: str | None = None, input_size=None, backend: str = "auto",
                    device: torch.device | str | None = None, setup: str | None = None,
                    threads: int | None = None, progress: bool = True, precision: str | None = None,
                    calib_data=None, log=None, decide_precision: bool = True) -> PoseModel:
    """Load any supported weights (see module docstring) into a ready-to-run :class:`PoseModel`.

    ``weights``: a path, zoo name or URL (or a resolved :class:`~frpose_cli.weights.loader.WeightsFile`);
    ``input_size``: (H, W) or ``"HxW"``, positive multiples of 32 (:func:`frpose_cli.cards.check_input_size`);
    ``device``: None → :func:`frpose_cli.device.pick_device`'s default, as the CLI (CUDA if present, else CPU);
    ``setup``: an inference set-up of :data:`frpose_cli.runtime.optimize.SETUPS`, used as it is (benchmarks);
    without it ``precision`` decides (:func:`frpose_cli.precision.runnable.runnable_model`; None: the device's
    default, ``auto`` on the CPU); ``calib_data``: a COCO root adding real crops to int8 calibration
    and the accuracy gate; ``progress``: show download progress; ``log``: one-line notes;
    ``decide_precision``: False keeps an undecided ``auto`` at float32 for this load (a short run).
    A wrong argument is a ValueError or TypeError naming it (:func:`check_load_arguments`), before any work.
    """
    input_size = check_load_arguments(weights, model_name, input_size, backend, device, setup, threads, precision,
                                      log)
    check_backend(backend)
    weights = weights if isinstance(weights, WeightsFile) else resolve_weights(weights, progress)
    kind = weights.kind
    # The CLI's device policy (CUDA if present, else CPU), so a script and `frpose predict` agree;
    # ONNX Runtime and OpenVINO run on the CPU here, so their default is the CPU.
    cpu_only = (kind in ("onnx", "openvino") or backend in ("onnxruntime", "openvino")
                or (setup is not None and setup_named(setup).device == "cpu"))
    device = pick_device(device, cpu_only=cpu_only)
    if kind == "openvino" or (kind == "onnx" and backend == "openvino"):
        if backend not in ("auto", "openvino"):
            raise FrposeError(f"{weights.path} is an OpenVINO IR file: run it with --backend openvino (or auto)")
        _cpu_only("openvino", device)
        who = "--backend openvino" if backend == "openvino" else f"{weights.path.name} (OpenVINO IR)"
        return load_openvino(weights, model_name, input_size, threads, precision, what=who)
    if kind == "onnx":
        if backend == "torch":
            raise FrposeError(f"{weights.path} is an ONNX file: run it with --backend onnxruntime")
        _cpu_only("onnxruntime", device)
        return check_file_precision(load_onnx(weights, model_name, input_size, threads), precision)
    if kind == "torchscript":
        if backend in ("onnxruntime", "openvino"):
            raise FrposeError(f"{weights.path} is a TorchScript file: it runs with --backend torch; export an "
                              f"{'ONNX' if backend == 'onnxruntime' else 'IR'} file for {backend}")
        return check_file_precision(load_torchscript(weights, model_name, input_size, device), precision)
    loaded = load_network(weights, model_name, input_size)
    if setup is None:
        model = runnable_model(loaded.net, loaded.card, device, precision, backend, loaded.codec_name,
                               str(weights.path), calib_data, log, decide=decide_precision)
        model.weights, model.what = weights, loaded.what
        return model
    spec = setup_named(setup)
    if backend != "auto" and spec.backend != backend:
        raise FrposeError(f"set-up {setup} runs on {spec.backend}; it does not run with --backend {backend}")
    if spec.device == "cpu":
        _cpu_only(spec.backend, device)
    if setup == "onnxruntime":
        net = onnxruntime_net(loaded.net, threads)
    elif spec.backend == "openvino":
        from frpose_cli.runtime.ovrt import openvino_net
        net = openvino_net(loaded.net, spec.precision, threads)
    else:
        net = prepare_for_inference(loaded.net, device, setup)
    return PoseModel(net, loaded.card, loaded.codec_name, spec.backend, setup, weights, loaded.what, spec.precision)
