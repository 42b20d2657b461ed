"""Gradient revision: distillation gradients that fight the classification gradient are projected off it.

For per-loss gradients g_ce, g_1 … g_K over the student's parameters, each g_k with `g_k·g_ce < 0` is replaced by
`g_k − (g_k·g_ce / ‖g_ce‖²) g_ce` (its projection onto the normal plane of g_ce), and the update is
`g_ce + Σ_k g_k`. Modes:
- "global": dot products over all parameters flattened into one vector (the authors' code);
- "per_tensor": the same test and projection done separately for each parameter tensor;
- "none": plain sum of the losses, one backward.

Parameters that only some losses reach are exact under the same formula: where g_ce is zero (a distillation
adapter, which CE never reaches) the dot product gets nothing from them and the projection subtracts a multiple of
zero there, so their gradient is never changed; where a distillation loss is zero (e.g. the classifier, for a
feature loss) nothing is projected.

Implementations, all exact (they agree to rounding):
- "naive": one backward pass per loss (K+1 passes through the whole network);
- "batched": one backward of the stacked loss vector with K+1 one-hot cotangents (`is_grads_batched`, vmap);
- "jvp" (global mode; needs `split`): uses that only the scalar products g_k·g_ce are needed. With the shared
  features F (all losses reach the backbone only through F) and per-loss feature gradients u_k = ∂L_k/∂F,
  g_k = b_k + Jᵀu_k (b_k: the part from parameters after F, J = ∂F/∂θ), so
  g_k·g_ce = b_k·g_ce + u_k·(J g_ce): one Jacobian-vector product serves every k. The JVP is taken as the
  derivative of the (linear) backward map u ↦ Jᵀu, so it needs nothing but the autograd graph. The update is
  (1 − Σ c_k)·g_ce + Σ_k b_k + Jᵀ(Σ_k u_k): two backward passes through the backbone plus one JVP, whatever K.

`split=(F, F_leaf)`: the student's shared features F (attached to the backbone) and `F_leaf =
F.detach().requires_grad_()`, from which the caller computed every loss (head, adapters, loss terms). The backbone
part is then back-propagated from F with per-loss feature gradients, which the "batched" and "naive"
implementations use too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

MODES = ("none", "global", "per_tensor")
IMPLS = ("auto", "naive", "batched", "jvp")

Grads = list[Tensor | None]


def _add(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    if a is None:
        return b
    return a if b is None else a + b


def _dot(a: Grads, b: Grads) -> Tensor | float:
    return sum(((x * y).sum() for x, y in zip(a, b) if x is not None and y is not None), 0.0)


def _stack_grads(per_loss: list[Grads], params: Sequence[Tensor]) -> list[Tensor | None]:
    """Per-loss gradient lists → per-parameter `[K+1, *shape]` stacks (zeros where a loss does not reach it)."""
    out: list[Tensor | None] = []
    for i, p in enumerate(params):
        col = [g[i] for g in per_loss]
        if all(c is None for c in col):
            out.append(None)
        else:
            out.append(torch.stack([torch.zeros_like(p) if c is None else c for c in col]))
    return out


def _branch_and_feature_grads(losses: list[Tensor], params: Sequence[Tensor], f_leaf: Tensor
                              ) -> tuple[list[Grads], list[Tensor]]:
    """Per loss: gradients of the parameters after the split (b_k) and of the split features (u_k). Cheap."""
    branch, feats = [], []
    for loss in losses:
        g = torch.autograd.grad(loss, [*params, f_leaf], retain_graph=True, allow_unused=True)
        branch.append(list(g[:-1]))
        feats.append(torch.zeros_like(f_leaf) if g[-1] is None else g[-1])
    return branch, feats


def _per_loss_grads(losses: list[Tensor], params: Sequence[Tensor], impl: str,
                    split: tuple[Tensor, Tensor] | None) -> list[Tensor | None]:
    """Per-parameter stacks `[K+1, *shape]` of every loss's full gradient (row 0 = CE)."""
    if split is None:
        if impl == "naive":
            per_loss = [list(torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True))
                        for loss in losses]
            return _stack_grads(per_loss, params)
        vec = torch.stack(losses)
        eye = torch.eye(len(losses), dtype=vec.dtype, device=vec.device)
        return list(torch.autograd.grad(vec, params, grad_outputs=eye, is_grads_batched=True, allow_unused=True))
    feats, f_leaf = split
    branch, u = _branch_and_feature_grads(losses, params, f_leaf)
    if impl == "naive":
        trunk = [list(torch.autograd.grad(feats, params, grad_outputs=uk, retain_graph=True, allow_unused=True))
                 for uk in u]
        per_loss = [[_add(b, t) for b, t in zip(bk, tk)] for bk, tk in zip(branch, trunk)]
        return _stack_grads(per_loss, params)
    trunk_b = torch.autograd.grad(feats, params, grad_outputs=torch.stack(u), is_grads_batched=True,
                                  retain_graph=True, allow_unused=True)
    branch_b = _stack_grads(branch, params)
    return [_add(b, t) for b, t in zip(branch_b, trunk_b)]


