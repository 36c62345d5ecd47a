"""What one row's folder of `frpose reproduce` holds (``DIR/ROW/``: ``train/``, ``eval/``,
``test-dev/``), and starting a row over (``--restart ROW``).

A row's ``train/last.pt`` is what its training resumes from and what its evaluation scores (once the
row is trained, the final weights only: a finished run drops the training state, ``frpose train``'s rule).
Reproduce keeps no other copy, so a damaged one (a zip cut short: a full disk, a failed copy)
cannot be recovered; the row is stopped with the way out, ``--restart ROW``, which removes that
row's folder only and trains it again from its first epoch.  The other rows' folders are never
read or written by it.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from frpose_cli.errors import FrposeError
from frpose_cli.outputs import FolderLock
from frpose_cli.weights.checkpoint import zip_damage


def trained(train_dir: Path) -> tuple[int, bool]:
    """(finished epochs, whether ``last.pt`` exists) in ``train_dir``, from ``metrics.jsonl`` (its epoch record
    follows that epoch's ``last.pt``; loading up to 0.8 GB of resumable checkpoint for one number costs seconds a row)."""
    from frpose_cli.training.train_log import read_records
    if not (train_dir / "last.pt").is_file():
        return 0, False
    return max((int(r.get("epoch", 0)) for r in read_records(train_dir) if r.get("kind") == "epoch"), default=0), True


def check_not_damaged(row_name: str, last: Path) -> None:
    """Stop before resuming or scoring a damaged ``last.pt``, saying how to recover (reads its ends only)."""
    damage = zip_damage(last) if last.is_file() else None
    if damage:
        raise FrposeError(f"{row_name}: {last} is damaged: {damage}; the row cannot be resumed or scored from it "
                          f"and no earlier copy is kept; rerun the same command with --restart {row_name} to train "
                          "this row again from the start (the other rows are kept)")


def restart_row(row_dir: Path, say) -> None:
    """Remove ``row_dir`` so its row runs from the start; refused while another frpose run trains it."""
    if not row_dir.exists():
        say(f"{row_dir.name}: --restart: nothing to remove, the row starts from its first epoch")
        return
    if (row_dir / "train").is_dir():   # FolderLock refuses a folder a live run holds; it is free, so let it go
        FolderLock(row_dir / "train", "all", f"{row_dir.name}'s training folder").release()
    try:
        shutil.rmtree(row_dir)
    except OSError as e:
        raise FrposeError(f"--restart {row_dir.name}: cannot remove {row_dir} ({e.strerror or e})") from None
    say(f"{row_dir.name}: --restart: removed {row_dir} (its training and scores); the row starts from its first epoch")
