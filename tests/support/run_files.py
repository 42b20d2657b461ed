"""Checkpoints the `pipeline run` / `pipeline export` tests make themselves (tiny, untrained or scrambled)."""

from __future__ import annotations

from pathlib import Path

import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.contract.layouts import Layout, get_layout
from models.net.transforms import InputConfig
from models.openset import ENERGY, RULE
from pipeline.stages.training import ModelOptions, build_model

CLASSES = ["wave", "squat", "jump", "spin"]


def tiny_checkpoint(path: Path, layout: str | Layout = "penn13", coord_dims: int = 2, length: int = 16,
                    seed: int = 0, scramble: bool = True) -> Path:
    """A small ST-GCN checkpoint. `scramble` draws every weight and BatchNorm statistic at random so the
    logits are far from uniform (an untrained head outputs near-zero logits, which would hide any mismatch)."""
    lay = get_layout(layout)
    icfg = InputConfig(length=length, max_persons=1)
    torch.manual_seed(seed)
    model, cfg = build_model(lay, len(CLASSES), coord_dims, icfg, ModelOptions(width=0.25, depth=4))
    if scramble:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, t in list(model.named_parameters()) + list(model.named_buffers()):
                if not t.is_floating_point():
                    continue
                if name.endswith("running_var"):
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                else:
                    t.add_(torch.randn(t.shape, generator=g) * 0.2)
    model.eval()
    save_checkpoint(path, model, layout=lay, classes=CLASSES, model_config=cfg, input_config=icfg)
    return path


def with_rule(src: Path, dst: Path, threshold: float, kind: str = RULE) -> Path:
    """`src` with an open-set rule whose threshold is `threshold`: Mahalanobis (class means at 0, identity
    precision), or with `kind=ENERGY` the energy of the logits."""
    model, meta = load_checkpoint(src)
    c = model.feature_channels
    rule = {"rule": kind, "threshold": threshold, "keep": 0.95, "n_fit": 0 if kind == ENERGY else 1, "n_calib": 1}
    if kind == RULE:
        rule |= {"means": [[0.0] * c] * len(meta["classes"]),
                 "precision": [[float(i == j) for j in range(c)] for i in range(c)]}
    save_checkpoint(dst, model, layout=meta["layout"], classes=meta["classes"], model_config=meta["model_config"],
                    input_config=meta["input_config"], extra={"open_set": rule})
    return dst
