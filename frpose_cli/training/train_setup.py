"""What a training run is before its first step: its configuration, resuming, its folder, its RNG.

Resuming (``--resume RUN_DIR`` or a checkpoint file):

* the run continues **in the folder of the checkpoint given** (a moved run writes where it now
  is), or in ``--out`` when that is given;
* options that do not change the optimisation's path (:data:`RESUME_OVERRIDES`: epochs, workers,
  device, validation, data locations, ...) take the value given on the command line, *whatever it
  is* — the CLI records which options were typed (``TrainConfig.given``), so ``--workers 2`` can
  restore a default; the others must match the checkpoint (changing them would break the exact
  continuation) and are refused with the two values;
* a finished run (its last epoch done) is not an error: ``--epochs N`` with a larger N extends it
  when it was finished with ``--keep-last``; without it, its ``last.pt`` holds the weights only (no
  optimiser state: a third of the size) and extending it is refused in one line that says how to
  train on from those weights (``--init``); only a ``last.pt`` is taken as a run's checkpoint, any
  other file without training state (``best.pt``) is refused as weights only;
* a damaged checkpoint (a zip cut short: a copy or disk that failed) is refused in one line that
  says how to recover: resume from an earlier copy in the run folder if there is one, else start
  again (no earlier epoch's training state is kept; ``best.pt`` holds weights only).
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from frpose_cli import run_folders
from frpose_cli.cards import check_card_name, load_card
from frpose_cli.weights.checkpoint import card_from_checkpoint, holds_training_state, load_checkpoint, zip_damage
from frpose_cli.data.codecs import make_codec
from frpose_cli.data.dataset import keypoint_spec, load_coco
from frpose_cli.errors import FrposeError
from frpose_cli.data.oks_sigmas import resolve_sigmas

RESUME_OVERRIDES = ("epochs", "workers", "device", "out", "val_every", "val_ap", "quiet", "progress", "log_every",
                    "data", "train_ann", "train_images", "val_ann", "val_images", "keep_last")


@dataclass
class TrainConfig:
    model: str | None = None
    data: str | None = None
    train_ann: str | None = None
    train_images: str | None = None
    val_ann: str | None = None
    val_images: str | None = None
    input_size: list | None = None      # [h, w]; None → the card's
    epochs: int | None = None           # None → the card's recipe
    batch_size: int | None = None       # per process
    lr: float | None = None
    lr_steps: list | None = None        # epochs where lr drops ×lr_factor; None → the card's
    workers: int = 2
    amp: bool | None = None
    device: str | None = None
    pretrained: str | None = "auto"
    init: str | None = None             # weights to warm-start from (init_weights.init_from)
    resume: str | None = None
    out: str | None = None
    seed: int | None = None
    val_every: int = 1                  # 0 → no validation
    val_ap: bool | None = None          # None/True → COCO AP with GT boxes and flip test on rank 0
    sync_bn: bool | None = None
    targets: str | None = None          # "loader" (heatmaps built by the workers) or "device"
    codec: str | None = None
    augment: bool | None = None         # None/True → the card's augmentation; False → none
    sigmas: str | None = None           # --sigmas: OKS σ list or JSON file (oks_sigmas.py)
    log_every: int = 10
    quiet: bool = False                 # Python API: no output at all (tests)
    progress: bool = True               # --progress/--no-progress: the bar; log lines stay
    keep_last: bool = False             # --keep-last: a finished run's last.pt keeps the training state
    given: tuple = ()                   # option names typed on the command line (empty: Python API)

    def was_given(self, name: str) -> bool:
        """Typed by the user; from Python (no ``given``): set to something other than its default."""
        if self.given:
            return name in self.given
        default = TrainConfig.__dataclass_fields__[name].default
        return getattr(self, name) is not None and getattr(self, name) != default


def data_paths(cfg: TrainConfig) -> TrainConfig:
    root = Path(cfg.data) if cfg.data else None
    if root is not None and not root.is_dir():
        raise FrposeError(f"--data {root}: no such folder (expected a COCO root with annotations/ and train2017/)")

    def pick(value, default):
        return value if value else (str(root / default) if root is not None else None)
    cfg.train_ann = pick(cfg.train_ann, "annotations/person_keypoints_train2017.json")
    cfg.train_images = pick(cfg.train_images, "train2017")
    if not cfg.train_ann or not cfg.train_images:
        raise FrposeError("give --data COCO_ROOT, or both --train-ann and --train-images")
    val_ann = pick(cfg.val_ann, "annotations/person_keypoints_val2017.json")
    cfg.val_ann = val_ann if val_ann and (cfg.val_ann or Path(val_ann).is_file()) else None
    cfg.val_images = pick(cfg.val_images, "val2017") if cfg.val_ann else None
    return cfg


def merge_resume(cfg: TrainConfig, saved: dict, checkpoint: Path) -> TrainConfig:
    """The resumed run's configuration: saved, with what may change taken from ``cfg``."""
    merged = TrainConfig(**{k: v for k, v in saved.items() if k in TrainConfig.__dataclass_fields__
                            and k != "given"})
    if cfg.model and saved.get("model") and cfg.model != saved["model"]:
        raise FrposeError(f"{checkpoint} is a {saved['model']} run, not {cfg.model}")
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("resume", "pretrained", "model", "init", "given", "out"):
            continue
        mine, theirs = getattr(cfg, f.name), saved.get(f.name)
        if f.name in RESUME_OVERRIDES:
            if cfg.was_given(f.name):
                setattr(merged, f.name, mine)
        elif cfg.was_given(f.name) and mine != theirs:
            raise FrposeError(f"--{f.name.replace('_', '-')} {mine} differs from the resumed run's {theirs} "
                              f"({checkpoint}); a resumed run keeps its settings")
    merged.resume, merged.given = cfg.resume, cfg.given
    # Where the checkpoint now is, not where the run was first written (it may have moved).
    merged.out = cfg.out if cfg.was_given("out") else str(checkpoint.parent)
    return merged


