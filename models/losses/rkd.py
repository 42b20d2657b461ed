"""Relational knowledge distillation (Park et al., CVPR 2019): distance- and angle-wise relations among samples."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.losses.graph_matching import normalize_by_positive_mean, pairwise_node_distances
from models.losses.method import LossMethod


def pool_embedding(f: Tensor, persons: int = 1) -> Tensor:
    """Sample embeddings `(N, C)` from features: `(N·M, C, T', V)` averaged over T', V and the M persons.

    2-D input `(N, D)` is returned as it is.
    """
    if f.dim() == 2:
        return f
    if f.dim() != 4 or f.shape[0] % persons:
        raise ValueError(f"expected (N·M, C, T', V) features with M={persons}, got {tuple(f.shape)}")
    e = f.mean(dim=(2, 3))
    return e.view(-1, persons, e.shape[1]).mean(1)


def sample_distances(e: Tensor) -> Tensor:
    """`(N, D)` → `(N, N)` Euclidean distances (diagonal 0), normalised by the mean of the positive entries."""
    # A batch of one "sample" whose N nodes are the embeddings: reuse the node-distance code of the edge term.
    return normalize_by_positive_mean(pairwise_node_distances(e.t()[None, :, None, :]))[0]


def sample_angles(e: Tensor) -> Tensor:
    """`(N, N, N)`: `[i, j, k]` = cosine of the angle at e_i between e_j − e_i and e_k − e_i (0 if j or k is i)."""
    diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)  # [i, j] = unit(e_j − e_i)
    return torch.bmm(diff, diff.transpose(1, 2))


class RKDLoss(nn.Module):
    """`{"rkd_dist": w_d · SmoothL1(ψ_D(s), ψ_D(t)), "rkd_angle": w_a · SmoothL1(ψ_A(s), ψ_A(t))}` (means).

    Default weights 25 and 50 are Park et al.'s classification setting. A term of weight 0 is skipped.
    """

    def __init__(self, dist_weight: float = 25.0, angle_weight: float = 50.0):
        super().__init__()
        self.dist_weight = float(dist_weight)
        self.angle_weight = float(angle_weight)

    def forward(self, f_s: Tensor, f_t: Tensor, persons: int = 1) -> dict[str, Tensor]:
        e_s = pool_embedding(f_s, persons)
        e_t = pool_embedding(f_t.detach(), persons)
        if e_s.shape[0] != e_t.shape[0]:
            raise ValueError(f"student and teacher batches differ: {e_s.shape[0]} vs {e_t.shape[0]}")
        out: dict[str, Tensor] = {}
        if self.dist_weight != 0:
            with torch.no_grad():
                d_t = sample_distances(e_t)
            out["rkd_dist"] = self.dist_weight * F.smooth_l1_loss(sample_distances(e_s), d_t, reduction="mean")
        if self.angle_weight != 0:
            with torch.no_grad():
                a_t = sample_angles(e_t)
            out["rkd_angle"] = self.angle_weight * F.smooth_l1_loss(sample_angles(e_s), a_t, reduction="mean")
        return out


METHOD = LossMethod(help="relational",
                    build=lambda cfg, cs, ct: {"rkd": RKDLoss(cfg.rkd_dist_weight, cfg.rkd_angle_weight)},
                    terms=lambda m, z_s, f_s, z_t, f_t, persons: m["rkd"](f_s, f_t, persons),
                    options={"rkd_dist_weight": 25.0, "rkd_angle_weight": 50.0})
