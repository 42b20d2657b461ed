"""Markdown ablation rows from real_eval.py and sim_shift.py JSON files (issue 23).

    python bench/recipe23/table.py --real real_low.json [--real real_low_flip.json] --sim sim_*.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def cell(m: dict | None, key: str) -> str:
    v = None if m is None else m.get(key)
    return "–" if v is None else f"{v:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--real", action="append", type=Path, default=[])
    ap.add_argument("--sim", action="append", type=Path, default=[])
    args = ap.parse_args()
    sim: dict[str, dict] = {}
    for p in args.sim:
        sim.update(json.loads(p.read_text()))
    print("| row | skeletons | flip | Penn LQ test: whole / close-up / run window | dev top-1 | dev per-class | "
          "dev AUROC energy / maxlogit / msp / maha | val top-1 | val per-class | "
          "val AUROC energy / maxlogit / msp / maha | "
          "val flagged / accepted (energy, dev threshold) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for p in args.real:
        for r in json.loads(p.read_text()):
            s = sim.get(r["name"], {})
            sims = " / ".join(f"{s[k]:.3f}" for k in ("whole", "closeup", "window")) if s else "–"
            dev, val = r["splits"].get("dev"), r["splits"].get("val")
            au = [" / ".join(cell(m, f"auroc_{k}") for k in ("energy", "maxlogit", "msp", "maha")) for m in (dev, val)]
            fa = f"{cell(val, 'flagged_known_energy')} / {cell(val, 'accepted_other_energy')}"
            print(f"| {r['name']} | {p.stem.split('_')[0]} | {'yes' if r['flip'] else 'no'} | {sims} | "
                  f"{cell(dev, 'top1')} | {cell(dev, 'per_class_mean')} | {au[0]} | {cell(val, 'top1')} | "
                  f"{cell(val, 'per_class_mean')} | {au[1]} | {fa} |")


if __name__ == "__main__":
    main()
