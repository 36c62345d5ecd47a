"""`frpose reproduce TABLE`: every training and evaluation of one of the paper's tables, resumable,
and the table with our figures beside the paper's (rows and rendering: :mod:`.reproduce_table`).

Design decisions:

* **One folder per table run**, ``--out DIR`` (default: a new ``runs/reproduce/tableN`` from
  :func:`frpose_cli.run_folders.new_run_path`): ``DIR/reproduce.json`` (the options, written by
  the first invocation), ``DIR/<row>/train/`` (a `frpose train` run folder), ``DIR/<row>/eval/``
  (``results.json`` and ``metrics.json`` of `frpose eval`), ``DIR/<row>/test-dev/`` (Table 3: the
  COCO server's files), ``DIR/data/`` (subset annotation files, never written into ``--data``),
  ``DIR/tableN.json`` and ``DIR/tableN.md``. A non-empty ``--out`` without ``reproduce.json``, or
  one of another table, is refused.
* **Resume rules**, per row, from what is on disk: a ``last.pt`` whose epoch reaches the budget
  (read from the run's ``metrics.jsonl``) is not trained again; a shorter or mid-epoch one
  continues (``TrainConfig(resume=...)``, exact);
  an evaluation whose ``metrics.json`` exists is not redone, nor a test-dev run whose ``.zip``
  exists. The budget must be the first invocation's (``reproduce.json``: a rerun with another
  ``--data``, ``--epochs``, ... is refused naming both values), so the files on disk always
  belong to this budget. ``--gpus`` and ``--workers`` may change: they move work, not results.
* **In-process vs torchrun.** ``--gpus 0`` (CPU) and ``1`` train in this process through
  :func:`frpose_cli.training.train.run` (device: :func:`frpose_cli.device.pick_device`'s policy);
  ``--gpus N > 1`` starts ``python -m torch.distributed.run --standalone --nproc_per_node N -m
  frpose_cli train ...`` per row, because DDP needs one process per GPU; batch is per process, as
  in `frpose train`. Evaluation always runs here, on one device (minutes, next to days).
* **Which weights are scored**: the recipe's final ``last.pt``. ``best.pt`` is picked by AP on
  val2017, the set the table reports, so scoring it would select on the test set.
* **Dry run** (``--dry-run``): the pipeline end to end on the CPU in minutes: 1 epoch on the first 4
  training images, scored on the first 2 val images (~30 detector boxes each), batch 16, random
  encoder init (no download), 0 workers, no validation during training, and the rows'
  architectures unchanged at 1/4 of the input height (64x32, 96x64; sides stay multiples of 32).
  ``--epochs``/``--limit`` override the budget (with or without ``--dry-run``); the table says when
  its budget is not the paper's recipe.
* **--plan** prints one self-contained command per row (``--only ROW``, resumable), for array jobs;
  the plain command renders the table once the rows are done (finished rows are skipped).
* **--restart ROW** removes ``DIR/ROW/`` and runs that row alone from its first epoch (as ``--only
  ROW``): the way out of a damaged ``last.pt`` (:mod:`.reproduce_rows`), touching no other row.
"""
from __future__ import annotations

import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from frpose_cli import run_folders
from frpose_cli.cards import load_card, size_key
from frpose_cli.data.annotations import read_json
from frpose_cli.errors import FrposeError
from frpose_cli.fileio import atomic_write_json, atomic_write_text, locked
from frpose_cli.outputs import check_not_inside_inputs, check_writable_dir
from frpose_cli.training.reproduce_rows import check_not_damaged, restart_row, trained
from frpose_cli.training.reproduce_table import TABLES, PaperTable, Row, cached_cost, notes, render_markdown, row_record

KIND = "frpose reproduce"
SETTINGS_FILE = "reproduce.json"
SETTINGS = ("data", "dry_run", "boxes", "epochs", "limit", "eval_limit", "batch_size", "pretrained")   # equal on reruns
# scored images are fewer than trained ones: COCO's detection files hold ~30 boxes an image, each a crop run twice (flip)
DRY_RUN = {"epochs": 1, "limit": 4, "eval_limit": 2, "batch_size": 16, "pretrained": "none", "workers": 0}
DRY_RUN_SIZES = {(256, 192): (64, 32), (384, 288): (96, 64)}
TRAIN_ANN, VAL_ANN = "annotations/person_keypoints_train2017.json", "annotations/person_keypoints_val2017.json"
TEST_DEV = "test-dev2017"
TEST_DEV_INFO = f"annotations/image_info_{TEST_DEV}.json"


