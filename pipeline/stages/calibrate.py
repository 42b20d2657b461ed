"""`pipeline calibrate`: fit a checkpoint's open-set rule (models/openset.py) on a labelled pickle and store it.

Models trained by this version of `train`/`distill` already carry the rule (Mahalanobis); this is for older
checkpoints (the bundled model among them), for re-fitting on other data, e.g. the LQ a student will really see,
and for choosing the other kind of rule, `kind=ENERGY` (the energy of the logits; it separates other actions
better on real footage, see models/openset.py). Whatever the kind, the threshold is the `keep` quantile of the
held-out in-class clips' scores.

`real=RealClips(...)`: the threshold comes from real in-class clips instead (issue 23): the estimator's skeletons
of labelled videos, read from the extraction cache, each classified as `pipeline run` classifies it (`classify`:
its windows, the median window score). Simulated LQ sits nearer the class means than real footage does, so a
threshold set on it flags many real clips of the model's own classes. Class means and covariance (Mahalanobis)
still come from the pickle's train split; only the clips of `real.split` whose label is one of the model's
classes set the threshold.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from estimators import DEFAULT
from models.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from models.contract.errors import BadInput
from models.contract.layouts import Layout
from models.openset import RULE, threshold_at
from models.training.calibration import clip_inputs, pooled_features, rule_for
from pipeline.data.corrupt import corrupt_dataset, parse_spec
from pipeline.data.labels import read_labels
from pipeline.data.pyskl_io import load_dataset
from pipeline.extract.build import cached_clips
from pipeline.extract.cache import PoseCache
from pipeline.infer.prediction import TorchPredictor, classify, clip_distance
from pipeline.stages.training import split_clips


@dataclass(frozen=True)
class RealClips:
    """Labelled real videos (`video,label,split` CSV) whose skeletons are in an extraction cache."""

    labels: str | os.PathLike
    cache: str | os.PathLike
    split: str = "dev"
    quality: str = "low"  # the tier the model is fed at run time (the fast path: low)
    estimator: str = DEFAULT  # the registry name `pipeline extract --estimator` filed the entries under


def real_distances(model_path: str | os.PathLike, real: RealClips) -> tuple[list[float], list[str]]:
    """Open-set scores of the in-class clips of `real.split`, as `run` computes them with the checkpoint's rule,
    and the clips left out."""
    pred = TorchPredictor(model_path)
    info = pred.info
    rows = [r for r in read_labels(real.labels) if r.split == real.split and r.label in info.classes]
    dists, skipped = [], []
    for c in cached_clips(rows, [PoseCache(real.cache)], real.estimator, real.quality, info.layout):
        if c.missing:
            skipped.append(f"{c.row.video.name} ({c.missing})")
            continue
        res = classify(c.keypoint, c.keypoint_score, c.fps, pred)
        dists.append(clip_distance(res.distance, res.has_person))
    return dists, skipped


def calibrate_checkpoint(model_path: str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike, *,
                         layout: str | Layout | None = None, corrupt: str | None = None, keep: float = 0.95,
                         seed: int = 0, source_layout: str | Layout | None = None,
                         real: RealClips | None = None, kind: str = RULE) -> dict:
    """Fit a `kind` rule (models/openset.KINDS) on the pickle's train split, set the threshold on its test split
    (or on `real` in-class clips), write the checkpoint to `out`.

    Returns `{"rule", "threshold", "keep", "train_kept", "n_fit", "n_calib", "calibrated_on", "skipped", "out"}`
    (`train_kept`: the fraction of the `n_fit` training clips the rule keeps).
    """
    if not 0.5 <= keep < 1:
        raise BadInput(f"--keep must be in [0.5, 1), got {keep}")
    ds = load_dataset(data, layout, source_layout)
    model, meta = load_checkpoint(model_path, expect_layout=ds.layout, expect_classes=ds.num_classes,
                                  expect_channels=ds.num_channels)
    if corrupt:
        ds = corrupt_dataset(ds, parse_spec(corrupt), seed=seed)
    fit_clips = split_clips(ds, "train", data)
    calib_clips = split_clips(ds, "test", data)
    icfg = meta["input_config"]
    rule = rule_for(model, fit_clips, calib_clips, ds.layout, icfg, len(meta["classes"]), keep, kind)
    fit_f, fit_z = pooled_features(model, clip_inputs(fit_clips, ds.layout, icfg))
    raw = read_checkpoint(model_path)
    extra = dict(raw.get("extra") or {})
    extra["open_set"] = rule.to_dict() | {"data": str(data), "corrupt": corrupt or "",
                                          "calibrated_on": "test split" + (" (LQ)" if corrupt else "")}

    def save() -> None:
        with torch.no_grad():
            save_checkpoint(out, model, layout=meta["layout"], classes=meta["classes"],
                            model_config=meta["model_config"], input_config=icfg, extra=extra,
                            coord_dims=meta["coord_dims"])

    save()
    skipped: list[str] = []
    if real is not None:
        dists, skipped = real_distances(out, real)  # the rule just written, applied as `run` applies it
        if not dists:
            raise BadInput(f"no in-class clip of split {real.split!r} has {real.quality} skeletons in the cache",
                           real.labels)
        rule = replace(rule, threshold=threshold_at(dists, keep), n_calib=len(dists))
        extra["open_set"] = rule.to_dict() | {"data": str(data), "corrupt": corrupt or "",
                                              "calibrated_on": f"real {real.split} clips ({real.quality}) of "
                                                               f"{real.labels}"}
        save()
    return {"rule": rule.kind, "threshold": round(rule.threshold, 3), "keep": keep, "n_fit": len(fit_clips),
            "n_calib": rule.n_calib, "train_kept": round(float(np.mean(rule.known(fit_f, fit_z))), 4),
            "out": str(Path(out)),
            "calibrated_on": extra["open_set"]["calibrated_on"], "skipped": skipped}
