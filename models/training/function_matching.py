"""Function matching (Beyer et al., CVPR 2022, "A good teacher is patient and consistent"): the teacher labels
mixed inputs and the student sees the same mix, so it matches the teacher's function between training clips.

A batch of skeleton windows `(B, M, T, V, C)` is mixed with a partner batch (a permutation of itself):
- "mixup": `λ·x + (1 − λ)·x[perm]` over every frame (across clips of the batch);
- "cutmix": the frames `[start, start + w)` of each clip are its partner's (in time; λ = 1 − w / T);
- "both": one of the two per batch, with equal odds.
λ ~ Beta(α, α). The HQ window (teacher's) and the LQ window (student's) get the SAME λ, partner and time cut
(`apply_mix` with one `Mix`). Labels follow the mix (`mixed_ce`): a clip and its partner each weigh their share.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

MIXES = ("none", "mixup", "cutmix", "both")


@dataclass(frozen=True)
class Mix:
    """One draw: `lam` of the clip itself, `1 − lam` of its partner `perm[i]`; `cut` = the partner's frames."""

    kind: str  # "mixup" | "cutmix"
    lam: float
    perm: Tensor  # (B,) long
    cut: tuple[int, int] | None = None  # [start, end) in frames, cutmix only


def check_mix(kind: str, alpha: float) -> None:
    if kind not in MIXES:
        raise ValueError(f"unknown mix {kind!r}; choose one of {', '.join(MIXES)}")
    if not alpha > 0:
        raise ValueError(f"mix_alpha must be > 0, got {alpha}")


def draw_mix(kind: str, alpha: float, batch: int, frames: int, rng: np.random.Generator) -> Mix | None:
    """A mix for a batch of `batch` clips of `frames` frames; None for "none" (or a batch of one clip)."""
    check_mix(kind, alpha)
    if kind == "none" or batch < 2:
        return None
    if kind == "both":
        kind = "mixup" if rng.random() < 0.5 else "cutmix"
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(batch))
    if kind == "mixup":
        return Mix("mixup", lam, perm)
    w = int(round((1.0 - lam) * frames))
    start = int(rng.integers(0, frames - w + 1))
    return Mix("cutmix", 1.0 - w / frames, perm, (start, start + w))


def apply_mix(x: Tensor, mix: Mix | None) -> Tensor:
    """`x` `(B, M, T, V, C)` mixed by `mix` (unchanged for None)."""
    if mix is None:
        return x
    if x.shape[0] != mix.perm.numel():
        raise ValueError(f"mix drawn for {mix.perm.numel()} clips, batch has {x.shape[0]}")
    other = x[mix.perm.to(x.device)]
    if mix.kind == "mixup":
        return mix.lam * x + (1.0 - mix.lam) * other
    start, end = mix.cut  # type: ignore[misc]
    if end > x.shape[2]:
        raise ValueError(f"time cut [{start}, {end}) beyond the window's {x.shape[2]} frames")
    out = x.clone()
    out[:, :, start:end] = other[:, :, start:end]
    return out


def mixed_ce(z: Tensor, y: Tensor, mix: Mix | None, label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy against the mixed labels: `lam` on the clip's own label, `1 − lam` on its partner's.

    A side without a label (y < 0) adds nothing; the sum is divided by the labeled share of the batch, so a batch
    whose clips are all labeled gives mixup's usual `lam·CE(y) + (1 − lam)·CE(y[perm])`. Exactly 0 (still in the
    graph) when no side has a label. Without a mix: CE over the labeled clips.
    """
    perm = mix.perm.to(y.device) if mix is not None else None
    lam = mix.lam if mix is not None else 1.0
    parts = [(lam, y)] + ([(1.0 - lam, y[perm])] if perm is not None and lam < 1.0 else [])
    total = z.sum() * 0.0
    mass = 0.0
    for w, t in parts:
        keep = t >= 0
        n = int(keep.sum())
        if n == 0 or w == 0:
            continue
        total = total + w * F.cross_entropy(z[keep], t[keep], label_smoothing=label_smoothing, reduction="sum")
        mass += w * n
    return total / mass if mass > 0 else total
