"""Write the model cards in models/ (run after changing a default; the YAML files are committed).

    python scripts/make_cards.py

Reference figures are copied from the paper's Tables 1-3 (val2017 AP unless marked test-dev).
"""
from __future__ import annotations

from pathlib import Path

import yaml

from frpose_cli.data.keypoints import COCO17

OUT = Path(__file__).resolve().parent.parent / "models"
FR_WIDTHS = [256, 256, 256, 128, 32]
SBN_WIDTHS = [256, 256, 256]
# The training recipe: the only place its numbers are written (the code reads them from the cards).
# Optimiser and schedule from the paper §4.1; the draw probabilities are Simple Baselines' constants.
RECIPE = {
    "optimizer": "adam", "lr": 1.0e-3, "lr_steps": [90, 120], "lr_factor": 0.1,
    "epochs": 140, "batch_size": 32, "weight_decay": 0.0,
    "flip": True, "flip_prob": 0.5, "rotation": 40.0, "rotation_prob": 0.6, "scale": [0.7, 1.3],
    "half_body": False, "half_body_prob": 0.3, "half_body_min_joints": 8,
    # the paper's ranges as uniform draws; "clipped-normal" is Simple Baselines' (docs/training.md)
    "distribution": "uniform",
}
OPEN_CHOICES = {"gcb_ratio": 0.25, "fused_width": 256, "resize_mode": "bilinear", "attention_act": "relu"}
FUSION_DECODERS = [2, 3, 4]   # SA-MFCD (and the skip ablation) feed decoders 2-4 (paper §3.3)

# (input size) → paper Table 2 rows: AP, params M, "GFLOPs" (multiply-accumulates), time ms
TABLE2 = {
    "sbn-r50": [([256, 192], 70.4, 34.0, 8.9, 2.3), ([384, 288], 72.2, 34.0, 20.0, 5.7)],
    "sbn-r101": [([256, 192], 71.4, 53.0, 12.4, 3.3), ([384, 288], 73.6, 53.0, 27.9, 8.0)],
    "sbn-r152": [([256, 192], 72.0, 68.6, 15.7, 4.8), ([384, 288], 74.3, 68.6, 35.3, 11.8)],
    "frpose-r34": [([256, 192], 72.5, 33.0, 21.3, 3.5), ([384, 288], 74.2, 33.0, 48.0, 8.6)],
}
TABLE1 = {"sbn-r34": 69.8, "fr-sbn-r34": 71.0, "fr-sbn-gcb-r34": 71.6,
          "fr-sbn-gcb-skip-r34": 71.7, "frpose-r34": 72.5}
TABLE3_TESTDEV = {"frpose-r34": (72.0, 73.7), "frpose-r50": (72.3, 73.9),
                  "frpose-r101": (72.6, 74.3), "frpose-r152": (73.3, 74.9)}


def paper_rows(name: str) -> list[dict]:
    rows = {}
    for size, ap, params, gflops, ms in TABLE2.get(name, []):
        rows[tuple(size)] = {"input_size": size, "source": "Table 2", "ap": ap, "params_m": params,
                             "gmacs": gflops, "latency_ms": ms}
    if name in TABLE1:
        rows.setdefault((256, 192), {"input_size": [256, 192], "source": "Table 1"})["ap"] = TABLE1[name]
    for size, ap in zip(([256, 192], [384, 288]), TABLE3_TESTDEV.get(name, ())):
        rows.setdefault(tuple(size), {"input_size": size, "source": "Table 3"})["ap_test_dev"] = ap
    return [rows[k] for k in sorted(rows)]


def card(name, description, depth, widths, gcb, fusion, upsample="deconv") -> dict:
    full = len(widths) == 5
    return {
        "name": name,
        "description": description,
        "architecture": {"depth": depth, "decoder_widths": widths, "gcb": gcb, "fusion": fusion,
                         **OPEN_CHOICES, "fusion_decoders": FUSION_DECODERS,
                         **({"fusion_upsample": upsample} if fusion == "sa_mfcd" else {})},
        "input_size": [256, 192],
        "heatmap": {"codec": "sbn", "sigma": {"256x192": 8.0 if full else 2.0,
                                              "384x288": 12.0 if full else 3.0}},
        "keypoints": COCO17.to_dict(),
        "normalize": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        "train": dict(RECIPE),
        "paper": paper_rows(name),
    }


def all_cards() -> list[dict]:
    cards = []
    for d in (18, 34, 50, 101, 152):
        cards.append(card(f"sbn-r{d}", f"Simple Baselines (SBN), ResNet-{d}: 3 decoders, heatmaps at 1/4",
                          d, SBN_WIDTHS, False, "none"))
        cards.append(card(f"frpose-r{d}", f"FR-SBN + GCB + SA-MFCD (the paper's network), ResNet-{d}",
                          d, FR_WIDTHS, True, "sa_mfcd"))
    cards += [
        card("fr-sbn-r34", "FR-SBN (Table 1): SBN + 2 decoders, full-resolution heatmaps, ResNet-34",
             34, FR_WIDTHS, False, "none"),
        card("fr-sbn-gcb-r34", "FR-SBN + GCB (Table 1), ResNet-34", 34, FR_WIDTHS, True, "none"),
        card("fr-sbn-gcb-skip-r34", "FR-SBN + GCB + vanilla skip connections (Table 1), ResNet-34",
             34, FR_WIDTHS, True, "skip"),
        # the other reading of SA-MFCD's up-sampling, kept for comparison (docs/design.md, "Model size")
        card("frpose-r34-interp", "FR-SBN + GCB + SA-MFCD with bilinear (not learned) up-sampling in SA-MFCD, "
             "ResNet-34", 34, FR_WIDTHS, True, "sa_mfcd", upsample="interpolate"),
    ]
    return cards


def main():
    OUT.mkdir(exist_ok=True)
    for c in all_cards():
        text = f"# {c['description']}\n# Written by scripts/make_cards.py; see docs/design.md for the choices.\n"
        text += yaml.safe_dump(c, sort_keys=False, default_flow_style=None, width=110)
        (OUT / f"{c['name']}.yaml").write_text(text)
        print("wrote", OUT / f"{c['name']}.yaml")


if __name__ == "__main__":
    main()