@dataclass
class ReproduceOptions:
    """The options of one `frpose reproduce` run (the CLI's, by the same names)."""
    table: str
    data: Path | None = None
    out: Path | None = None
    gpus: int | None = None        # None: one process on the default device (a dry run: the CPU)
    plan: bool = False
    dry_run: bool = False
    boxes: Path | None = None
    only: str | None = None
    restart: str | None = None     # a row to start over (removes DIR/ROW/), run alone as with --only
    epochs: int | None = None
    limit: int | None = None
    pretrained: str | None = None
    batch_size: int | None = None
    workers: int | None = None
    progress: bool = True

    def __post_init__(self):
        for name in ("data", "out", "boxes"):
            if getattr(self, name) is not None:
                setattr(self, name, Path(getattr(self, name)))

    def default(self, name: str):
        """The option as given, else the dry run's budget (a dry run), else None (the card's recipe)."""
        value = getattr(self, name, None)
        return value if value is not None else DRY_RUN[name] if self.dry_run else None

    def settings(self) -> dict:
        return {"data": str(self.data.resolve()), "boxes": str(self.boxes.resolve()) if self.boxes else None,
                "epochs": self.default("epochs"), "limit": self.default("limit"),
                "eval_limit": self.limit if self.limit is not None else self.default("eval_limit"),
                "batch_size": self.default("batch_size"), "pretrained": self.default("pretrained") or "auto",
                "dry_run": self.dry_run}


@dataclass
class _Run:
    """What every row of one invocation shares."""
    opts: ReproduceOptions
    table: PaperTable
    out: Path
    settings: dict
    say: object
    inputs: dict = field(default_factory=dict)   # annotation files, boxes and their notes

    @property
    def gpus(self) -> int:
        return self.opts.gpus if self.opts.gpus is not None else 0 if self.opts.dry_run else 1

    @property
    def device(self):
        return "cpu" if self.gpus == 0 else None

    @property
    def workers(self) -> int:
        return 2 if self.opts.default("workers") is None else self.opts.default("workers")

    def trained_at(self, row: Row):
        return DRY_RUN_SIZES[row.size] if self.opts.dry_run else row.size


def reproduce(opts: ReproduceOptions, say=print) -> dict:
    """Check everything, then plan (``opts.plan``) or run the rows and render the table. Returns
    ``{"out", "plan"}`` (plan), ``{"out", "markdown", "files"}`` (a table) or ``{"out", "markdown",
    "render"}`` (one row, ``--only``); ``say`` gets the progress lines."""
    table, rows = _check(opts)
    out = _claim_out(opts, table)
    run = _Run(opts, table, out, opts.settings(), say)
    _agree(run)
    render_cmd = shlex.join(_command(opts, out))
    if opts.plan:
        return {"out": out, "plan": [shlex.join(_command(opts, out, r.name)) for r in rows], "render": render_cmd}
    if opts.restart:
        restart_row(out / opts.restart, say)
    run.inputs = _inputs(run)
    again = "the same command" + (" without --restart" if opts.restart else "")   # with it, the row restarts again
    say(f"reproduce {table.name}: {len(rows)} row(s) → {out} ({again} with --out {out} resumes)")
    records = [_run_row(run, i, len(rows), row) for i, row in enumerate(rows, 1)]
    lines = notes(table, run.settings, run.gpus, {r.size: run.trained_at(r) for r in table.rows}, run.inputs)
    markdown = render_markdown(table, records, lines)
    if opts.only or opts.restart:
        return {"out": out, "markdown": markdown, "render": render_cmd}
    files = [atomic_write_json(out / f"{table.name}.json", {"kind": KIND, "table": table.name, "title": table.title,
                                                               "notes": lines, "settings": run.settings,
                                                               "rows": records}, indent=2),
             atomic_write_text(out / f"{table.name}.md", markdown)]
    return {"out": out, "markdown": markdown, "files": files}


