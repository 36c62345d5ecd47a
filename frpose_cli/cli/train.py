"""`frpose train`: parse options, hand them to :mod:`frpose_cli.training.train`."""
from __future__ import annotations

from pathlib import Path

import typer

from frpose_cli.option_ranges import limits
from frpose_cli.cli.options import SIGMAS_HELP, apply_download_options, apply_max_pixels, max_pixels_option, offline_option, strict_hash_option


def _steps(text):
    if text is None:
        return None
    from frpose_cli.errors import FrposeError
    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise FrposeError(f"--lr-steps takes comma-separated epochs, e.g. 40,55 (got {text!r})") from None


def train(
    ctx: typer.Context,
    model: str = typer.Argument(None, help="Model card, e.g. frpose-r34 (optional with --resume)"),
    data: Path = typer.Option(None, "--data", help="COCO root: annotations/person_keypoints_{train,val}2017.json, train2017/, val2017/"),
    train_ann: Path = typer.Option(None, "--train-ann", help="Training annotation file (default: DATA/annotations/person_keypoints_train2017.json)"),
    train_images: Path = typer.Option(None, "--train-images", help="Training image folder (default: DATA/train2017)"),
    val_ann: Path = typer.Option(None, "--val-ann", help="Validation annotation file (default: DATA/annotations/person_keypoints_val2017.json if present)"),
    val_images: Path = typer.Option(None, "--val-images", help="Validation image folder (default: DATA/val2017)"),
    input_size: str = typer.Option(None, "--input-size", help="HxW, e.g. 256x192 (default: the card's)"),
    epochs: int = typer.Option(None, "--epochs", **limits("--epochs"), help="Epochs (default: the card's recipe, 140)"),
    batch_size: int = typer.Option(None, "--batch-size", **limits("--batch-size"),
        help="Batch per process/GPU (default: the card's, 32)"),
    lr: float = typer.Option(None, "--lr", **limits("--lr"), help="Adam learning rate (default: the card's, 1e-3)"),
    lr_steps: str = typer.Option(None, "--lr-steps", help="Epochs where the learning rate drops ×0.1, comma-separated (default: the card's, 90,120)"),
    workers: int = typer.Option(2, "--workers", **limits("--workers"),
        help="Data-loading worker processes per training process"),
    amp: bool = typer.Option(None, "--amp/--no-amp", help="Mixed precision (float16 on CUDA, bfloat16 on CPU)"),
    device: str = typer.Option(None, "--device", help="cpu, cuda, cuda:N (default: CUDA if present; torchrun: one GPU per process)"),
    pretrained: str = typer.Option("auto", "--pretrained", help="Encoder init: auto (ImageNet ResNet from the cache, downloaded once; random with a warning when it cannot be had), imagenet (the same, or an error), FILE (torchvision ResNet state dict), none"),
    init: str = typer.Option(None, "--init", help="Warm start: copy every tensor the network shares with these weights (zoo name such as sbn-r50, file or URL): encoder and decoders 1-3 from Simple Baselines; replaces --pretrained"),
    resume: str = typer.Option(None, "--resume", help="Continue a run: RUN_DIR or a checkpoint file"),
    out: Path = typer.Option(None, "--out", help="Run folder (default: runs/train/MODEL[-N])"),
    seed: int = typer.Option(None, "--seed", **limits("--seed"),
        help="Seed for initialisation, sampling and augmentation (default 0)"),
    val_every: int = typer.Option(1, "--val-every", **limits("--val-every"), help="Validate every N epochs (0: never)"),
    val_ap: bool = typer.Option(None, "--val-ap/--no-val-ap", help="Validate with COCO AP (GT boxes, flip test) and keep best.pt by AP (default: on when a val set is given)"),
    augment: bool = typer.Option(None, "--augment/--no-augment", help="The card's augmentation (flip, ±40° rotation, 0.7-1.3 scale); --no-augment turns it off"),
    sync_bn: bool = typer.Option(None, "--sync-bn/--no-sync-bn", help="SyncBatchNorm across processes under torchrun"),
    targets: str = typer.Option(None, "--targets", help="Where heatmap targets are built: device (from keypoints, the default) or loader (in the workers)"),
    codec: str = typer.Option(None, "--codec", help="Heatmap codec: sbn, dark, udp, dark-clip, udp-clip (default: the card's)"),
    sigmas: str = typer.Option(None, "--sigmas", help=SIGMAS_HELP),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars (log lines are always printed)"),
    keep_last: bool = typer.Option(False, "--keep-last/--no-keep-last", help="A finished run's last.pt keeps the training state (optimiser, RNG: 3× the weights' size), so `--resume RUN --epochs N` can extend it; without it, last.pt holds the final weights only"),
    log_every: int = typer.Option(10, "--log-every", **limits("--log-every"),
        help="A step record (mean loss, lr) in metrics.jsonl every N optimiser steps of a process, and at each epoch's end; rank 0 writes it under torchrun"),
    tensorboard: bool = typer.Option(None, "--tensorboard/--no-tensorboard", help="TensorBoard scalars in RUN_DIR/tensorboard/ as well (default: on when the tensorboard package is installed)"),
    offline: bool = offline_option(),
    strict_hash: bool = strict_hash_option(),
    max_pixels: int = max_pixels_option(),
) -> None:
    """Train a model card on COCO-format keypoint data (the paper's recipe by default)."""
    from frpose_cli.cards import parse_input_size
    from frpose_cli.training.train import TrainConfig, run

    apply_download_options(offline, strict_hash)
    apply_max_pixels(max_pixels)
    def s(p):
        return str(p) if p is not None else None

    cfg = TrainConfig(model=model, data=s(data), train_ann=s(train_ann), train_images=s(train_images),
                      val_ann=s(val_ann), val_images=s(val_images),
                      input_size=list(parse_input_size(input_size)) if input_size else None,
                      epochs=epochs, batch_size=batch_size, lr=lr, lr_steps=_steps(lr_steps), workers=workers, amp=amp, device=device,
                      pretrained=pretrained, init=init, resume=resume, out=s(out), seed=seed, val_every=val_every, val_ap=val_ap, augment=augment,
                      sync_bn=sync_bn, targets=targets, codec=codec, sigmas=sigmas, progress=progress,
                      keep_last=keep_last, log_every=log_every, given=_typed_options(ctx))
    summary = run(cfg, tensorboard=tensorboard)
    typer.echo(summary["message"])   # nothing to do, or where the results are


def _typed_options(ctx: typer.Context) -> tuple:
    """Options given on the command line (not defaults): a resumed run takes exactly these."""
    # By the enum's name: typer may ship its own copy of click, whose enum is another class.
    return tuple(name for name in ctx.params
                 if getattr(ctx.get_parameter_source(name), "name", "") in ("COMMANDLINE", "ENVIRONMENT"))
