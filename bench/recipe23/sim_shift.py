"""Issue 23: top-1 on Penn Action's test split under the two shifts real videos bring, simulated.

    python bench/recipe23/sim_shift.py --data LQ.pkl --model NAME=CKPT [...] [--json OUT]

Per model, on the test split of LQ.pkl (simulated LQ): `whole` = the centred whole-clip window (what `pipeline
eval` scores); `closeup` = the same window seen through a frame that cuts the body below 55 % of its height (an
upper-body close-up: legs and often the hips gone); `window` = a window cut as `run` cuts a longer video (a
random 50-100 % of the clip padded with up to half its length of still frames, seeded per clip, the same draws
for every model). Each model gets its own normalisation (`norm`); the draws do not depend on the model.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from models.checkpoint import load_checkpoint
from models.contract.atomic import atomic_write_text
from models.net.transforms import AugmentParams, make_input, sample_indices, train_indices
from pipeline.data.pyskl_io import load_dataset

CLOSEUP = AugmentParams(crop=(0.0, 0.0, 1.0, 0.55))


@torch.inference_mode()
def top1(model, x: np.ndarray, y: np.ndarray) -> float:
    preds = [model(torch.from_numpy(x[i:i + 128])).argmax(1).numpy() for i in range(0, len(x), 128)]
    return round(float((np.concatenate(preds) == y).mean()), 4)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--model", action="append", required=True, help="NAME=CKPT")
    ap.add_argument("--json", dest="json_out", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = {}
    ds = None
    for spec in args.model:
        name, _, ckpt = spec.partition("=")
        model, meta = load_checkpoint(ckpt)
        icfg, lay = meta["input_config"], meta["layout"]
        ds = ds or load_dataset(args.data, lay)
        clips = ds.subset("test")
        y = np.array([c.label for c in clips])
        cut = replace(icfg, aug_window=0.5, aug_idle=0.5)
        xs = {"whole": [], "closeup": [], "window": []}
        for i, c in enumerate(clips):
            idx = sample_indices(c.total_frames, icfg.length, False)[0]
            xs["whole"].append(make_input(c, lay, icfg, idx))
            xs["closeup"].append(make_input(c, lay, icfg, idx, CLOSEUP))
            widx = train_indices(c.total_frames, cut, np.random.default_rng([23, i]))
            xs["window"].append(make_input(c, lay, icfg, widx))
        out[name] = {k: top1(model, np.stack(v), y) for k, v in xs.items()}
        print(name, out[name], flush=True)
    if args.json_out:
        atomic_write_text(args.json_out, json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
