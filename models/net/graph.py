"""Graph adjacency for any layout with the ST-GCN spatial partition (self, centripetal, centrifugal)."""

from __future__ import annotations

import numpy as np

from models.contract.layouts import Layout


def hop_distance(layout: Layout, max_hop: int = 1) -> np.ndarray:
    """`[V, V]` hop distances up to `max_hop`; farther or unreachable pairs are `inf`."""
    v = layout.num_joints
    a = np.eye(v, dtype=bool)
    for i, j in layout.edges:
        a[i, j] = a[j, i] = True
    hop = np.full((v, v), np.inf)
    reach = np.eye(v, dtype=bool)
    hop[reach] = 0
    step = np.eye(v, dtype=bool)
    for d in range(1, max_hop + 1):
        step = (step.astype(np.int64) @ a.astype(np.int64)) > 0
        new = step & ~reach
        hop[new] = d
        reach |= step
    return hop


def center_distance(layout: Layout) -> np.ndarray:
    """Hops from the centre joint to every joint (joints in other components: one more than the farthest)."""
    hop = hop_distance(layout, max_hop=layout.num_joints)
    d = hop[layout.center].copy()
    finite = np.isfinite(d)
    d[~finite] = (d[finite].max() + 1) if finite.any() else 0
    return d


def _normalize(a: np.ndarray) -> np.ndarray:
    # Column normalisation A·D^-1, as ST-GCN does: each joint's incoming messages are averaged.
    deg = a.sum(axis=0)
    inv = np.where(deg > 0, 1.0 / np.maximum(deg, 1e-12), 0.0)
    return a * inv[None, :]


def spatial_adjacency(layout: Layout) -> np.ndarray:
    """`[3, V, V]` float32: the ST-GCN spatial partition.

    For a root joint i and each neighbour j (itself included), `A[k, j, i]` is set in subset
    k = 0 if j is as far from the centre as i (self), 1 if nearer (centripetal), 2 if farther (centrifugal).
    """
    v = layout.num_joints
    hop = hop_distance(layout, 1)
    norm = _normalize((hop <= 1).astype(np.float64))
    dist = center_distance(layout)
    out = np.zeros((3, v, v))
    for i in range(v):
        for j in range(v):
            if hop[j, i] > 1:
                continue
            k = 0 if dist[j] == dist[i] else (1 if dist[j] < dist[i] else 2)
            out[k, j, i] = norm[j, i]
    return out.astype(np.float32)
