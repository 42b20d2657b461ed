"""Graph matching loss of structural knowledge distillation (node term + edge term).

The distilled layer's output `(N·M, C, T', V)` is read as a graph per sample: its `T'·V` positions are the nodes,
each with a C-dim feature. Student and teacher nodes correspond one to one (same joint, same frame), so matching
needs no assignment solver:
- node term: `MSE(adapter(F_s), F_t)`, mean over elements; the adapter is a 1×1 conv (C_s → C_t);
- edge term: per sample, the matrix of pairwise Euclidean distances between nodes (diagonal 0, squared distances
  clamped at 1e-12 before the square root), divided by the mean of its positive entries; SmoothL1 (mean) between
  the student's and the teacher's matrices, averaged over samples.
The teacher side never receives gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def pairwise_node_distances(f: Tensor, eps: float = 1e-12) -> Tensor:
    """`(B, C, T, V)` → `(B, T·V, T·V)` Euclidean distances between the node features of each sample."""
    b, c, t, v = f.shape
    x = f.reshape(b, c, t * v).transpose(1, 2)  # (B, P, C)
    sq = x.pow(2).sum(-1)
    d2 = sq.unsqueeze(2) + sq.unsqueeze(1) - 2 * torch.bmm(x, x.transpose(1, 2))
    d = d2.clamp(min=eps).sqrt()
    # The clamp leaves sqrt(eps) on the diagonal; a node's distance to itself is 0 by definition.
    eye = torch.eye(t * v, dtype=torch.bool, device=f.device)
    return d.masked_fill(eye, 0.0)


def normalize_by_positive_mean(d: Tensor) -> Tensor:
    """Divide each sample's distance matrix `(B, P, P)` by the mean of its positive entries (scale invariance)."""
    pos = (d > 0).sum(dim=(1, 2)).clamp(min=1).to(d.dtype)
    mean = d.sum(dim=(1, 2)) / pos  # the non-positive entries are exactly 0, so the plain sum is the positive sum
    # A sample whose nodes all coincide has no positive entry: leave its (all-zero) matrix as it is.
    mean = torch.where(mean > 0, mean, torch.ones_like(mean))
    return d / mean[:, None, None]


def edge_matrices(f: Tensor, time_stride: int = 1) -> Tensor:
    """Normalised node-distance matrices; `time_stride > 1` average-pools over time first (memory is (T'V)²)."""
    if time_stride > 1:
        f = F.avg_pool2d(f, kernel_size=(time_stride, 1), stride=(time_stride, 1), ceil_mode=True)
    return normalize_by_positive_mean(pairwise_node_distances(f))


class GraphMatchingLoss(nn.Module):
    """Node + edge matching between student and teacher graph features.

    Args:
        channels_s: student feature channels (the adapter's input).
        channels_t: teacher feature channels (the adapter's output); defaults to `channels_s`.
        node_weight, edge_weight: multipliers; a term whose weight is 0 is not computed and not returned.
        edge_on_adapted: compute the student's edge matrices on the adapted feature (default, as the design reads:
            the student's graph is its feature after the adapter) or on the raw student feature. The normalisation
            makes the edge term scale free either way; on the adapted feature the adapter also learns from it.
        edge_time_stride: average-pool the features over time by this factor before the edge term only.
        adapter_init: "default" (PyTorch's conv init) or "identity" (pass-through; needs channels_s == channels_t).
    """

    def __init__(self, channels_s: int, channels_t: int | None = None, node_weight: float = 1.0,
                 edge_weight: float = 1.0, edge_on_adapted: bool = True, edge_time_stride: int = 1,
                 adapter_init: str = "default"):
        super().__init__()
        channels_t = channels_s if channels_t is None else channels_t
        if edge_time_stride < 1:
            raise ValueError(f"edge_time_stride must be >= 1, got {edge_time_stride}")
        self.adapter = nn.Conv2d(channels_s, channels_t, kernel_size=1)
        if adapter_init == "identity":
            if channels_s != channels_t:
                raise ValueError(f"an identity adapter needs equal channels, got {channels_s} → {channels_t}")
            with torch.no_grad():
                self.adapter.weight.copy_(torch.eye(channels_s).view(channels_s, channels_s, 1, 1))
                self.adapter.bias.zero_()
        elif adapter_init != "default":
            raise ValueError(f"adapter_init must be 'default' or 'identity', got {adapter_init!r}")
        self.node_weight = float(node_weight)
        self.edge_weight = float(edge_weight)
        self.edge_on_adapted = edge_on_adapted
        self.edge_time_stride = edge_time_stride

    def forward(self, f_s: Tensor, f_t: Tensor) -> dict[str, Tensor]:
        if f_s.dim() != 4 or f_t.dim() != 4 or f_s.shape[0] != f_t.shape[0] or f_s.shape[2:] != f_t.shape[2:]:
            raise ValueError(f"student and teacher features must be (N·M, C, T', V) with equal N·M, T', V; "
                             f"got {tuple(f_s.shape)} and {tuple(f_t.shape)}")
        f_t = f_t.detach()
        out: dict[str, Tensor] = {}
        adapted = self.adapter(f_s)
        if self.node_weight != 0:
            out["node"] = self.node_weight * F.mse_loss(adapted, f_t)
        if self.edge_weight != 0:
            e_s = edge_matrices(adapted if self.edge_on_adapted else f_s, self.edge_time_stride)
            with torch.no_grad():
                e_t = edge_matrices(f_t, self.edge_time_stride)
            # Every sample has the same number of entries, so the mean over all is the mean of per-sample means.
            out["edge"] = self.edge_weight * F.smooth_l1_loss(e_s, e_t, reduction="mean")
        return out
