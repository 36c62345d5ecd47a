"""Training core behind ``frpose train``: the paper's recipe, exact resume, torchrun scaling.

Recipe (defaults from the card, i.e. §4.1 of the paper): Adam, lr 1e-3 divided by 10 at
epochs 90 and 120, 140 epochs, batch 32 per process, flip / ±40° rotation / 0.7-1.3
scale, MSE on heatmaps with target weights (§3.4).

Exact resume: every epoch ends with an atomic ``RUN_DIR/last.pt`` holding model,
optimiser, scheduler, AMP scaler, epoch, the torch/numpy/python (and CUDA) RNG states and
the resolved config.  Sampling order depends only on ``(seed, epoch)`` and augmentation
only on ``(seed, epoch, index)``, so a run killed mid-epoch and resumed redoes that epoch
exactly as the uninterrupted run did, bit for bit on CPU.

A finished run keeps the weights, not the training state (Adam's two moments: twice the
weights): its last epoch writes ``last.pt`` without :data:`~frpose_cli.weights.checkpoint.TRAINING_STATE`
unless ``--keep-last``, and ``best.pt`` (always weights only) is a hard link to it when that
epoch is the best, so a finished folder holds each set of weights once.
"""
from __future__ import annotations

import contextlib
import dataclasses
import random
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from frpose_cli import distributed
from frpose_cli.weights.checkpoint import TRAINING_STATE, load_state_into, save_checkpoint
from frpose_cli.fileio import atomic_link
from frpose_cli.jobs import progress as progress_module
from frpose_cli.jobs.progress import JobProgress, progress_lines
from frpose_cli.jobs.shards import Shard
from frpose_cli.metrics.cocoeval import METRIC_NAMES, load_ground_truth
from frpose_cli.data.dataset import NO_AUGMENT, Augment, CocoPoseDataset
from frpose_cli.errors import FrposeError
from frpose_cli.evaluation.evaluate import evaluate_model
from frpose_cli.training.losses import JointsMSELoss
from frpose_cli.data.oks_sigmas import describe as describe_sigmas
from frpose_cli.outputs import FolderLock, check_writable_dir
from frpose_cli.metrics.pck import pck
from frpose_cli.training.preempt import Preempted, SkipSampler, StopSignals, check_finite
from frpose_cli.training.train_log import MetricsLog, ScalarsWriter, summary_writer_class
from frpose_cli.weights.init_weights import apply_pretrained, init_from
from frpose_cli.training.train_setup import (TrainConfig, checkpoint_bytes, finished_message,  # noqa: F401 (API)
                                             new_run_dir, prepare, rng_state, set_rng_state)

def _loader(ds, cfg: TrainConfig, env, shuffle: bool) -> DataLoader:
    # No worker_init_fn seeding: augmentation draws come from (seed, epoch, index), not
    # from worker state.  Loader workers are the parallelism, so OpenCV runs single-
    # threaded; it is set here, before the fork, because resizing OpenCV's thread pool
    # inside a forked worker deadlocks.
    if cfg.workers > 0:
        cv2.setNumThreads(0)
    sampler = DistributedSampler(ds, num_replicas=env.world_size, rank=env.rank, shuffle=shuffle,
                                 seed=cfg.seed, drop_last=False)
    return DataLoader(ds, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers,
                      pin_memory=env.device.type == "cuda", persistent_workers=False,
                      worker_init_fn=distributed.worker_init())   # re-created each epoch so set_epoch reaches workers


def _targets(batch, codec, cfg, device):
    if cfg.targets == "device":
        return codec.encode_torch(batch["keypoints"].to(device), batch["visible"].to(device))
    return batch["target"].to(device, non_blocking=True), batch["target_weight"].to(device, non_blocking=True)


def _autocast(cfg, device):
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype, enabled=bool(cfg.amp))


@torch.no_grad()
def validation_loss(model, loader, codec, cfg, env, criterion, progress: bool = False, folder=".") -> float:
    model.eval()
    total = count = 0.0
    bar = JobProgress(progress, Shard(), folder, "val loss", "crop", len(loader.sampler))
    try:
        for batch in loader:
            target, weight = _targets(batch, codec, cfg, env.device)
            with _autocast(cfg, env.device):
                out = model(batch["image"].to(env.device, non_blocking=True))
            n = batch["image"].shape[0]
            total += float(criterion(out.float(), target, weight)) * n
            count += n
            bar.update(n)
    finally:
        bar.close()
    total, count = distributed.all_reduce_sum([total, count], env)
    return total / max(count, 1)


