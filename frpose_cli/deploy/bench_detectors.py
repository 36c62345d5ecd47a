"""`frpose bench --detector`: the zoo's person detectors timed on this machine, each in every set-up it runs
here, against two ceilings: its precision's measured one (:mod:`frpose_cli.deploy.ceiling`) and the
network's own roofline (:mod:`frpose_cli.deploy.roofline`).

The weights are random, in the published shapes: speed does not depend on their values, and the zoo's
files need not be downloaded to compare the detectors.  Two things about random weights do matter and are
set as a trained network has them: RTMDet's convolutions are He-initialised (torch's default init shrinks
activations into float32 denormals, which are slow and which a trained network's never are), and the class
heads are sure of "nobody", so that non-maximum suppression, whose cost depends on what is found, does not
time thousands of random boxes.  Each image runs through the whole detector as ``predict`` calls it
(letterbox or resize, network, decoding), warm, one image per call.

The scripts that measured docs/detectors.md and docs/benchmarks.md use the same functions
(scripts/bench_detector_setups.py, scripts/bench_predict.py).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from frpose_cli.errors import ArgumentValueError

SETUP_ORDER = ("fp32", "fused", "bf16", "fp16", "onnxruntime", "openvino", "openvino_bf16")
SYNTHETIC_SIZE = (480, 640)     # (H, W) of the stand-in image: COCO's most common size


@dataclass
class DetectorBenchRow:
    detector: str
    setup: str
    precision: str
    device: str
    images: int
    input: str                 # what the network sees: "640x640 letterbox", "800 px short side"
    ms_per_image: float        # median over the timed passes of the mean over the images
    gflop_per_image: float     # the float32 network's FLOPs (2 × multiply-adds) per image
    gflops_per_s: float
    ceiling_gflops: float | None = None
    pct_ceiling: float | None = None
    roofline_gflops: float | None = None
    pct_roofline: float | None = None
    memory_bound_flops_pct: float | None = None   # share of the FLOPs in layers the roofline finds memory-bound
    person_ap: float | None = None   # published, from the zoo

    def to_dict(self) -> dict:
        return asdict(self)


def _sure_of_nobody(model) -> None:
    """Class heads that find no one: RTMDet's logits far below 0; torchvision's "background" far above the rest."""
    with torch.no_grad():
        if hasattr(model, "bbox_head"):
            for conv in model.bbox_head.rtm_cls:
                conv.bias.fill_(-20.0)
        elif hasattr(model, "roi_heads"):
            model.roi_heads.box_predictor.cls_score.bias[0] = 20.0
        else:   # SSDlite: each level's last conv gives anchors × classes logits
            for level in model.head.classification_head.module_list:
                level[-1].bias.view(-1, 91)[:, 0] = 20.0


def random_detector_file(arch: str, folder) -> Path:
    """A weights file of zoo detector ``arch`` with random values (see the module docstring), laid out as the
    publisher's file is, written once into ``folder``."""
    from frpose_cli.inference.detector_archs import ARCHS
    from frpose_cli.net.rtmdet import PUBLISHED, RTMDet, spec_for
    if arch not in PUBLISHED and arch not in ARCHS:
        raise ValueError(f"arch must be a zoo detector ({', '.join((*ARCHS, *PUBLISHED))}), not {arch!r}")
    path = Path(folder) / f"{arch}.pth"
    if path.exists():
        return path
    torch.manual_seed(0)
    model = RTMDet(spec_for(**PUBLISHED[arch])) if arch in PUBLISHED else ARCHS[arch][0](91)
    if arch in PUBLISHED:
        # BatchNorm (identity when random) follows every conv; He init keeps the activations at a trained
        # network's scale.  torchvision's builders initialise their detection heads themselves (FrozenBatchNorm
        # is identity too, so He init would let activations grow from one residual block to the next).
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.Conv2d):
                    m.weight.normal_(0, (2.0 / m.weight[0].numel()) ** 0.5)
    _sure_of_nobody(model)
    state = model.state_dict()
    torch.save({"meta": {}, "state_dict": state} if arch in PUBLISHED else state, path)
    return path


