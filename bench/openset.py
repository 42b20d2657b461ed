"""Open-set honesty of a student (default: the bundled one): in-class clips kept, out-of-class real clips flagged.

    python bench/openset.py --data penn.pkl [--model CKPT] [--corrupt SPEC] [--videos DIR]

1. In-class: the pickle's test split (corrupted with --corrupt, as the student's input), split in two halves by
   clip order parity; the rule (class means and covariance from the train split) gets its threshold from one half
   and is scored on the other, both ways, so the kept fraction is measured on clips the threshold never saw.
2. Out-of-class: `pipeline run --json` on every video in --videos (real clips of other actions), one process each,
   with the model's stored rule; prints the top label, its score, the distance and whether the clip was flagged.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from models.checkpoint import load_checkpoint
from models.openset import OpenSetRule, fit_rule
from models.training.calibration import clip_inputs, pooled_features
from pipeline.data.corrupt import corrupt_dataset, parse_spec
from pipeline.data.pyskl_io import load_dataset
from pipeline.infer.prediction import BUNDLED_MODEL

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path, help="labelled pickle of the model's classes")
    ap.add_argument("--model", type=Path, default=BUNDLED_MODEL)
    ap.add_argument("--corrupt", default=f"profile={ROOT / 'models/zoo/lq_profile_penn13.json'}")
    ap.add_argument("--keep", type=float, default=0.95)
    ap.add_argument("--videos", type=Path, default=ROOT.parent / "shared" / "data" / "videos")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"# bench/openset.py  {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC  "
          f"{platform.platform()}  model {args.model.name}")
    model, meta = load_checkpoint(args.model)
    ds = load_dataset(args.data)
    if args.corrupt:
        ds = corrupt_dataset(ds, parse_spec(args.corrupt), seed=0)
    icfg = meta["input_config"]
    tr, te = ds.subset("train"), ds.subset("test")
    f_tr, _ = pooled_features(model, clip_inputs(tr, ds.layout, icfg))
    f_te, logits = pooled_features(model, clip_inputs(te, ds.layout, icfg))
    y_tr = np.array([c.label for c in tr])
    halves = [np.arange(len(te)) % 2 == 0, np.arange(len(te)) % 2 == 1]
    shown = args.corrupt.replace(f"{ROOT}/", "") if args.corrupt else "as stored"
    print(f"\nin-class (test split, {len(te)} clips, LQ = {shown}); top-1 "
          f"{float((logits.argmax(1) == np.array([c.label for c in te])).mean()):.3f}")
    print("| threshold from | scored on | threshold | kept |\n|---|---|---|---|")
    for a, b in ((0, 1), (1, 0)):
        rule = fit_rule(f_tr, y_tr, f_te[halves[a]], len(meta["classes"]), args.keep)
        kept = float(rule.known(f_te[halves[b]]).mean())
        print(f"| half {a} ({int(halves[a].sum())} clips) | half {b} | {rule.threshold:.1f} | {kept:.3f} |")
    stored = meta["extra"].get("open_set")
    if stored is None:
        print("\nthe model carries no open-set rule: `pipeline calibrate` first for the video part")
        return
    rule = OpenSetRule.from_dict(stored, len(meta["classes"]), model.feature_channels)
    print(f"\nout-of-class real clips (`pipeline run --json`, stored threshold {rule.threshold:.1f})")
    print("| video | frames | top label (score) | distance | verdict |\n|---|---|---|---|---|")
    for video in sorted(args.videos.glob("*.mp4")):
        proc = subprocess.run([sys.executable, "-m", "pipeline", "run", str(video), "--model", str(args.model),
                               "--json", "--no-progress"], capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"| {video.name} | | failed: {proc.stderr.strip()[:80]} | | |")
            continue
        r = json.loads(proc.stdout)
        o = r.get("open_set", {})
        verdict = "kept (called known)" if o.get("known") else f"flagged{': ' + o['reason'] if 'reason' in o else ''}"
        print(f"| {video.name} | {r['frames']} | {r['labels'][0]['label']} ({r['labels'][0]['score']:.2f}) | "
              f"{o.get('distance')} | {verdict} |")


if __name__ == "__main__":
    main()
