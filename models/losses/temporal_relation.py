"""Temporal relations of the joint graph: how each joint's state at one frame relates to its state at the others.

For every (clip, joint) the distilled layer's node features over its T' frames give a `T' × T'` cosine-similarity
matrix (its self-similarity in time: when the joint repeats, holds still or changes). Graph matching's edge term
mixes these entries with the joint-to-joint ones under one global normalisation, where the many cross-joint
distances dominate; this term matches the temporal structure per joint on its own (SmoothL1, mean). Persons are
averaged first (padded persons would add constant rows). The teacher side never receives gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def temporal_relations(f: Tensor, persons: int = 1) -> Tensor:
    """`(N·M, C, T', V)` → `(N, V, T', T')` cosine similarities between the frames of each joint."""
    nm, c, t, v = f.shape
    if nm % persons:
        raise ValueError(f"{nm} feature rows do not split into {persons} persons per clip")
    x = f.reshape(nm // persons, persons, c, t, v).mean(dim=1)  # (N, C, T', V)
    x = F.normalize(x.permute(0, 3, 2, 1), dim=-1, eps=1e-8)  # (N, V, T', C)
    return x @ x.transpose(-1, -2)


class TemporalRelationLoss(nn.Module):
    """`weight · SmoothL1(S_s, S_t)`, S = per-joint frame-by-frame cosine similarities."""

    def __init__(self, weight: float = 1.0):
        super().__init__()
        self.weight = float(weight)

    def forward(self, f_s: Tensor, f_t: Tensor, persons: int = 1) -> Tensor:
        if f_s.dim() != 4 or f_s.shape[0] != f_t.shape[0] or f_s.shape[2:] != f_t.shape[2:]:
            raise ValueError(f"student and teacher features must be (N·M, C, T', V) with equal N·M, T', V; got "
                             f"{tuple(f_s.shape)} and {tuple(f_t.shape)}")
        with torch.no_grad():
            s_t = temporal_relations(f_t.detach(), persons)
        return self.weight * F.smooth_l1_loss(temporal_relations(f_s, persons), s_t, reduction="mean")