def _check(opts: ReproduceOptions) -> tuple[PaperTable, list[Row]]:
    """Every check that needs no work, before any folder is made or training starts."""
    table = TABLES.get(opts.table)
    if table is None:
        raise FrposeError(f"unknown table {opts.table!r}; choose {', '.join(TABLES)}")
    rows = list(table.rows)
    for flag, name in (("--only", opts.only), ("--restart", opts.restart)):
        if name is not None and name not in [r.name for r in rows]:
            raise FrposeError(f"{flag} {name}: not a row of {table.name}; its rows: " + ", ".join(r.name for r in rows))
    if opts.restart and opts.only not in (None, opts.restart):
        raise FrposeError(f"--restart {opts.restart} runs that row alone: drop --only {opts.only}")
    if opts.restart and opts.plan:
        raise FrposeError("--restart runs its row now: drop --plan")
    if opts.only or opts.restart:
        rows = [r for r in rows if r.name in (opts.only, opts.restart)]
    for name, low in (("epochs", 1), ("limit", 1), ("batch_size", 1), ("gpus", 0), ("workers", 0)):
        if getattr(opts, name) is not None and getattr(opts, name) < low:
            raise FrposeError(f"--{name.replace('_', '-')} must be ≥ {low} (got {getattr(opts, name)})")
    data = opts.data
    if data is None:
        raise FrposeError("give --data COCO_ROOT (annotations/, train2017/, val2017/)")
    if not data.is_dir():
        raise FrposeError(f"--data {data}: no such folder (expected a COCO root with annotations/, train2017/, val2017/)")
    for rel, what in ((TRAIN_ANN, "training annotation file"), (VAL_ANN, "val annotation file")):
        if not (data / rel).is_file():
            raise FrposeError(f"--data {data}: no {what} {rel} (every row is trained on train2017 and scored on val2017)")
    for rel in ("train2017", "val2017"):
        if not (data / rel).is_dir():
            raise FrposeError(f"--data {data}: no image folder {rel}/")
    if opts.boxes is not None and not opts.boxes.is_file():
        raise FrposeError(f"--boxes {opts.boxes}: no such file (a COCO detection-results JSON)")
    return table, rows


def _claim_out(opts: ReproduceOptions, table: PaperTable) -> Path:
    if opts.out is None:
        return run_folders.new_run_path("reproduce", table.name)
    out = opts.out
    check_writable_dir(out, "--out")
    check_not_inside_inputs(out, [opts.data], "--out")
    others = [p.name for p in out.iterdir() if not p.name.startswith(SETTINGS_FILE)] if out.is_dir() else []
    if others and not (out / SETTINGS_FILE).is_file():
        raise FrposeError(f"--out {out} holds {others[0]} and no {SETTINGS_FILE}: not a `frpose reproduce` folder; "
                          "choose a new or empty folder (results of other runs are never overwritten)")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _agree(run: _Run) -> None:
    """Record the options on the first invocation; later ones must match them."""
    path = run.out / SETTINGS_FILE
    with locked(path):   # array jobs may start together on a fresh folder
        if not path.is_file():
            atomic_write_json(path, {"kind": KIND, "table": run.table.name, "settings": run.settings}, indent=2)
            return
        saved = read_json(path, "reproduce settings")
        if not isinstance(saved, dict) or saved.get("kind") != KIND or not isinstance(saved.get("settings"), dict):
            raise FrposeError(f"{path} is not a `frpose reproduce` settings file; choose another --out")
        if saved.get("table") != run.table.name:
            raise FrposeError(f"--out {run.out} is a reproduce folder of {saved.get('table')}, not {run.table.name}; "
                              "choose another --out")
        for name in SETTINGS:
            mine, theirs = run.settings[name], saved["settings"].get(name)
            if mine != theirs:
                show = (lambda v: "the card's" if v is None else v) if name != "dry_run" else \
                    (lambda v: "on" if v else "off")
                raise FrposeError(f"{_flag(name)} {show(mine)} differs from {show(theirs)}, the first run's in "
                                  f"{run.out} ({SETTINGS_FILE}); rerun with the same options to resume, or choose "
                                  "another --out")


def _command(opts: ReproduceOptions, out: Path, only: str | None = None) -> list[str]:
    """The `frpose reproduce` command line of these options (absolute paths: array jobs run anywhere)."""
    argv = ["frpose", "reproduce", opts.table, "--data", str(opts.data.resolve()), "--out", str(out.resolve())]
    argv += ["--only", only] if only else []
    argv += ["--dry-run"] if opts.dry_run else []
    for name in ("epochs", "limit", "batch_size", "pretrained", "gpus", "workers"):
        if getattr(opts, name) is not None:
            argv += [_flag(name), str(getattr(opts, name))]
    argv += ["--boxes", str(opts.boxes.resolve())] if opts.boxes else []
    return argv + ([] if opts.progress else ["--no-progress"])