def _combine_global(stacks: list[Tensor | None], names: list[str]) -> tuple[list[Tensor | None], dict[str, float]]:
    flat = [s.reshape(s.shape[0], -1) for s in stacks if s is not None]
    if not flat:
        return list(stacks), {}
    gram_row = sum((f @ f[0] for f in flat), torch.zeros(len(names), dtype=flat[0].dtype, device=flat[0].device))
    sq = sum((f.pow(2).sum(1) for f in flat), torch.zeros_like(gram_row))
    n0 = gram_row[0]
    dots = gram_row[1:]
    coef = torch.where((dots < 0) & (n0 > 0), dots / n0.clamp(min=torch.finfo(n0.dtype).tiny), torch.zeros_like(dots))
    scale = 1 - coef.sum()
    out = [None if s is None else s[0] * scale + s[1:].sum(0) for s in stacks]
    cos = dots / (sq[1:].sqrt() * n0.sqrt()).clamp(min=torch.finfo(n0.dtype).tiny)
    stats = {}
    for i, name in enumerate(names[1:]):
        stats[f"conflict/{name}"] = float(dots[i] < 0)
        stats[f"cos/{name}"] = float(cos[i])
    return out, stats


def _combine_per_tensor(stacks: list[Tensor | None], names: list[str]
                        ) -> tuple[list[Tensor | None], dict[str, float]]:
    k = len(names) - 1
    out: list[Tensor | None] = []
    conflicts = [0] * k
    shared = [0] * k
    gram_row = None
    sq = None
    for s in stacks:
        if s is None:
            out.append(None)
            continue
        f = s.reshape(s.shape[0], -1)
        row = f @ f[0]
        gram_row = row if gram_row is None else gram_row + row
        sq = f.pow(2).sum(1) if sq is None else sq + f.pow(2).sum(1)
        n0, dots = row[0], row[1:]
        conflict = (dots < 0) & (n0 > 0)
        coef = torch.where(conflict, dots / n0.clamp(min=torch.finfo(n0.dtype).tiny), torch.zeros_like(dots))
        out.append(s[0] * (1 - coef.sum()) + s[1:].sum(0))
        for i in range(k):
            shared[i] += int(dots[i] != 0)
            conflicts[i] += int(conflict[i])
    stats: dict[str, float] = {}
    for i, name in enumerate(names[1:]):
        # Fraction of the parameter tensors both CE and this loss reach in which they conflicted.
        stats[f"conflict/{name}"] = conflicts[i] / shared[i] if shared[i] else 0.0
        if gram_row is not None:
            denom = (sq[1 + i].sqrt() * sq[0].sqrt()).clamp(min=torch.finfo(sq.dtype).tiny)
            stats[f"cos/{name}"] = float(gram_row[1 + i] / denom)
    return out, stats


def _global_jvp(losses: list[Tensor], params: Sequence[Tensor], split: tuple[Tensor, Tensor], names: list[str]
                ) -> tuple[list[Tensor | None], dict[str, float]]:
    feats, f_leaf = split
    branch, u = _branch_and_feature_grads(losses, params, f_leaf)
    # g_ce's backbone part Jᵀu as a function of u (linear), kept differentiable to get J·v by a second backward.
    u0 = u[0].detach().requires_grad_(True)
    t0 = torch.autograd.grad(feats, params, grad_outputs=u0, create_graph=True, retain_graph=True,
                             allow_unused=True)
    g0 = [_add(b, None if t is None else t.detach()) for b, t in zip(branch[0], t0)]
    reached = [(t, g) for t, g in zip(t0, g0) if t is not None]
    if reached:
        (jg0,) = torch.autograd.grad([t for t, _ in reached], u0, grad_outputs=[g for _, g in reached],
                                     allow_unused=True)
        jg0 = torch.zeros_like(u0) if jg0 is None else jg0
    else:
        jg0 = torch.zeros_like(u0)
    n0 = _dot(g0, g0)
    n0 = n0 if isinstance(n0, Tensor) else torch.tensor(n0, dtype=u0.dtype)
    tiny = torch.finfo(u0.dtype).tiny
    scale = 1.0
    stats = {}
    for k in range(1, len(losses)):
        dot = _dot(branch[k], g0) + (u[k] * jg0).sum()
        conflict = bool(dot < 0) and bool(n0 > 0)
        if conflict:
            scale = scale - dot / n0.clamp(min=tiny)
        stats[f"conflict/{names[k]}"] = float(conflict)
    u_d = torch.stack(u[1:]).sum(0) if len(u) > 1 else torch.zeros_like(u0)
    t_d = torch.autograd.grad(feats, params, grad_outputs=u_d, retain_graph=True, allow_unused=True)
    out = []
    for i in range(len(params)):
        g = None if g0[i] is None else g0[i] * scale
        for k in range(1, len(losses)):
            g = _add(g, branch[k][i])
        out.append(_add(g, t_d[i]))
    return out, stats


