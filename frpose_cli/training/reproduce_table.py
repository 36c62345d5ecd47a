"""The paper's tables as `frpose reproduce` runs them: rows, the paper's figures, and the rendering
of ours beside them (``DIR/tableN.md`` and ``DIR/tableN.json``; the runs are in
:mod:`frpose_cli.training.reproduce`).

Design decisions:

* **A row is a card at an input size** (``frpose-r34-384x288``), named as its folder is. The
  paper's figures come from the card's ``paper:`` entries, matched by input size only: a card and
  size have one set of figures in the paper (Table 1's FR-SBN+GCB+SA-MFCD 72.5 is Table 2's
  "ours" 72.5, which the frpose-r34 card records with ``source: Table 2``).
* **Table 3's AP50/AP75/APM/APL/AR** are test-dev figures the cards do not carry (they hold the
  test-dev AP only); they are kept here, copied from the paper's Table 3, "ours" rows.
* **Which rows are the paper's own.** Table 1's five networks were all trained by the authors
  ("our re-trained SBN-34"); Table 2's SBN-50/101/152 figures are quoted from Simple Baselines
  [33] and only its two "ours" rows are the paper's network; Table 3's rows are all "ours". We
  train every row anyway; the "paper's row" column says which figure is quoted.
* **Cost** is counted on our network at the paper's input size (the architecture a dry run trains
  is the same; only its crops are smaller), with :func:`frpose_cli.deploy.bench.count_params` /
  ``count_macs`` on PyTorch's meta device (shapes only: no memory, no arithmetic). Latency is
  machine-bound: `frpose bench` measures it (the paper's is shown).
* **Figures** are ×100 with one decimal, as the paper prints them; one the paper does not give is
  ``-``, one COCOeval cannot compute (no medium-sized person among the scored) ``n/a``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from frpose_cli.cards import load_card, size_key

SMALL, LARGE = (256, 192), (384, 288)
METRICS = ("AP", "AP50", "AP75", "APM", "APL", "AR")


@dataclass(frozen=True)
class Row:
    card: str
    size: tuple[int, int]
    paper_row: str        # the method as the paper's table names it
    quoted: bool = False  # the paper quotes this figure from another paper instead of training it

    @property
    def name(self) -> str:
        return f"{self.card}-{size_key(self.size)}"


@dataclass(frozen=True)
class PaperTable:
    name: str
    title: str
    rows: tuple
    test_dev: bool = False   # Table 3: the paper's figures are on test-dev2017


def _sbn(depth: int, size) -> Row:
    return Row(f"sbn-r{depth}", size, f"SBN-{depth} [33] (quoted)", quoted=True)


TABLES = {t.name: t for t in (
    PaperTable("table1", "Table 1: networks with different additional components (ResNet-34, 256x192, COCO val2017)",
               (Row("sbn-r34", SMALL, "SBN-34"), Row("fr-sbn-r34", SMALL, "FR-SBN"),
                Row("fr-sbn-gcb-r34", SMALL, "FR-SBN+GCB"), Row("fr-sbn-gcb-skip-r34", SMALL, "FR-SBN+GCB+skip"),
                Row("frpose-r34", SMALL, "FR-SBN+GCB+SA-MFCD"))),
    PaperTable("table2", "Table 2: COCO val2017, AP, #params, GFLOPs (= GMACs) and latency",
               tuple(r for size in (SMALL, LARGE) for r in
                     (_sbn(50, size), _sbn(101, size), _sbn(152, size), Row("frpose-r34", size, "ours (ResNet-34)")))),
    PaperTable("table3", "Table 3: COCO test-dev2017 (scored by the COCO server; ours also on val2017)",
               tuple(Row(f"frpose-r{d}", size, f"ours (Res.{d})") for size in (SMALL, LARGE) for d in (34, 50, 101, 152)),
               test_dev=True),
)}

# The paper's Table 3, "ours" rows: AP50, AP75, APM, APL, AR on test-dev2017 (AP is in the cards).
TABLE3_TEST_DEV = {
    "frpose-r34-256x192": (91.1, 79.9, 68.9, 77.7, 77.5), "frpose-r50-256x192": (91.3, 80.1, 69.1, 78.2, 77.8),
    "frpose-r101-256x192": (91.6, 80.5, 69.4, 78.4, 78.1), "frpose-r152-256x192": (91.3, 80.8, 70.1, 78.9, 78.8),
    "frpose-r34-384x288": (91.7, 81.1, 70.4, 79.7, 78.9), "frpose-r50-384x288": (91.7, 81.3, 70.4, 80.0, 79.0),
    "frpose-r101-384x288": (92.0, 82.0, 71.0, 80.4, 79.6), "frpose-r152-384x288": (92.2, 82.4, 71.6, 80.9, 80.2),
}


def paper_figures(row: Row) -> dict:
    """The paper's figures for ``row``: ap, params_m, gmacs, latency_ms (val2017) and, for Table 3's
    rows, ``test_dev`` {AP, AP50, ...}; what the paper does not give is absent."""
    entry = next((e for e in load_card(row.card).paper if tuple(e.get("input_size", ())) == row.size), {})
    figures = {k: entry[k] for k in ("ap", "params_m", "gmacs", "latency_ms") if k in entry}
    if "ap_test_dev" in entry:
        figures["test_dev"] = dict(zip(METRICS, (entry["ap_test_dev"], *TABLE3_TEST_DEV.get(row.name, ()))))
    return figures


def network_cost(row: Row) -> dict:
    """Parameters (M) and GMACs of our network at the paper's input size."""
    import torch

    from frpose_cli.deploy.bench import count_macs, count_params
    meta = torch.device("meta")
    with meta:
        model = load_card(row.card).build_model()
    return {"params_m": count_params(model) / 1e6, "gmacs": count_macs(model, row.size, device=meta) / 1e9}


