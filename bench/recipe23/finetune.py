"""Issue 23 ablation at a CPU budget: fine-tune a checkpoint for a few epochs with some input levers switched on.

    python bench/recipe23/finetune.py --model CKPT --data LQ.pkl --out RUN [--config LEVERS.toml]
        [--epochs 5] [--lr 0.02]

Training a teacher and distilling a student per lever did not fit the 2 shared cores of the issue-23 session
(one 20-epoch teacher took > 1 h of wall time there). So each lever row fine-tunes the same starting model (the
bundled student) on the same simulated-LQ pickle for the same epochs with plain cross-entropy; the control row
fine-tunes with no lever. LEVERS.toml sets InputConfig fields (norm, aug_window, aug_idle, aug_crop, aug_shear,
...); the checkpoint's own input settings are kept otherwise. Writes RUN/model.pt (with its open-set rule, fitted
as `train` fits it) and RUN/metrics.json (test_top1 = the pickle's test split).

`--oe W`: outlier exposure (Hendrycks et al., ICLR 2019). The synthetic generator's actions that are not Penn
classes (waving, arm circles, punches, bowing, marching; pipeline/data/synthetic.py), corrupted with `--oe-spec`
like the student's LQ, join every epoch with label -1; their loss is W x the cross-entropy to the uniform
distribution over the classes (logsumexp minus the mean logit), which pushes their logits flat.
`--oe-real LABELS.csv --oe-cache DIR [--oe-split dev]`: the outliers are instead the real clips of that split
whose label is not a class of the model (`other` clips of the real-video set), as the fast tier (BlazePose lite,
`--quality low`) cached them; the other split stays unseen, so it measures the flag honestly.

`--real-train LABELS.csv --real-cache DIR`: real labelled clips join the training set: every in-class clip of
the CSV (one fold of dev, bench/recipe23/source_folds.py), as the fast tier cached it, cut into the windows
`pipeline run` classifies (pipeline.infer.prediction.window_bounds; windows with too little of a person
dropped), repeated so that they make `--real-share` (0.25) of an epoch. Each window is then cut and framed by the
same training levers as a Penn clip.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import tomllib
import torch
import torch.nn.functional as F

from models.checkpoint import load_checkpoint
from models.contract.skeleton import Clip
from models.training import classifier
from models.training.classifier import train_model
from models.training.config import TrainConfig
from models.training.fit import StepOut
from pipeline.data.clips import ClipDataset
from pipeline.data.corrupt import corrupt_dataset, parse_spec
from pipeline.data.labels import read_labels
from pipeline.data.pyskl_io import load_dataset
from pipeline.data.synthetic import ACTIONS, make_dataset
from pipeline.extract.build import NO_PERSON, CachedClip, cached_clips
from pipeline.extract.cache import PoseCache
from pipeline.infer.prediction import enough_person, window_bounds

PENN_LIKE = {"jumping_jacks", "squat"}  # synthetic actions that are Penn classes: never outliers


class WithOutliers(torch.utils.data.Dataset):
    """The labelled clips, then the outlier clips with label -1 (same input transform, own seed stream)."""

    def __init__(self, labeled: ClipDataset, outliers: ClipDataset):
        self.labeled, self.outliers = labeled, outliers
        self.clips = labeled.clips  # what train_model fits the open-set rule on

    def set_epoch(self, epoch: int) -> None:
        self.labeled.set_epoch(epoch)
        self.outliers.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.labeled) + len(self.outliers)

    def __getitem__(self, i: int):
        if i < len(self.labeled):
            return self.labeled[i]
        return self.outliers[i - len(self.labeled)][0], -1


def fast_tier(rows: list, cache: Path, layout, estimator: str) -> Iterator[CachedClip]:
    """The cached fast-tier skeletons of `rows` in `layout`; clips without a person are skipped, a clip with no
    entry stops the run (the cache must hold the whole split)."""
    for c in cached_clips(rows, [PoseCache(cache)], estimator, "low", layout):
        if c.missing and c.missing != NO_PERSON:
            raise SystemExit(f"{c.row.video.name}: {c.missing} {cache}")
        if not c.missing:
            yield c


def real_outliers(labels: Path, cache: Path, split: str, classes: list[str], layout, estimator: str) -> list[Clip]:
    """The cached fast-tier skeletons of `split`'s clips whose label is not one of `classes`, in `layout`."""
    rows = [r for r in read_labels(labels) if r.split == split and r.label not in classes]
    return [Clip(c.row.video.name, -1, c.keypoint, c.keypoint_score, fps=c.fps)
            for c in fast_tier(rows, cache, layout, estimator)]


