"""Issue 23 ablation: models on cached real-clip skeletons, each clip classified as `pipeline run` classifies it.

    python bench/recipe23/real_eval.py --labels LABELS.csv --cache DIR --model NAME=CKPT:QUALITY [...]
        [--flip] [--window S] [--json OUT]

LABELS.csv: `video,label,split` (split dev/val/...; a label that is not a class of the model, or `other`, marks a
clip that should be flagged). The skeletons come from the extraction cache (`pipeline extract --quality low|high`
into DIR): QUALITY low = the fast path's BlazePose lite, high = BlazePose heavy. Per clip, as
`pipeline.infer.prediction.classify` does it: the model's layout, `run`'s windows (the whole clip up to 10 s),
softmax averaged over the windows with a person. `--flip` also averages each window's left-right mirror
(test-time flip), `--window S` forces S-second windows.

Flag scores (higher = more likely an unknown action), each from the same windows: `maha` (the checkpoint's
open-set distance, median over windows as `run` takes it), `energy` (-logsumexp of the logits), `maxlogit`
(-max logit), `msp` (-max softmax of the clip). AUROC of in-class (known) vs other clips per split; the threshold
of each score is set on DEV in-class clips (keep `--keep` of them) and applied to every split as it is.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from models.checkpoint import load_checkpoint
from models.contract.atomic import atomic_write_text
from models.contract.layouts import get_layout
from models.contract.skeleton import Clip
from models.net.stgcn import STGCN
from models.net.transforms import AugmentParams, make_input, sample_indices
from models.openset import RULE, OpenSetRule, energy
from pipeline.data.labels import read_labels
from pipeline.extract.build import cached_clips
from pipeline.extract.cache import PoseCache
from pipeline.infer.prediction import window_bounds

SCORES = ("maha", "energy", "maxlogit", "msp")


def auroc(known: np.ndarray, unknown: np.ndarray) -> float | None:
    """P(score of an unknown clip > score of a known one), ties half."""
    if not len(known) or not len(unknown):
        return None
    k, u = np.asarray(known, float)[:, None], np.asarray(unknown, float)[None]
    return float(((u > k).sum() + 0.5 * (u == k).sum()) / (k.size * u.size))


@torch.inference_mode()
def clip_outputs(model: STGCN, meta: dict, rule: OpenSetRule | None, kp: np.ndarray, sc: np.ndarray, fps: float,
                 flip: bool, window: float | None) -> dict:
    icfg, layout = meta["input_config"], meta["layout"]
    bounds = window_bounds(kp.shape[1], fps, window, None)
    found = (sc > 0).any(axis=(0, 2))
    xs = []
    for s, e in bounds:
        c = Clip("window", 0, kp[:, s:e], sc[:, s:e])
        idx = sample_indices(e - s, icfg.length, train=False)[0]
        xs.append(make_input(c, layout, icfg, idx))
        if flip:
            xs.append(make_input(c, layout, icfg, idx, AugmentParams(flip=True)))
    x = torch.from_numpy(np.stack(xs))
    logits, f = model(x, return_features=True)
    feats = STGCN.pool(f.float(), x.shape[0]).numpy()
    logits = logits.float().numpy()
    per = 2 if flip else 1
    logits = logits.reshape(len(bounds), per, -1)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs = (probs / probs.sum(-1, keepdims=True)).mean(1)  # [W, K]
    has = np.array([bool(found[s:e].any()) for s, e in bounds])
    sel = has if has.any() else np.ones_like(has)
    overall = probs[sel].mean(0)
    lg = logits.mean(1)[sel]
    out = {"probs": overall, "energy": float(np.median(energy(lg))), "maxlogit": -float(np.median(lg.max(-1))),
           "msp": -float(overall.max()), "maha": None}
    if rule is not None and rule.kind == RULE:  # an energy rule's score is "energy" above
        d = rule.distance(feats).reshape(len(bounds), per).mean(1)
        out["maha"] = float(np.median(d[sel]))
    return out


def evaluate(name: str, ckpt: Path, quality: str, rows, caches: list[PoseCache], flip: bool,
             window: float | None, keep: float, estimator: str = "blazepose") -> dict:
    model, meta = load_checkpoint(ckpt)
    model.eval()
    classes = list(meta["classes"])
    rule = None
    if "open_set" in meta["extra"]:
        rule = OpenSetRule.from_dict(meta["extra"]["open_set"], len(classes), model.feature_channels)
    recs, missing = [], []
    for c in cached_clips(rows, caches, estimator, quality, get_layout(meta["layout"])):
        if c.missing:
            missing.append(f"{c.row.video.name} ({c.missing})")
            continue
        r, kp, sc = c.row, c.keypoint, c.keypoint_score
        o = clip_outputs(model, meta, rule, kp, sc, c.fps, flip, window)
        known = r.label in classes
        rank = 1 + int((o["probs"] > o["probs"][classes.index(r.label)]).sum()) if known else None
        recs.append({"video": r.video.name, "label": r.label, "split": r.split or "all", "known": known,
                     "top1": classes[int(np.argmax(o["probs"]))], "rank": rank,
                     **{s: o[s] for s in SCORES}})
    # Thresholds from DEV in-class clips only.
    thr = {}
    for s in SCORES:
        v = [x[s] for x in recs if x["split"] == "dev" and x["known"] and x[s] is not None]
        thr[s] = float(np.quantile(v, keep)) if v else None
    if rule is not None:
        thr["maha_rule"] = rule.threshold
    out = {"name": name, "model": str(ckpt), "quality": quality, "flip": flip, "window": window, "keep": keep,
           "thresholds": thr, "missing": missing, "splits": {}}
    for split in sorted({x["split"] for x in recs}) + ["all"]:
        rs = [x for x in recs if split in (x["split"], "all")]
        kn = [x for x in rs if x["known"]]
        un = [x for x in rs if not x["known"]]
        per: dict[str, list[int]] = {}
        for x in kn:
            per.setdefault(x["label"], []).append(int(x["top1"] == x["label"]))
        m = {"n_known": len(kn), "n_other": len(un),
             "top1": round(float(np.mean([x["top1"] == x["label"] for x in kn])), 4) if kn else None,
             "top3": round(float(np.mean([x["rank"] <= 3 for x in kn])), 4) if kn else None,
             "per_class_mean": round(float(np.mean([np.mean(v) for v in per.values()])), 4) if per else None,
             "per_class": {k: f"{sum(v)}/{len(v)}" for k, v in sorted(per.items())}}
        for s in SCORES:
            kv = [x[s] for x in kn if x[s] is not None]
            uv = [x[s] for x in un if x[s] is not None]
            a = auroc(np.array(kv), np.array(uv))
            m[f"auroc_{s}"] = None if a is None else round(a, 4)
            if thr[s] is not None and kv:
                m[f"flagged_known_{s}"] = round(float(np.mean(np.array(kv) > thr[s])), 4)
                m[f"accepted_other_{s}"] = round(float(np.mean(np.array(uv) <= thr[s])), 4) if uv else None
        if rule is not None:
            kv = [x["maha"] for x in kn]
            uv = [x["maha"] for x in un]
            m["flagged_known_rule"] = round(float(np.mean(np.array(kv) > rule.threshold)), 4) if kv else None
            m["accepted_other_rule"] = round(float(np.mean(np.array(uv) <= rule.threshold)), 4) if uv else None
        out["splits"][split] = m
    out["clips"] = recs
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labels", required=True, type=Path)
    ap.add_argument("--cache", required=True, type=Path, action="append", help="extraction cache (repeatable)")
    ap.add_argument("--model", action="append", required=True, help="NAME=CKPT:QUALITY (low or high)")
    ap.add_argument("--estimator", default="blazepose",
                    help="the cache entries' estimator name [blazepose; caches written before estimators had one "
                         "name each file BlazePose under mediapipe]")
    ap.add_argument("--flip", action="store_true")
    ap.add_argument("--window", type=float, default=None)
    ap.add_argument("--keep", type=float, default=0.9, help="dev in-class clips each threshold keeps [0.9]")
    ap.add_argument("--json", dest="json_out", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = read_labels(args.labels)
    caches = [PoseCache(c) for c in args.cache]
    results = []
    for spec in args.model:
        name, _, rest = spec.partition("=")
        ckpt, _, quality = rest.rpartition(":")
        res = evaluate(name, Path(ckpt), quality, rows, caches, args.flip, args.window, args.keep, args.estimator)
        results.append(res)
        for split, m in res["splits"].items():
            print(f"{name:28s} {quality:4s} {split:10s} n={m['n_known']}+{m['n_other']} top1 {m['top1']} "
                  f"pcm {m['per_class_mean']} AUROC maha {m['auroc_maha']} energy {m['auroc_energy']} "
                  f"maxlogit {m['auroc_maxlogit']} msp {m['auroc_msp']}")
        if res["missing"]:
            print(f"  missing {len(res['missing'])}: {', '.join(res['missing'][:5])}", file=sys.stderr)
    if args.json_out:
        atomic_write_text(args.json_out, json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