def _subset(run: _Run, src: Path, what: str, limit: int | None) -> Path | None:
    """``src`` cut to its first ``limit`` images (by id; with people, when it has annotations),
    written once into ``DIR/data/``; None without a limit."""
    if limit is None:
        return None
    dst = run.out / "data" / f"{src.stem}-first{limit}.json"
    if dst.is_file():
        return dst
    data = read_json(src, what)
    try:
        images = sorted(data["images"], key=lambda im: im["id"])
        if "annotations" in data:
            people = {a["image_id"] for a in data["annotations"] if a.get("num_keypoints", 0) > 0}
            images = [im for im in images if im["id"] in people]
        keep = {im["id"] for im in images[:limit]}
        subset = {**data, "images": images[:limit]}
        if "annotations" in data:
            subset["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    except (KeyError, TypeError, AttributeError):
        raise FrposeError(f"{what} {src} is not COCO format (images with ids, annotations with image_id)") from None
    atomic_write_json(dst, subset)
    return dst


def _detections(data: Path, split: str) -> Path | None:
    """The detection file for ``split`` under DATA/person_detection_results (run_eval's rule), or None;
    a file named for another split is not taken (test-dev's boxes are not val2017's)."""
    from frpose_cli.evaluation.run_eval import default_boxes
    try:
        found = default_boxes(data, split)
    except FrposeError:
        return None
    other = TEST_DEV if split != TEST_DEV else "val2017"
    return None if other in found.name else found


def _inputs(run: _Run) -> dict:
    from frpose_cli.evaluation.run_eval import DET_FOLDER
    data, opts = run.opts.data, run.opts
    boxes = opts.boxes or _detections(data, "val2017")
    where = f"--boxes {opts.boxes}" if opts.boxes else f"{DET_FOLDER}/{boxes.name}" if boxes else None
    inputs = {"train_ann": _subset(run, data / TRAIN_ANN, "training annotation file", run.settings["limit"]),
              "val_ann": _subset(run, data / VAL_ANN, "val annotation file", run.settings["eval_limit"]), "boxes": boxes,
              "boxes_note": f"person boxes: {where}; the paper used the 56-AP person detections" if boxes else
              f"person boxes: ground truth (no val2017 detection file in {data / DET_FOLDER}; --boxes DET_JSON gives "
              "one): the paper used the 56-AP person detections, with which AP is lower"}
    if run.table.test_dev:
        inputs.update(test_dev_boxes=None, test_dev_info=None)
        test_dev_boxes = _detections(data, TEST_DEV)
        if not ((data / TEST_DEV_INFO).is_file() and (data / "test2017").is_dir()):
            note = f"test-dev2017: no submission files ({data} has no {TEST_DEV_INFO} and test2017/)"
        elif test_dev_boxes is None:
            note = f"test-dev2017: no submission files (no {TEST_DEV} detection file in {data / DET_FOLDER})"
        else:
            inputs.update(test_dev_boxes=test_dev_boxes, test_dev_info=_subset(
                run, data / TEST_DEV_INFO, "image-info file", run.settings["eval_limit"]) or data / TEST_DEV_INFO)
            note = f"test-dev2017: the COCO server's files, boxes {test_dev_boxes.name}; upload each .zip"
        inputs["test_dev_note"] = note
    return inputs


def _train(run: _Run, row: Row, train_dir: Path, epochs: int, resume: bool) -> None:
    from frpose_cli.training.train import TrainConfig, run as train_run
    if resume:
        check_not_damaged(row.name, train_dir / "last.pt")
    s, inputs = run.settings, run.inputs
    cfg = TrainConfig(model=row.card, data=s["data"], train_ann=inputs["train_ann"] and str(inputs["train_ann"]),
                      val_ann=inputs["val_ann"] and str(inputs["val_ann"]), input_size=list(run.trained_at(row)),
                      epochs=epochs, batch_size=s["batch_size"], workers=run.workers, device=run.device,
                      pretrained=s["pretrained"], out=str(train_dir), val_every=0 if s["dry_run"] else 1,
                      progress=run.opts.progress, resume=str(train_dir) if resume else None)
    if run.gpus <= 1:
        train_run(cfg)
        return
    rc = subprocess.run(_torchrun_argv(cfg, run.gpus)).returncode
    if rc == 3:
        from frpose_cli.training.preempt import Preempted
        raise Preempted(f"{row.name}: training stopped by a signal with a resumable checkpoint in {train_dir}; "
                        "the same command resumes it")
    if rc != 0:
        raise FrposeError(f"{row.name}: training under torchrun failed (exit code {rc}; its output is above); "
                          "the same command resumes it")


def _torchrun_argv(cfg, processes: int) -> list[str]:
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
            "-m", "frpose_cli", "train", cfg.model, "--data", cfg.data, "--input-size", size_key(cfg.input_size),
            "--out", cfg.out, "--pretrained", cfg.pretrained, "--workers", str(cfg.workers),
            "--val-every", str(cfg.val_every), "--progress" if cfg.progress else "--no-progress"]
    for flag, value in (("--epochs", cfg.epochs), ("--batch-size", cfg.batch_size), ("--train-ann", cfg.train_ann),
                        ("--val-ann", cfg.val_ann), ("--resume", cfg.resume)):
        argv += [flag, str(value)] if value is not None else []
    return argv


