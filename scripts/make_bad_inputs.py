"""Write the bad-input corpus of tests/bad_inputs.py to a folder and print each case's command.

    python scripts/make_bad_inputs.py /tmp/bad-inputs

Every case gets its own subfolder; the command printed beside it is what tests/test_bad_inputs.py runs,
with the exit code and message frpose must answer. Cases that need a read-only or a full file system, or
a finished training run, are listed but not built (the test makes those with mounts as root).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bad_inputs import CASES, Ctx  # noqa: E402  (the corpus lives beside the tests that use it)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="empty or new folder to write the corpus into")
    args = p.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        sys.exit(f"{args.out} is not empty; give a new folder")
    import torch
    from frpose_cli.cards import load_card
    from frpose_cli.weights.checkpoint import save_checkpoint

    args.out.mkdir(parents=True, exist_ok=True)
    card = load_card("sbn-r18", (64, 64))
    torch.manual_seed(0)
    ckpt = save_checkpoint(args.out / "sbn-r18-random.pt", card.build_model(), card)
    for case in CASES:
        if case.needs:
            print(f"# {case.name}: needs {', '.join(case.needs)} (built by the test only)")
            continue
        ctx = Ctx(root=args.out / case.name, ckpt=ckpt)
        ctx.root.mkdir()
        argv, _ = case.build(ctx)
        print(f"# {case.name}: exit {case.code}, says {case.text!r}")
        print("frpose " + " ".join(shlex.quote(str(a)) for a in argv))


if __name__ == "__main__":
    main()
