"""`pipeline calibrate`: fit a checkpoint's open-set rule (models/openset.py) on a labelled pickle and store it.

Models trained by this version of `train`/`distill` already carry the rule; this is for older checkpoints (the
bundled model among them) and for re-fitting on other data, e.g. the LQ a student will really see.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from models.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from models.contract.errors import BadInput
from models.contract.layouts import Layout
from models.training.calibration import clip_inputs, pooled_features, rule_for
from pipeline.data.corrupt import corrupt_dataset, parse_spec
from pipeline.data.pyskl_io import load_dataset
from pipeline.stages.training import split_clips


def calibrate_checkpoint(model_path: str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike, *,
                         layout: str | Layout | None = None, corrupt: str | None = None, keep: float = 0.95,
                         seed: int = 0, source_layout: str | Layout | None = None) -> dict:
    """Fit on the pickle's train split, set the threshold on its test split, write the checkpoint to `out`.

    Returns `{"threshold", "keep", "test_kept", "train_kept", "n_fit", "n_calib"}`.
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
    rule = rule_for(model, fit_clips, calib_clips, ds.layout, icfg, len(meta["classes"]), keep)
    fit_f, _ = pooled_features(model, clip_inputs(fit_clips, ds.layout, icfg))
    raw = read_checkpoint(model_path)
    extra = dict(raw.get("extra") or {})
    extra["open_set"] = rule.to_dict() | {"data": str(data), "corrupt": corrupt or ""}
    with torch.no_grad():
        save_checkpoint(out, model, layout=meta["layout"], classes=meta["classes"], model_config=meta["model_config"],
                        input_config=icfg, extra=extra, coord_dims=meta["coord_dims"])
    return {"threshold": round(rule.threshold, 3), "keep": keep, "n_fit": rule.n_fit, "n_calib": rule.n_calib,
            "train_kept": round(float(np.mean(rule.known(fit_f))), 4), "out": str(Path(out))}