def _evaluate(run: _Run, row: Row, weights: Path, out: Path, test_dev: bool = False) -> None:
    """`frpose eval` of ``weights`` into ``out``: val2017's results.json (+ metrics.json beside it)
    or test-dev's submission JSON (+ .zip). A results file without what follows it is what an
    earlier attempt left when it stopped: removed, then redone."""
    from frpose_cli.evaluation.run_eval import EvalOptions, run_eval
    check_not_damaged(row.name, weights)
    if out.exists():
        out.unlink()
        run.say(f"{row.name}: removed {out}: an earlier attempt stopped before it finished")
    data, inputs = run.opts.data, run.inputs
    common = dict(weights=weights, data=data, out=out, backend="torch", workers=run.workers, device=run.device,
                  progress=run.opts.progress)
    if test_dev:
        run_eval(EvalOptions(split=TEST_DEV, ann=inputs["test_dev_info"], images=data / "test2017",
                             boxes=inputs["test_dev_boxes"], alg=row.name, **common))
    else:
        run_eval(EvalOptions(ann=inputs["val_ann"], images=data / "val2017", boxes=inputs["boxes"],
                             gt_boxes=inputs["boxes"] is None, json_out=out.with_name("metrics.json"), **common))


def _run_row(run: _Run, index: int, count: int, row: Row) -> dict:
    from frpose_cli.evaluation.testdev import results_name
    row_dir, say = run.out / row.name, run.say
    train_dir = row_dir / "train"
    epochs = run.settings["epochs"] or int(load_card(row.card).recipe("epochs"))
    say(f"[{index}/{count}] {row.name} → {row_dir}")
    done, started = trained(train_dir)
    if done >= epochs:
        steps = [f"train: already done ({done}/{epochs} epochs), skipped"]
    else:
        t0 = time.perf_counter()
        _train(run, row, train_dir, epochs, resume=started)
        steps = [f"train: {'resumed from epoch ' + str(done) + ', ' if started else ''}done ({epochs}/{epochs} "
                 f"epochs, {time.perf_counter() - t0:.0f} s)"]
    metrics_file = row_dir / "eval" / "metrics.json"
    if metrics_file.is_file():
        steps.append("eval: already done (eval/metrics.json), skipped")
    else:
        _evaluate(run, row, train_dir / "last.pt", row_dir / "eval" / "results.json")
        steps.append("eval: done")
    metrics = read_json(metrics_file, "metrics file")
    submission = note = None
    if run.table.test_dev and run.inputs["test_dev_boxes"] is not None:
        json_path = row_dir / "test-dev" / results_name(TEST_DEV, row.name)
        if json_path.with_suffix(".zip").is_file():
            steps.append("test-dev: already done, skipped")
        else:
            _evaluate(run, row, train_dir / "last.pt", json_path, test_dev=True)
            steps.append("test-dev: done")
        submission = str(json_path.with_suffix(".zip"))
    elif run.table.test_dev:
        note = "no test-dev data"
    say(f"{row.name}: " + "; ".join(steps) + f" (AP {100 * metrics['AP']:.1f})")
    return row_record(row, row_dir, run.trained_at(row), (epochs, epochs), metrics, cached_cost(row, row_dir),
                      submission, note)