def _validate(model, card, codec, cfg, env, criterion, val_loader, val_gt, run_dir, epoch, say) -> dict:
    """The epoch's validation figures: loss (every rank), then AP and PCK (rank 0).  Rank 0 shows a bar
    on a terminal with --progress, else a line every few seconds (jobs/progress.py): never silent."""
    shown = env.is_main and not cfg.quiet
    with progress_lines(say, f"epoch {epoch + 1} validation") if shown else contextlib.nullcontext():
        record = {"val_loss": validation_loss(model, val_loader, codec, cfg, env, criterion,
                                              shown and cfg.progress, run_dir)}
        if val_gt is not None and env.is_main:   # the other ranks wait at the next collective
            ap = evaluate_model(model, card, cfg.val_ann, cfg.val_images, boxes=None, flip=True, codec=codec,
                                batch_size=cfg.batch_size, workers=cfg.workers, gt=val_gt,
                                progress=shown and cfg.progress)
            record.update({f"val_{k}": float(ap[k]) for k in METRIC_NAMES})
            val_pck = pck(val_gt, ap["results"]).pck   # of the box, α 0.2: cheap, no images read
            if np.isfinite(val_pck):
                record["val_PCK"] = val_pck
    return record


def _save_epoch(run_dir: Path, model, card, codec, state: dict, improved: bool, final: bool) -> None:
    """``last.pt``: resumable, or the weights only when ``final`` (the run is done, no --keep-last);
    ``best.pt`` when the epoch improved: the weights only, the same file as a weights-only last.pt."""
    weights = {k: v for k, v in state.items() if k not in TRAINING_STATE}
    save_checkpoint(run_dir / "last.pt", model, card, codec.to_dict(), **(weights if final else state))
    if improved and not (final and atomic_link(run_dir / "last.pt", run_dir / "best.pt")):
        save_checkpoint(run_dir / "best.pt", model, card, codec.to_dict(), **weights)


def _results_line(run_dir: Path, cfg: TrainConfig, best: dict) -> str:
    """The run's last line: where its results are."""
    kept = "weights and training state: --keep-last" if cfg.keep_last else "weights only"
    files = [f"last.pt (epoch {cfg.epochs}, {kept})"]
    if best.get("epoch") is not None:
        files.append(f"best.pt (epoch {best['epoch']}, best {best['metric']})")
    files += [n for n in ("metrics.jsonl", "training_curve.png", "tensorboard") if (run_dir / n).exists()]
    return f"done: {run_dir}: " + ", ".join(files)


def _better(record: dict, best: dict, epoch: int) -> tuple[bool, dict]:
    """Best checkpoint by validation AP when measured, else by validation loss."""
    if "val_AP" in record:
        metric, value, higher = "AP", record["val_AP"], True
    elif "val_loss" in record:
        metric, value, higher = "val_loss", record["val_loss"], False
    else:
        return False, best
    if best.get("metric") == metric and best.get("value") is not None:
        if (value <= best["value"]) if higher else (value >= best["value"]):
            return False, best
    return True, {"metric": metric, "value": value, "epoch": epoch}


def run(cfg: TrainConfig, on_step=None, tensorboard: bool | None = None) -> dict:
    """Train as ``cfg`` says (under torchrun: this process's share). Returns a summary dict;
    ``on_step(epoch, step, model)`` is called after every optimiser step (tests use it to
    interrupt a run or read gradients).  ``tensorboard``: scalars in RUN_DIR/tensorboard/ too
    (None: when the package is installed; train_log.summary_writer_class) — an argument, not a
    TrainConfig field: it changes no figure of the run, so a resume need not match it."""
    env = distributed.setup(cfg.device)
    try:
        with StopSignals() as stop:   # SIGTERM / SIGUSR1: save at the next step and stop (training/preempt.py)
            try:
                return _run(cfg, env, on_step, stop, tensorboard)
            finally:
                if getattr(stop, "log", None) is not None:   # the event stream of a preempted or failed run too
                    stop.log.close()
                if getattr(stop, "lock", None) is not None:
                    stop.lock.release()
    finally:
        distributed.cleanup(env)


