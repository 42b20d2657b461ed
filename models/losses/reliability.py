"""Reliability-weighted node matching: the student imitates the teacher's nodes where its LQ input lacks the joint.

The fast estimator misses joints the HQ one found. At such a (person, frame, joint) the student's input holds
nothing, so its feature there is rebuilt from the joint's neighbours in space and time, and the teacher, who saw
the joint, is the only signal for it. The node term (graph_matching.py) averages over every node, where the
present joints dominate; this term is the same node error averaged over the missing ones only:
- mask: read off the student's input window `(N, M, T, V, C)` as the step fed it (after function matching's mix,
  before the net's data BatchNorm): a joint is missing where every channel is exactly 0 (make_input writes zeros
  for a missing joint, score channel included). The window, not a mask carried from the data set, because it is
  what the student saw: a joint mixed with a partner's present one, a joint cut by the crop augmentation and the
  persons make_input kept are all already in it, and nothing else has to follow the mix. With the score channel
  the test is exact (a present joint's score is > 0); without it (`--no-score`) a present joint reads as missing
  only if it sits exactly on the clip's normalisation centre with zero bone and motion, which real data does not
  do. Imputed entries (corrupt.py's `impute`, score 0.1) are input the student has: present.
- time: the last block is strided (T' < T); each feature step j gets the mean of the per-frame mask over the
  frames it stands for, `[⌊jT/T'⌋, ⌈(j+1)T/T'⌉)` (adaptive average pooling): a missing fraction m ∈ [0, 1].
- persons: `persons` splits the feature rows into clips as in temporal_relation.py, but rows are matched per
  person instead of averaged: the padded person's rows (each net's response to an all-zero person) differ between
  the nets, and averaging would add that difference to every missing node's error. A person slot with no joint in
  the whole LQ window gets m = 0 (padding, or a person the LQ estimator never saw: the window alone cannot tell);
  a window with no joint at all counts its first person as missing everywhere.
- error: graph matching's node error, the mean over channels of `(adapter(F_s) − F_t)²`, on the adapted student
  features (skd.py passes graph matching's adapter output). The channel counts differ, so a cosine distance would
  need an adapter too, and a second one would learn the same map from fewer nodes; with the shared one this term
  is the node term moved onto the missing joints, on the same scale.
- `weight · Σ m·e / (Σ m + eps)`: a weighted mean, so its scale does not depend on how many joints are missing;
  0 (finite, still in the graph) when none is. The teacher side never receives gradient.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def missing_joints(x: Tensor) -> Tensor:
    """`(N, M, T, V, C)` input window → `(N, M, T, V)` bool: the joints whose every channel is 0."""
    return (x == 0).all(dim=-1)


def missing_fraction(x: Tensor, persons: int, frames: int) -> Tensor:
    """`(N, M, T, V, C)` input window → `(N·persons, T', V)` missing fraction per feature row, step and joint.

    `persons` (>= M): the net's person slots (it pads the window's M with zeros); `frames`: the features' T'.
    """
    if x.dim() != 5:
        raise ValueError(f"the input window must be (N, M, T, V, C), got {tuple(x.shape)}")
    n, m, t, v, _ = x.shape
    if m > persons:
        raise ValueError(f"the window has {m} persons, the features {persons} per clip")
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    miss = missing_joints(x.detach())
    seen = (~miss).flatten(2).any(dim=2)  # (N, M): a person with no joint in the window is padding
    seen[:, 0] |= ~seen.any(dim=1)  # nobody at all: the first person is missing everywhere
    frac = (miss & seen[:, :, None, None]).float()
    frac = F.pad(frac, (0, 0, 0, 0, 0, persons - m))  # the net's padded persons: weight 0
    pooled = F.adaptive_avg_pool1d(frac.reshape(n * persons, t, v).transpose(1, 2), frames)  # (N·P, V, T')
    return pooled.transpose(1, 2).contiguous()


class ReliabilityNodeLoss(nn.Module):
    """`weight · Σ m·e / (Σ m + eps)`, e = per-node mean squared error over channels, m = missing fraction."""

    def __init__(self, weight: float = 1.0, eps: float = 1e-6):
        super().__init__()
        self.weight = float(weight)
        self.eps = float(eps)

    def forward(self, f_s: Tensor, f_t: Tensor, missing: Tensor) -> Tensor:
        """`f_s` (adapted) and `f_t`: `(N·M, C, T', V)`; `missing`: `(N·M, T', V)` (see `missing_fraction`)."""
        if f_s.dim() != 4 or f_s.shape != f_t.shape:
            raise ValueError(f"adapted student and teacher features must be (N·M, C, T', V) of one shape; got "
                             f"{tuple(f_s.shape)} and {tuple(f_t.shape)}")
        if missing.shape != (f_s.shape[0], *f_s.shape[2:]):
            raise ValueError(f"missing must be (N·M, T', V) = {(f_s.shape[0], *f_s.shape[2:])}, got "
                             f"{tuple(missing.shape)}")
        e = (f_s - f_t.detach()).pow(2).mean(dim=1)  # (N·M, T', V)
        w = missing.detach().to(e.dtype)
        return self.weight * (w * e).sum() / (w.sum() + self.eps)