def revise_and_backward(losses: dict[str, Tensor], ce_key: str, params: Sequence[Tensor], mode: str = "global",
                        impl: str = "auto", split: tuple[Tensor, Tensor] | None = None) -> dict[str, float]:
    """Back-propagate `losses` (weighted scalars, `ce_key` the classification loss) with gradient revision.

    Accumulates into `.grad` of `params` like `backward()` does (zero them before); parameters that no loss reaches
    are left alone. Returns statistics per distillation loss: `conflict/<name>` (global: 1.0 if it conflicted with
    CE this step; per_tensor: the fraction of shared parameter tensors where it did) and, except for the "jvp"
    implementation, `cos/<name>` (cosine with the CE gradient over all parameters). See the module docstring for
    `impl` and `split`.
    """
    if mode not in MODES:
        raise ValueError(f"unknown gradient revision mode {mode!r}; choose one of {', '.join(MODES)}")
    if impl not in IMPLS:
        raise ValueError(f"unknown gradient revision implementation {impl!r}; choose one of {', '.join(IMPLS)}")
    if ce_key not in losses:
        raise ValueError(f"the classification loss {ce_key!r} is not among the losses {sorted(losses)}")
    if not losses[ce_key].requires_grad:
        raise ValueError(f"the classification loss {ce_key!r} does not depend on any parameter")
    params = [p for p in params if p.requires_grad]
    # A loss that reaches no parameter (e.g. a constant) has a zero gradient: nothing to revise.
    names = [ce_key] + [k for k, v in losses.items() if k != ce_key and v.requires_grad]
    vals = [losses[k] for k in names]
    if impl == "auto":
        impl = "jvp" if (mode == "global" and split is not None) else "batched"
    if impl == "jvp" and mode == "global" and split is None:
        raise ValueError("the 'jvp' implementation needs split=(features, features_leaf)")

    stats: dict[str, float] = {}
    if mode == "none" or len(vals) == 1:
        total = torch.stack(vals).sum()
        if split is None:
            grads = list(torch.autograd.grad(total, params, allow_unused=True))
        else:
            feats, f_leaf = split
            g = torch.autograd.grad(total, [*params, f_leaf], allow_unused=True)
            trunk = (torch.autograd.grad(feats, params, grad_outputs=g[-1], allow_unused=True)
                     if g[-1] is not None else [None] * len(params))
            grads = [_add(b, t) for b, t in zip(g[:-1], trunk)]
    elif mode == "global" and impl == "jvp":
        grads, stats = _global_jvp(vals, params, split, names)  # type: ignore[arg-type]
    else:
        # per_tensor needs every loss's gradient tensor by tensor; "jvp" cannot give that, so it uses "batched".
        stacks = _per_loss_grads(vals, params, "naive" if impl == "naive" else "batched", split)
        combine = _combine_global if mode == "global" else _combine_per_tensor
        grads, stats = combine(stacks, names)
        if all(g is None for g in grads):
            return stats
    for p, g in zip(params, grads):
        if g is None:
            continue
        if p.grad is None:
            p.grad = g.detach().clone()
        else:
            p.grad.add_(g.detach())
    return stats


class FeatureSplit:
    """Makes the `split` for `revise_and_backward` without touching the model's code.

    A forward hook on `module` (the distilled layer, e.g. the last GCN block; called once per forward) keeps its
    output F and hands the rest of the model a detached leaf copy, so the head and every loss computed from the
    returned features hang off the leaf. Use `split` (= (F, leaf)) after the student's forward. Inactive when
    gradients are off (evaluation) or the output does not require grad (a frozen teacher).
    """

    def __init__(self, module: torch.nn.Module):
        self.features: Tensor | None = None
        self.leaf: Tensor | None = None
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, module: torch.nn.Module, inputs: object, output: Tensor) -> Tensor | None:
        if not (torch.is_grad_enabled() and isinstance(output, Tensor) and output.requires_grad):
            self.features = self.leaf = None
            return None
        self.features = output
        self.leaf = output.detach().requires_grad_(True)
        return self.leaf

    @property
    def split(self) -> tuple[Tensor, Tensor]:
        if self.features is None or self.leaf is None:
            raise RuntimeError("no split features: run the student's forward with gradients enabled first")
        return self.features, self.leaf

    def remove(self) -> None:
        self._handle.remove()


class RevisionMeter:
    """Running means of the statistics `revise_and_backward` returns (e.g. how often each loss conflicted)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def update(self, stats: dict[str, float]) -> None:
        for k, v in stats.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1

    def summary(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in sorted(self.sums)}