def real_windows(labels: Path, cache: Path, classes: list[str], layout, estimator: str) -> list[Clip]:
    """The in-class clips of `labels` (fast tier, from `cache`) as `run`'s windows, labelled with their class."""
    rows = [r for r in read_labels(labels) if r.label in classes]
    out = []
    for c in fast_tier(rows, cache, layout, estimator):
        bounds = window_bounds(c.keypoint.shape[1], c.fps)
        for (s, e), ok in zip(bounds, enough_person(bounds, (c.keypoint_score > 0).any(axis=(0, 2)), c.fps)):
            if ok:
                out.append(Clip(f"{c.row.video.name}@{s}", classes.index(c.row.label), c.keypoint[:, s:e],
                                c.keypoint_score[:, s:e], fps=c.fps))
    return out


def oe_step(weight: float):
    """A `ce_step` factory whose loss adds `weight` x the uniform cross-entropy of the rows labelled -1."""

    def make(model, cfg, params, dist=None):
        def step(batch):
            x, y = batch
            logits = model(x).float()
            inl = y >= 0
            terms = {"ce": F.cross_entropy(logits[inl], y[inl]) if inl.any() else logits.sum() * 0}
            if (~inl).any():
                z = logits[~inl]
                terms["oe"] = weight * (torch.logsumexp(z, 1) - z.mean(1)).mean()
            loss = sum(terms.values())
            if not torch.isfinite(loss):
                return StepOut({k: v.detach() for k, v in terms.items()}, logits[inl].detach(), y[inl],
                               {"skipped": 1.0})
            loss.backward()
            return StepOut({k: v.detach() for k, v in terms.items()}, logits[inl].detach(), y[inl])
        return step
    return make


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--config", type=Path, help="TOML of InputConfig fields (the levers)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--oe", type=float, default=0.0, help="outlier-exposure weight (0: off)")
    ap.add_argument("--oe-clips", type=int, default=40, help="synthetic clips per outlier action [40]")
    ap.add_argument("--oe-spec", default="profile=models/zoo/lq_profile_lite_penn13.json,impute=0")
    ap.add_argument("--oe-real", type=Path, help="labels CSV of real clips: its non-class clips are the outliers")
    ap.add_argument("--oe-cache", type=Path, help="extraction cache holding --oe-real's skeletons")
    ap.add_argument("--oe-split", default="dev", help="split of --oe-real to take outliers from [dev]")
    ap.add_argument("--real-train", type=Path, help="labels CSV of real clips to learn from (its in-class rows)")
    ap.add_argument("--real-cache", type=Path, help="extraction cache holding --real-train's skeletons")
    ap.add_argument("--real-share", type=float, default=0.25, help="share of an epoch the real windows make [0.25]")
    ap.add_argument("--estimator", default="blazepose", help="cache entries' estimator name [blazepose]")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    model, meta = load_checkpoint(args.model)
    levers = tomllib.loads(args.config.read_text()) if args.config else {}
    icfg = replace(meta["input_config"], **levers)
    ds = load_dataset(args.data, meta["layout"])
    penn = ds.subset("train")
    if args.real_train:
        real = real_windows(args.real_train, args.real_cache, list(ds.classes), ds.layout, args.estimator)
        want = int(round(args.real_share / (1 - args.real_share) * len(penn)))
        reps = max(1, round(want / max(1, len(real))))
        print(f"real windows: {len(real)} from {args.real_train}, x{reps} = {len(real) * reps} beside "
              f"{len(penn)} Penn clips")
        penn = penn + real * reps
    train = ClipDataset(penn, ds.layout, icfg, train=True, seed=args.seed)
    if args.oe > 0:
        if args.oe_real:
            clips = real_outliers(args.oe_real, args.oe_cache, args.oe_split, list(ds.classes), ds.layout,
                                  args.estimator)
            # Repeat the few real clips so that they make about a tenth of an epoch, as the synthetic ones do.
            clips = clips * max(1, len(train) // (10 * max(1, len(clips))))
            print(f"outlier exposure: {len(clips)} windows from real {args.oe_split} clips")
        else:
            others = [i for i, a in enumerate(ACTIONS) if a[0] not in PENN_LIKE]
            clips = corrupt_dataset(make_dataset(args.oe_clips, 0.0, args.seed, others), parse_spec(args.oe_spec),
                                    args.seed).clips
        train = WithOutliers(train, ClipDataset(clips, ds.layout, icfg, train=True, seed=args.seed + 7919))
        classifier.ce_step = oe_step(args.oe)  # train_model builds its step with this
    test = ClipDataset(ds.subset("test"), ds.layout, icfg, train=False, seed=args.seed)
    cfg = TrainConfig(epochs=args.epochs, lr=args.lr, warmup_epochs=min(1.0, args.epochs / 6), seed=args.seed,
                      eval_every=args.epochs, plot_every=0)
    m = train_model(model, train, test, cfg, args.out, layout=ds.layout, classes=list(ds.classes),
                    model_config=meta["model_config"], input_config=icfg, progress=False,
                    extra={"role": "finetune", "from": str(args.model), "levers": levers, "data": str(args.data)})
    print(f"{args.out}: test top-1 {m['test_top1']:.4f} ({m['train_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