def resume_path(spec) -> Path:
    path = Path(spec)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise FrposeError(f"--resume {spec}: no checkpoint there (expected RUN_DIR/last.pt or a .pt file)")
    damage = zip_damage(path)
    if damage:
        raise FrposeError(f"--resume {spec}: {path} cannot be resumed, it is damaged: {damage}; {_recovery(path)}")
    return path


def _recovery(damaged: Path) -> str:
    """How to go on without ``damaged``: an earlier whole copy beside it, else a new start."""
    copies = sorted(p for p in damaged.parent.glob("*.pt") if p.name not in (damaged.name, "best.pt")
                    and not zip_damage(p))
    if copies:
        return (f"resume from an earlier copy that holds training state, e.g. `frpose train --resume {copies[-1]}` "
                f"(here: {', '.join(p.name for p in copies)})")
    best = damaged.parent / "best.pt"
    return ("no earlier epoch's checkpoint is kept: start the run again with the same options and a new --out"
            + (f" (or from the weights of {best}, which hold no training state, with --init {best})"
               if best.is_file() and not zip_damage(best) else ""))


RUN_FILES = ("best.pt", "metrics.jsonl", "training_curve.png")   # besides last.pt


def new_run_dir(cfg: TrainConfig) -> Path:
    """The folder a new training run writes: ``--out`` (refused when it holds a run), else a new
    one from :func:`frpose_cli.run_folders.new_run_path`."""
    if cfg.out:
        out = Path(cfg.out)
        if out.is_file():
            raise FrposeError(f"--out {out} is an existing file, not a folder")
        if (out / "last.pt").exists():
            raise FrposeError(f"{out} already holds a run (last.pt); continue it with --resume {out} "
                              "or choose another --out")
        # any other file a run writes (a copied best.pt, the log of a run whose last.pt was deleted)
        # would be overwritten by the first epoch: refused too
        others = [n for n in RUN_FILES if (out / n).exists()]
        if others:
            raise FrposeError(f"{out} holds {', '.join(others)} of another run, which this run would overwrite; "
                              "choose another --out")
        return out
    # runs/train/MODEL, MODEL-2, ...; a card given as a YAML path is named by its file's stem
    name = Path(cfg.model).stem if cfg.model.endswith((".yaml", ".yml")) else cfg.model
    return run_folders.new_run_path("train", name)