def network_inputs(det, image: np.ndarray):
    """What ``det``'s float32 network is called with for ``image`` (RGB), as its own detect step builds it."""
    from frpose_cli.inference.rtmdet_detector import RTMDetDetector, letterbox, to_input
    if isinstance(det, RTMDetDetector):
        return to_input(letterbox(image, det.size)[0][None], det.device)
    return [torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255).to(det.device)]


def network_costs(det, images: list) -> tuple[float, list]:
    """(total float32 FLOPs over ``images``, counted by torch's FlopCounterMode; each image's layer costs)."""
    from torch.utils.flop_counter import FlopCounterMode

    from frpose_cli.deploy.roofline import layer_costs
    total, costs = 0.0, []
    for image in images:
        inputs = network_inputs(det, image)
        counter = FlopCounterMode(display=False)
        with counter, torch.inference_mode():
            det.model(inputs)
        total += counter.get_total_flops()
        costs.append(layer_costs(det.model, inputs))
    return total, costs


def time_detector(det, images: list, rounds: int = 3, warmup: int = 1) -> float:
    """Seconds per image of ``det`` called on each image in turn, warm: the median over ``rounds`` passes."""
    items = [SimpleNamespace(image=im, file_name=f"{i}.jpg", frame=None) for i, im in enumerate(images)]
    for _ in range(max(warmup, 1)):            # kernels made for each image size
        for item in items:
            det(item)
    passes = []
    for _ in range(max(rounds, 1)):
        start = time.perf_counter()
        for item in items:
            det(item)                          # boxes come back as numpy: the device has finished
        passes.append((time.perf_counter() - start) / len(items))
    return float(np.median(passes))


def _input_of(det) -> str:
    """What the network is fed, in words (RTMDet's square letterbox, torchvision's resize)."""
    from frpose_cli.inference.rtmdet_detector import RTMDetDetector
    if isinstance(det, RTMDetDetector):
        return f"{det.size}x{det.size} letterbox"
    transform = det.model.transform
    if getattr(transform, "fixed_size", None):
        return f"{transform.fixed_size[0]}x{transform.fixed_size[1]} resize"
    return f"{transform.min_size[0]} px short side"


