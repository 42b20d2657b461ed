"""Fit the open-set rule (`models.openset`) to a trained network: pooled last-block features (and logits) of its
training clips and of held-out clips, as the classifier head sees them."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from models.contract.layouts import Layout
from models.contract.skeleton import Clip
from models.net.stgcn import STGCN
from models.net.transforms import InputConfig, make_input, sample_indices
from models.openset import ENERGY, KINDS, RULE, OpenSetRule, fit_energy_rule, fit_rule


@torch.inference_mode()
def pooled_features(model: nn.Module, x: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(pooled last-block features `[N, C]`, logits `[N, K]`) of inputs `[N, M, T, V, C]`, as the head sees them."""
    device = next(model.parameters()).device
    feats, logits = [], []
    for i in range(0, len(x), batch):
        xb = torch.from_numpy(np.ascontiguousarray(x[i:i + batch], dtype=np.float32)).to(device)
        z, f = model(xb, return_features=True)
        n = xb.shape[0]
        feats.append(STGCN.pool(f.float(), n).cpu().numpy())
        logits.append(z.float().cpu().numpy())
    return np.concatenate(feats), np.concatenate(logits)


def clip_inputs(clips: list[Clip], layout: Layout, cfg: InputConfig) -> np.ndarray:
    """One evaluation window per clip (`[N, M, T, V, C]`), sampled as at test time."""
    return np.stack([make_input(c, layout, cfg, sample_indices(c.total_frames, cfg.length, False)[0])
                     for c in clips])


def rule_for(model: nn.Module, fit_clips: list[Clip], calib_clips: list[Clip], layout: Layout, cfg: InputConfig,
             num_classes: int, keep: float = 0.95, kind: str = RULE) -> OpenSetRule:
    """Fit the rule on `fit_clips` (the model's training clips) and set its threshold on held-out `calib_clips`.

    `kind` ENERGY: only the threshold, from the held-out clips' logits (the fitting clips are not needed).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown open-set rule {kind!r}")
    was_training = model.training
    model.eval()
    try:
        cal_f, cal_z = pooled_features(model, clip_inputs(calib_clips, layout, cfg))
        if kind == ENERGY:
            return fit_energy_rule(cal_z, keep)
        fit_f, _ = pooled_features(model, clip_inputs(fit_clips, layout, cfg))
    finally:
        model.train(was_training)
    labels = np.array([c.label for c in fit_clips], dtype=np.int64)
    return fit_rule(fit_f, labels, cal_f, num_classes, keep)
