"""Cross-clip relations at the graph level: how each joint of one clip relates to the same joint of the others.

Logit KD and RKD compare whole clips; this term keeps the joint axis. The distilled layer's output
`(N·M, C, T', V)` is averaged over persons and frames to one C-dim descriptor per (clip, joint); for every joint v
the batch's `N × N` cosine-similarity matrix of those descriptors is the teacher's "which clips move this joint
alike" view. The student matches it (SmoothL1, mean over joints and entries). Cosine similarity does not depend on
the channel count, so no adapter is needed; the diagonal (always 1) is left out. The teacher side never receives
gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def joint_relations(f: Tensor, persons: int = 1) -> Tensor:
    """`(N·M, C, T', V)` → `(V, N, N)` cosine similarities between clips, per joint."""
    nm, c, t, v = f.shape
    if nm % persons:
        raise ValueError(f"{nm} feature rows do not split into {persons} persons per clip")
    d = f.reshape(nm // persons, persons, c, t, v).mean(dim=(1, 3))  # (N, C, V)
    d = F.normalize(d.permute(2, 0, 1), dim=-1, eps=1e-8)  # (V, N, C)
    return torch.bmm(d, d.transpose(1, 2))


class CrossClipJointLoss(nn.Module):
    """`weight · SmoothL1(R_s, R_t)` over the off-diagonal entries of the per-joint clip-relation matrices."""

    def __init__(self, weight: float = 1.0):
        super().__init__()
        self.weight = float(weight)

    def forward(self, f_s: Tensor, f_t: Tensor, persons: int = 1) -> Tensor:
        if f_s.dim() != 4 or f_s.shape[0] != f_t.shape[0] or f_s.shape[3] != f_t.shape[3]:
            raise ValueError(f"student and teacher features must be (N·M, C, T', V) with equal N·M and V; got "
                             f"{tuple(f_s.shape)} and {tuple(f_t.shape)}")
        r_s = joint_relations(f_s, persons)
        with torch.no_grad():
            r_t = joint_relations(f_t.detach(), persons)
        n = r_s.shape[1]
        if n < 2:  # one clip: no relation to match
            return f_s.sum() * 0.0
        off = ~torch.eye(n, dtype=torch.bool, device=f_s.device)
        return self.weight * F.smooth_l1_loss(r_s[:, off], r_t[:, off], reduction="mean")