def synthetic_images(count: int = 1) -> list:
    """Stand-in images of COCO's usual size (content does not change the time of a detector sure of nobody)."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (*SYNTHETIC_SIZE, 3), np.uint8) for _ in range(count)]


def ceiling_shares(ceilings: dict, precision: str, flops: float, costs: list, seconds: float, device, hw,
                   log=None) -> dict:
    """The rate of ``flops`` done in ``seconds`` (``costs``: the same work's layer costs, one list per image) and
    its shares of ``precision``'s measured ceiling and of the roofline.  ``ceilings`` keeps what is measured
    (each precision's GFLOP/s, ``bandwidth_gb_s``), once per run."""
    from frpose_cli.deploy.ceiling import measure_ceiling
    from frpose_cli.deploy.roofline import measure_bandwidth, roofline
    if precision not in ceilings:
        if log:
            log(f"measuring the {precision} ceiling")
        ceilings[precision] = measure_ceiling(device, precision, hw).gflops
    if "bandwidth_gb_s" not in ceilings:
        ceilings["bandwidth_gb_s"] = measure_bandwidth(device=device)
    bounds = [roofline(c, precision, ceilings[precision], ceilings["bandwidth_gb_s"]) for c in costs]
    bound = sum(b.seconds for b in bounds)
    rate = flops / seconds / 1e9
    return {"gflops_per_s": round(rate, 1), "ceiling_gflops": round(ceilings[precision], 1),
            "pct_ceiling": round(100 * rate / ceilings[precision], 1),
            "roofline_gflops": round(flops / bound / 1e9, 1), "pct_roofline": round(100 * bound / seconds, 1),
            "memory_bound_flops_pct": round(100 * sum(b.memory_bound_flops_share * b.flops for b in bounds) / flops, 1)}


def bench_detectors(archs: list, setups: list | None, device, images: list | None = None, rounds: int = 3,
                    warmup: int = 1, hw=None, log=print) -> tuple[list, dict]:
    """Every (detector, set-up) pair that runs on ``device``: rows and the ceilings measured (precision →
    GFLOP/s, and ``bandwidth_gb_s``).  ``setups`` None: every set-up the detector runs natively here."""
    import tempfile

    from frpose_cli import hardware
    from frpose_cli.inference.detectors import build_detector
    from frpose_cli.runtime.optimize import SETUP_PRECISION
    from frpose_cli.weights import zoo
    known = [e.name for e in zoo.DETECTORS]
    if not archs or any(a not in known for a in archs):   # all checked before any is timed
        raise ArgumentValueError(f"archs must name zoo detectors ({', '.join(known)}), not {list(archs)!r}")
    device = torch.device(device)
    hw = hw or hardware.detect(device)
    images = images if images else synthetic_images()
    ceilings: dict = {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in archs:
            entry = zoo.get(arch)
            path = random_detector_file(arch, tmp)
            reference = build_detector(arch, path, device, 0.3, None, "fp32")
            flops, costs = network_costs(reference, images)
            what = _input_of(reference)
            for setup in (setups or SETUP_ORDER):
                why = reference._unavailable(setup, hw)
                if why:
                    if setups:
                        log(f"{arch} {setup}: skipped ({why})")
                    continue
                log(f"{arch} {setup}")
                det = reference if setup == "fp32" else build_detector(arch, path, device, 0.3, None, setup)
                seconds = time_detector(det, images, rounds, warmup)
                precision = SETUP_PRECISION.get(setup, setup)
                share = ceiling_shares(ceilings, precision, flops, costs, seconds * len(images), device, hw, log)
                rows.append(DetectorBenchRow(arch, setup, precision, str(device), len(images), what,
                                             round(seconds * 1000, 2), round(flops / len(images) / 1e9, 3),
                                             person_ap=entry.person_ap, **share))
    return rows, ceilings


def print_detector_table(console, rows: list, device, hw, ceilings: dict) -> None:
    from rich.table import Table
    table = Table(title=f"frpose bench --detector — {device}, {torch.get_num_threads()} threads; random weights "
                        "of the published shapes",
                  caption="ms: the whole detector per image (resize, network, decoding), warm, median of the "
                          "passes; GFLOP: the float32 network's. % roofline: of the network's own bound "
                          "(docs/detectors.md).")
    for col in ("detector", "set-up", "prec.", "input", "person AP", "ms/image", "GFLOP/image", "GFLOP/s",
                "% ceiling", "% roofline"):
        table.add_column(col, justify="left" if col in ("detector", "set-up", "prec.", "input") else "right",
                         min_width=len("openvino_bf16") if col == "set-up" else None)
    for r in rows:
        table.add_row(r.detector, r.setup, r.precision, r.input,
                      "-" if r.person_ap is None else f"{r.person_ap:.1f}", f"{r.ms_per_image:.1f}",
                      f"{r.gflop_per_image:.2f}", f"{r.gflops_per_s:.0f}", f"{r.pct_ceiling:.0f}%",
                      f"{r.pct_roofline:.0f}%")
    console.print(table)
    say = lambda msg: console.print(msg, markup=False, highlight=False)  # noqa: E731
    say(f"machine: {hw.describe(device)}")
    from frpose_cli.deploy.roofline import bandwidth_words
    say("ceilings (GFLOP/s): " + ", ".join(f"{p} {v:.0f}" for p, v in ceilings.items() if p != "bandwidth_gb_s")
        + f"; copy bandwidth (GB/s) by working set: {bandwidth_words(ceilings.get('bandwidth_gb_s', {}))}")
