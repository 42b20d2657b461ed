"""Gradient revision whose conflict test runs on a subset of the parameters (the network's tail), applied to all.

The global revision's update is `(1 − Σ_k c_k)·g_ce + Σ_k g_k`, with `c_k = g_k·g_ce / ‖g_ce‖²` where that dot
product is negative and 0 otherwise (models/grad_revision.py): the gradient of the reweighted scalar
`(1 − Σ_k c_k)·L_ce + Σ_k L_k`. Here the dot products are taken over `subset` only (one backward per term that
stops at the subset: cheap when it is the last blocks and the head), then ONE backward of that scalar fills every
parameter. With `subset` = every parameter this is exactly the global revision (tests/models/test_revision_subset.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn


def tail_parameters(student: nn.Module, losses: nn.Module, blocks: int = 1) -> list[Tensor]:
    """The last `blocks` blocks' parameters (with their edge-importance maps), the head, and the loss adapters."""
    n = len(student.blocks)
    keep = [p for b in student.blocks[max(0, n - blocks):] for p in b.parameters()]
    if getattr(student, "edge_importance", None) is not None:
        keep += list(student.edge_importance[max(0, n - blocks):])
    keep += list(student.fc.parameters()) + list(losses.parameters())
    return [p for p in keep if p.requires_grad]


def revise_subset_and_backward(losses: dict[str, Tensor], ce_key: str, params: Sequence[Tensor],
                               subset: Sequence[Tensor],
                               reduce: Callable[[list[Tensor]], list[Tensor]] | None = None) -> dict[str, float]:
    """Accumulate the revised gradient into `.grad` of `params`; returns `conflict/<name>` (0 or 1) per term.

    `reduce` (under torchrun: the ranks' weighted mean) makes each term's subset gradient the whole batch's before
    the dot products, so every rank takes the same decision; the caller then averages `.grad` over ranks."""
    names = [k for k, v in losses.items() if k != ce_key and v.requires_grad]
    subset = [p for p in subset if p.requires_grad]
    zero = torch.zeros((), device=losses[ce_key].device)
    coefs: list[Tensor] = []
    stats: dict[str, float] = {}
    if names and losses[ce_key].requires_grad:
        per = [torch.autograd.grad(losses[k], subset, retain_graph=True, allow_unused=True) for k in [ce_key, *names]]
        if reduce is not None:
            per = [reduce([g if g is not None else torch.zeros_like(p) for g, p in zip(gs, subset)]) for gs in per]

        def dot(a, b) -> Tensor:
            return sum(((x * y).sum() for x, y in zip(a, b) if x is not None and y is not None), zero)

        n0 = dot(per[0], per[0])
        for k, g in zip(names, per[1:]):
            d = dot(g, per[0])
            conflict = bool(d < 0) and bool(n0 > 0)
            coefs.append((d / n0).detach() if conflict else zero)
            stats[f"conflict/{k}"] = float(conflict)
    total = losses[ce_key] * (1 - torch.stack(coefs).sum()) if coefs else losses[ce_key]
    for k in names:
        total = total + losses[k]
    params = [p for p in params if p.requires_grad]
    grads = torch.autograd.grad(total, params, allow_unused=True)
    for p, g in zip(params, grads):
        if g is not None:
            p.grad = g.detach().clone() if p.grad is None else p.grad.add_(g.detach())
    return stats