def _f(value, scale: float = 1.0) -> str:
    """A figure as printed; COCOeval's -1 (no person of that size among the scored) is n/a."""
    return "-" if value is None else "n/a" if value < 0 else f"{value * scale:.1f}"


def render_markdown(table: PaperTable, records: list[dict], notes: list[str]) -> str:
    """The table as Markdown: per row ours beside the paper's (``records``: :func:`row_record`'s)."""
    if table.test_dev:
        head = (["row", "paper's row", "val AP", "val AR"] + [f"test-dev {m} (paper)" for m in METRICS]
                + ["test-dev (ours)", "params M", "paper", "GMACs", "paper", "run folder"])
    else:
        head = (["row", "paper's row", "AP", "paper AP", "AP50", "AP75", "APM", "APL", "AR", "params M", "paper",
                 "GMACs", "paper"] + (["latency ms (paper)"] if table.name == "table2" else []) + ["run folder"])
    lines = [f"## {table.title}", "", *[f"- {n}" for n in notes], "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for r in records:
        ours, paper, cost = r.get("metrics") or {}, r["paper"], r["cost"]
        costs = [_f(cost["params_m"]), _f(paper.get("params_m")), _f(cost["gmacs"]), _f(paper.get("gmacs"))]
        if table.test_dev:
            dev = paper.get("test_dev", {})
            submission = f"submit {r['submission']}" if r.get("submission") else r.get("submission_note", "-")
            cells = ([_f(ours.get("AP"), 100), _f(ours.get("AR"), 100)] + [_f(dev.get(m)) for m in METRICS]
                     + [submission, *costs])
        else:
            cells = ([_f(ours.get("AP"), 100), _f(paper.get("ap"))] + [_f(ours.get(m), 100) for m in METRICS[1:]]
                     + costs + ([_f(paper.get("latency_ms"))] if table.name == "table2" else []))
        lines.append("| " + " | ".join([r["row"], r["paper_row"], *cells, r["folder"]]) + " |")
    return "\n".join(lines) + "\n"


def row_record(row: Row, folder: Path, trained_at, epochs: tuple, metrics: dict | None, cost: dict,
               submission: str | None = None, submission_note: str | None = None) -> dict:
    """One row of ``tableN.json``: ours (fractions, as COCOeval gives them), the paper's (×100, as printed)."""
    record = {"row": row.name, "card": row.card, "input_size": list(row.size), "trained_at": list(trained_at),
              "paper_row": row.paper_row, "quoted": row.quoted, "folder": str(folder),
              "epochs_done": epochs[0], "epochs": epochs[1], "metrics": metrics, "cost": cost,
              "paper": paper_figures(row)}
    if submission or submission_note:
        record.update(submission=submission, submission_note=submission_note)
    return record


def cached_cost(row: Row, row_dir: Path) -> dict:
    """:func:`network_cost`, counted once per row folder (``cost.json``)."""
    from frpose_cli.data.annotations import read_json
    from frpose_cli.fileio import atomic_write_json
    path = row_dir / "cost.json"
    if path.is_file():
        return read_json(path, "cost file")
    cost = network_cost(row)
    atomic_write_json(path, cost)
    return cost


def notes(table: PaperTable, settings: dict, processes: int, trained_at: dict, inputs: dict) -> list[str]:
    """The lines above the table: the budget (and whether it is the paper's), the boxes, the protocol.
    ``trained_at``: paper input size → the size trained at."""
    s, card = settings, load_card(table.rows[0].card)
    limit = f"the first {s['limit']} images" if s["limit"] else "all images"
    scored = f"the first {s['eval_limit']} images" if s["eval_limit"] else "all images"
    epochs = s["epochs"] or card.recipe("epochs")
    if s["dry_run"]:
        sizes = ", ".join(f"{size_key(trained_at[z])} for {size_key(z)}" for z in sorted({r.size for r in table.rows}))
        budget = (f"dry run: {epochs} epoch{'s' * (epochs != 1)} on {limit} of train2017 at {sizes}, batch "
                  f"{s['batch_size']}, encoder init {s['pretrained']}: figures are not comparable with the paper")
    else:
        budget = (f"recipe (the cards', the paper's §4.1): Adam lr {card.recipe('lr'):g}, ×{card.recipe('lr_factor'):g} "
                  f"at epochs {', '.join(map(str, card.recipe('lr_steps')))}, {epochs} epochs, batch "
                  f"{s['batch_size'] or card.recipe('batch_size')} per process × {max(processes, 1)}, encoder init "
                  f"{s['pretrained']}")
        changed = [c for c in (f"{epochs} epochs" if s["epochs"] else "", f"{limit} of train2017" if s["limit"] else "",
                               f"batch {s['batch_size']}" if s["batch_size"] else "") if c]
        if changed:
            budget += (f"; the budget differs from the paper's recipe ({', '.join(changed)}): figures are not "
                       "comparable with the paper")
    lines = [budget, inputs["boxes_note"],
             f"ours: COCO keypoint AP ×100 on val2017 ({scored}), flip test, the final last.pt of each training; "
             "params and GMACs: our network at the paper's input size (frpose_cli/deploy/bench.py)"]
    if table.name == "table2":
        lines.append("paper's row '(quoted)': the paper quotes Simple Baselines [33]; we train those cards with the same "
                     "recipe. Latency is the paper's (its GPU); `frpose bench` measures ours")
    if table.test_dev:
        lines.append(inputs["test_dev_note"] + "; the paper's test-dev figures are beside our val2017 ones")
    return lines