def _run(cfg: TrainConfig, env, on_step, stop, tensorboard) -> dict:
    say = (lambda m: tqdm.write(m)) if env.is_main and not cfg.quiet else (lambda m: None)
    warn = (lambda m: tqdm.write(f"frpose: {m}", file=sys.stderr)) if env.is_main else (lambda m: None)
    cfg, ckpt, coco, card, codec = prepare(dataclasses.replace(cfg), say, warn)
    if not isinstance(cfg.log_every, int) or cfg.log_every < 1:
        raise FrposeError(f"--log-every must be an integer ≥ 1 (got {cfg.log_every!r})")
    # every rank when asked for explicitly, so a missing package stops all of them alike
    writer_class = summary_writer_class(tensorboard) if env.is_main or tensorboard else None
    if ckpt is not None and int(ckpt["epoch"]) >= cfg.epochs:
        return {"run_dir": str(Path(cfg.out)), "epochs": cfg.epochs, "start_epoch": int(ckpt["epoch"]),
                "finished": True, "message": finished_message(cfg, ckpt)}
    run_dir = Path(cfg.out) if ckpt is not None else new_run_dir(cfg) if env.is_main else None
    run_dir = Path(distributed.broadcast_object(str(run_dir) if run_dir else None, env))
    cfg.out = str(run_dir)
    device = env.device

    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = card.build_model()
    init_record = ckpt.get("init") if ckpt is not None else None
    if ckpt is None and cfg.init:
        if cfg.pretrained not in (None, "auto"):
            say(f"--init {cfg.init} sets the encoder too: --pretrained {cfg.pretrained} is not used")
        line, init_record = init_from(model, cfg.init)
        say(line)
    elif ckpt is None:
        say(apply_pretrained(model, cfg.pretrained, warn=lambda m: warn(f"warning: {m}")))   # rank 0's, on stderr
    else:
        load_state_into(model, ckpt["state_dict"], cfg.resume)
    if env.is_main:   # a read-only, full or mistaken --out is found now, not after the first epoch
        check_writable_dir(run_dir, "--out", need_bytes=checkpoint_bytes(model))
        # one writer at a time: a second `--resume` of a run still training is refused (outputs.FolderLock)
        stop.lock = FolderLock(run_dir, "all", "the run folder")
    if cfg.sync_bn and env.distributed:
        model = distributed.convert_sync_batchnorm(model, device)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=float(card.recipe("weight_decay")))
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg.lr_steps),
                                                     gamma=float(card.recipe("lr_factor")))
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp and device.type == "cuda")
    start_epoch, best = 0, {"metric": None, "value": None, "epoch": None}
    partial = (ckpt or {}).get("partial")    # stopped mid-epoch by a signal: where in the epoch
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start_epoch = int(ckpt["epoch"])
        best = dict(ckpt.get("best") or best)
        set_rng_state(ckpt["rng"])
    train_model = model
    if env.distributed:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    augment = NO_AUGMENT if cfg.augment is False else Augment.from_card(card)
    if augment.flip and not card.keypoints.can_flip:
        warn(f"flip augmentation off: {card.keypoints.flip_problem()} (give 'flip_pairs' or 'flip_indices' "
             "in the annotation category to flip)")
        augment = dataclasses.replace(augment, flip=False)
    train_ds = CocoPoseDataset(cfg.train_ann, cfg.train_images, card, codec, train=True, coco=coco,
                               build_targets=cfg.targets == "loader", seed=cfg.seed, augment=augment)
    if len(train_ds) == 0:
        raise FrposeError(f"no usable training instances in {cfg.train_ann} (skipped: {train_ds.skipped_summary()})")
    say(f"train: {len(train_ds)} instances from {cfg.train_ann} (skipped: {train_ds.skipped_summary()})")
    val_loader = None
    if cfg.val_ann and cfg.val_every > 0:
        val_ds = CocoPoseDataset(cfg.val_ann, cfg.val_images, card, codec, train=False,
                                 build_targets=cfg.targets == "loader")
        say(f"val: {len(val_ds)} instances from {cfg.val_ann} (skipped: {val_ds.skipped_summary()})")
        val_loader = _loader(val_ds, cfg, env, shuffle=False) if len(val_ds) else None
    # The validation file's own σ win over the training set's (a σ warning was given above).
    val_gt = load_ground_truth(cfg.val_ann, cfg.sigmas, recorded=card.keypoints) \
        if val_loader is not None and cfg.val_ap is not False else None
    loader = _loader(train_ds, cfg, env, shuffle=True)
    if partial:   # the batches of the interrupted epoch not yet done: the same ones, in the same order
        loader = DataLoader(train_ds, batch_size=cfg.batch_size, num_workers=cfg.workers,
                            sampler=SkipSampler(loader.sampler, partial["step"] * cfg.batch_size),
                            pin_memory=loader.pin_memory, persistent_workers=False, worker_init_fn=loader.worker_init_fn)
        say(f"resuming epoch {partial['epoch'] + 1} at step {partial['step'] + 1}")
    criterion = JointsMSELoss(use_target_weight=True)
    taken = partial["step"] if partial else 0      # steps of the interrupted epoch already taken
    steps_per_epoch = len(loader) + taken
    scalars = ScalarsWriter(writer_class, run_dir, steps_per_epoch, start_epoch * steps_per_epoch + taken) \
        if writer_class and env.is_main else None
    stop.log = log = MetricsLog(run_dir, keep_epochs=start_epoch + bool(partial), scalars=scalars) if env.is_main else None
    kp = card.keypoints
    say(f"keypoints: {kp.num_keypoints} ({', '.join(kp.names[:5])}{' …' if kp.num_keypoints > 5 else ''}), "
        f"{len(kp.flip_pairs) if kp.can_flip else 'no'} flip pairs, {describe_sigmas(kp)}")
    say(f"{card.name} {card.input_size[0]}x{card.input_size[1]}, codec {codec.name} (stride {codec.stride}, "
        f"σ {codec.sigma:g}), {env.world_size} process(es) × batch {cfg.batch_size} on {device}, "
        f"epochs {start_epoch + 1}..{cfg.epochs} → {run_dir}")

    summary = {"run_dir": str(run_dir), "epochs": cfg.epochs, "start_epoch": start_epoch, "init": init_record}
    bad_steps = 0                       # consecutive non-finite losses (AMP's scaler may skip a few)
    for epoch in range(start_epoch, cfg.epochs):
        loader.sampler.set_epoch(epoch)
        train_ds.set_epoch(epoch)
        train_model.train()
        lr = optimizer.param_groups[0]["lr"]
        epoch_rng = rng_state()         # before the loader draws its seed: a mid-epoch resume redraws it
        loss_sum = seen = invalid = damaged = 0.0
        first_step = 0
        if partial and epoch == partial["epoch"]:
            first_step = partial["step"]
            loss_sum, seen, invalid, damaged = (partial[k] for k in ("loss_sum", "seen", "invalid", "damaged"))
        window, t0 = [], time.perf_counter()
        bar = tqdm(loader, total=len(loader), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=not env.is_main or cfg.quiet or not cfg.progress, dynamic_ncols=True)
        steps = first_step + len(loader)
        # no bar anyone sees (--no-progress, a log file): a line every few seconds instead, never silent
        lines = env.is_main and not cfg.quiet and not (cfg.progress and sys.stderr.isatty())
        said = time.monotonic()
        for step, batch in enumerate(bar, start=first_step):
            images = batch["image"].to(device, non_blocking=True)
            target, weight = _targets(batch, codec, cfg, device)
            with _autocast(cfg, device):
                output = train_model(images)
            loss = criterion(output.float(), target, weight)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            n = images.shape[0]
            value = float(loss.detach())
            bad_steps = bad_steps + 1 if value != value or abs(value) == float("inf") else 0
            if bad_steps > (10 if scaler.is_enabled() else 0):   # AMP skips a few overflowing steps by design
                check_finite(value, epoch + 1, step + 1, run_dir, epoch)
            loss_sum, seen = loss_sum + value * n, seen + n
            invalid += float((~batch["valid"]).sum())
            damaged += float(batch["damaged"].sum())
            window.append(value)
            rate = seen * env.world_size / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{value:.3g}", lr=f"{lr:.2g}", samples_s=f"{rate:.1f}")
            if lines and time.monotonic() - said >= progress_module.LINE_SECONDS:
                said = time.monotonic()
                say(f"epoch {epoch + 1}/{cfg.epochs} step {step + 1}/{steps} ({100 * (step + 1) / steps:.0f} %), "
                    f"loss {value:.3g}, {rate:.1f} samples/s")
            if log is not None and (len(window) == cfg.log_every or step == steps - 1):
                log.add({"kind": "step", "epoch": epoch + 1, "step": step + 1, "fraction": (step + 1) / steps,
                         "loss": float(np.mean(window)), "lr": lr})
                window = []
            if on_step is not None:
                on_step(epoch, step, model)
            if _stop_requested(stop, env) and step < steps - 1:
                where = {"epoch": epoch, "step": step + 1, "loss_sum": loss_sum, "seen": seen, "invalid": invalid,
                         "damaged": damaged}
                _save_partial(run_dir, model, card, codec, cfg, optimizer, scheduler, scaler, epoch_rng, best,
                              init_record, where, log, window, lr, steps, env)
                raise Preempted(f"stopped by {stop.signal_name or 'a signal on another rank'} at epoch {epoch + 1}, "
                                f"step {step + 1} of {steps}: resumable checkpoint {run_dir / 'last.pt'}; continue "
                                f"with `frpose train --resume {run_dir}`")
        bar.close()
        seconds = time.perf_counter() - t0
        loss_sum, seen, invalid, damaged = distributed.all_reduce_sum([loss_sum, seen, invalid, damaged], env)
        scheduler.step()
        record = {"kind": "epoch", "epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1), "lr": lr,
                  "samples_per_s": seen / max(seconds, 1e-9), "seconds": seconds, "unreadable_images": int(invalid),
                  "damaged_crops": int(damaged)}
        last = epoch + 1 == cfg.epochs
        if val_loader is not None and ((epoch + 1) % cfg.val_every == 0 or last):
            record.update(_validate(model, card, codec, cfg, env, criterion, val_loader, val_gt, run_dir, epoch, say))
        improved, best = _better(record, best, epoch + 1)
        summary.update(record)
        if env.is_main:
            state = {"epoch": epoch + 1, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                     "scaler": scaler.state_dict(), "rng": rng_state(), "train_config": dataclasses.asdict(cfg),
                     "metrics": {k: v for k, v in record.items() if k != "kind"}, "best": best,
                     "init": init_record}
            _save_epoch(run_dir, model, card, codec, state, improved, final=last and not cfg.keep_last)
            log.add(record)
            log.flush()
            log.draw(run_dir / "training_curve.png")
            val = (f", val loss {record['val_loss']:.4g}" if "val_loss" in record else "") + \
                (f", val AP {100 * record['val_AP']:.1f}" if "val_AP" in record else "") + \
                (f", PCK {100 * record['val_PCK']:.1f}" if "val_PCK" in record else "") + (" (best)" if improved else "")
            bad = (f", {int(invalid)} unreadable images skipped" if invalid else "") + \
                (f", {int(damaged)} crops from damaged JPEGs (decoded anyway)" if damaged else "")
            say(f"epoch {epoch + 1}/{cfg.epochs}: train loss {record['train_loss']:.4g}{val}, lr {lr:.2g}, "
                f"{record['samples_per_s']:.1f} samples/s{bad} → {run_dir / 'last.pt'}")
        if epoch + 1 < cfg.epochs and _stop_requested(stop, env):   # a signal during the epoch's last step
            raise Preempted(f"stopped by {stop.signal_name or 'a signal on another rank'} after epoch {epoch + 1}: "
                            f"resumable checkpoint {run_dir / 'last.pt'}; continue with `frpose train --resume {run_dir}`")
    summary["best"] = best
    summary["message"] = _results_line(run_dir, cfg, best)
    return summary


def _stop_requested(stop, env) -> bool:
    """Whether any rank got a stop signal (summed over the ranks, so all stop at the same step)."""
    flag = float(stop.requested)
    if env.distributed:
        flag = distributed.all_reduce_sum([flag], env)[0]
    return flag > 0


def _save_partial(run_dir, model, card, codec, cfg, optimizer, scheduler, scaler, epoch_rng, best, init_record,
                  where, log, window, lr, steps, env) -> None:
    """``last.pt`` at a step boundary: ``epoch`` counts finished epochs, ``partial`` says where in the next."""
    if env.is_main:
        state = {"epoch": where["epoch"], "partial": where, "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "rng": epoch_rng,
                 "train_config": dataclasses.asdict(cfg), "best": best, "init": init_record}
        save_checkpoint(run_dir / "last.pt", model, card, codec.to_dict(), **state)
        if window:
            log.add({"kind": "step", "epoch": where["epoch"] + 1, "step": where["step"],
                     "fraction": where["step"] / steps, "loss": float(np.mean(window)), "lr": lr})
        log.flush()
    distributed.broadcast_object(None, env)   # the other ranks leave once the checkpoint is written
