"""Attention transfer (Zagoruyko & Komodakis, ICLR 2017) on the spatio-temporal map of graph features."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from models.losses.method import LossMethod


def attention_map(f: Tensor) -> Tensor:
    """`(B, C, T', V)` → `(B, T'·V)`: mean over channels of the squared activations, L2-normalised per sample."""
    return F.normalize(f.pow(2).mean(1).flatten(1), p=2, dim=1)


class AttentionLoss(nn.Module):
    """`weight · mean((Q_s − Q_t)²)` between the normalised attention maps.

    Channels may differ between student and teacher (the map averages them out); T' and V must agree.
    The default weight 1000 is the paper's β for this mean-reduced form.
    """

    def __init__(self, weight: float = 1000.0):
        super().__init__()
        self.weight = float(weight)

    def forward(self, f_s: Tensor, f_t: Tensor) -> Tensor:
        if f_s.shape[0] != f_t.shape[0] or f_s.shape[2:] != f_t.shape[2:]:
            raise ValueError(f"attention maps need equal N·M, T', V: {tuple(f_s.shape)} vs {tuple(f_t.shape)}")
        return self.weight * (attention_map(f_s) - attention_map(f_t.detach())).pow(2).mean()


METHOD = LossMethod(help="attention transfer", build=lambda cfg, cs, ct: {"at": AttentionLoss(cfg.at_weight)},
                    terms=lambda m, z_s, f_s, z_t, f_t, persons: {"at": m["at"](f_s, f_t)},
                    options={"at_weight": 1000.0})