def prepare(cfg: TrainConfig, log, warn=None):
    """Resolve ``cfg`` (resume merge, data paths, recipe defaults) → (cfg, checkpoint or None, COCO, card, codec)."""
    ckpt = None
    if cfg.resume:
        path = resume_path(cfg.resume)
        ckpt = load_checkpoint(path)
        if "train_config" not in ckpt or (not holds_training_state(ckpt) and path.name != "last.pt"):
            raise FrposeError(f"{path} holds weights only, no training state; it cannot be resumed "
                              "(resume from last.pt, or start a run from it with --init)")
        cfg = merge_resume(cfg, ckpt["train_config"], path)
        if not holds_training_state(ckpt) and int(ckpt["epoch"]) < int(cfg.epochs):   # a finished run's last.pt
            raise FrposeError(f"--epochs {cfg.epochs}: {path.parent} finished its {int(ckpt['epoch'])} epochs without "
                              "--keep-last, so its training state (optimiser, learning-rate schedule, RNG) was not "
                              f"kept and it cannot be extended; {_train_on(cfg.model, path)}, and give --keep-last "
                              "to a run you may extend")
    if not cfg.model:
        raise FrposeError("name a model card to train, e.g. `frpose train frpose-r34 --data COCO_ROOT`")
    if ckpt is None:   # before the annotations are read (seconds for COCO's)
        check_card_name(cfg.model, "start from its weights with `frpose train MODEL --init {name}`, or continue "
                                   "its run with `--resume {name}`")
    cfg = data_paths(cfg)
    coco = load_coco(cfg.train_ann)
    if ckpt is not None:
        card = card_from_checkpoint(ckpt, cfg.resume)
    else:
        card = load_card(cfg.model, cfg.input_size)
        # The data's keypoint set (COCO-17 or the user's own), with the OKS σ it is scored with.
        spec = resolve_sigmas(keypoint_spec(coco, cfg.train_ann), cfg.sigmas, warn=warn)
        if spec.names != card.keypoints.names:
            log(f"the card's {card.keypoints.num_keypoints} keypoints are replaced by the {spec.num_keypoints} of "
                f"{cfg.train_ann} (the head follows)")
        card = dataclasses.replace(card, keypoints=spec,
                                   arch=dataclasses.replace(card.arch, num_keypoints=spec.num_keypoints))
    cfg.input_size = list(card.input_size)
    cfg.epochs = int(cfg.epochs if cfg.epochs is not None else card.recipe("epochs"))
    cfg.batch_size = int(cfg.batch_size or card.recipe("batch_size"))
    cfg.lr = float(cfg.lr if cfg.lr is not None else card.recipe("lr"))
    cfg.lr_steps = [int(e) for e in (cfg.lr_steps if cfg.lr_steps is not None else card.recipe("lr_steps"))]
    cfg.seed = int(cfg.seed or 0)
    cfg.amp, cfg.sync_bn = bool(cfg.amp), bool(cfg.sync_bn)
    # Device-built targets by default: 6.5 kB of keypoints per batch instead of 107 MB of
    # heatmaps through the loader (scripts/bench_data.py; docs/training.md).
    cfg.targets = cfg.targets or "device"
    if cfg.targets not in ("loader", "device"):
        raise FrposeError(f"--targets must be loader or device (got {cfg.targets})")
    if cfg.epochs < 1 or cfg.batch_size < 1 or not cfg.lr > 0 or cfg.workers < 0:
        raise FrposeError("--epochs and --batch-size must be ≥ 1, --lr > 0 and --workers ≥ 0")
    codec = make_codec(cfg.codec or card.codec, card.input_size, card.stride, card.sigma)
    cfg.codec = codec.name
    card = dataclasses.replace(card, codec=codec.name)
    return cfg, ckpt, coco, card, codec


def finished_message(cfg: TrainConfig, ckpt: dict) -> str:
    """What `--resume` of a run that has done its ``cfg.epochs`` says (not an error)."""
    done = int(ckpt["epoch"])
    if holds_training_state(ckpt):
        return (f"{cfg.out} has finished its {done} epochs: nothing to do; `frpose train --resume {cfg.out} "
                f"--epochs N` with N > {done} extends it")
    return (f"{cfg.out} has finished its {done} epochs: nothing to do; it finished without --keep-last, so --epochs "
            f"cannot extend it (its training state was not kept): {_train_on(cfg.model, Path(cfg.out) / 'last.pt')}")


def _train_on(model: str, weights: Path) -> str:
    return (f"`frpose train {model} --init {weights} --epochs K` with the run's data options trains on from its "
            "weights as a new run (a fresh optimiser and schedule)")


def checkpoint_bytes(model: torch.nn.Module) -> int:
    """Room a run needs for its checkpoints: last.pt (weights + Adam's two moments) and best.pt
    (weights), each written beside the previous copy before the rename."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return 2 * (3 * weights + weights)


def rng_state() -> dict:
    keys, pos, has_gauss, cached = np.random.get_state()[1:]
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached": float(cached)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
