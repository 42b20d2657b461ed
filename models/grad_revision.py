"""Gradient revision: distillation gradients that fight the classification gradient are projected off it.

For per-loss gradients g_ce, g_1 … g_K over the student's parameters, each g_k with `g_k·g_ce < 0` is replaced by
`g_k − (g_k·g_ce / ‖g_ce‖²) g_ce` (its projection onto the normal plane of g_ce), and the update is
`g_ce + Σ_k g_k`. Modes:
- "global": dot products over all parameters flattened into one vector (the authors' code);
- "per_tensor": the same test and projection done separately for each parameter tensor;
- "tail": the global revision with its conflict test restricted to a parameter subset (`subset`; the student's
  last blocks + head, models/revision_subset.py). The update `(1 − Σ_k c_k)·g_ce + Σ_k g_k`, with `c_k` the
  projection coefficient `g_k·g_ce / ‖g_ce‖²` where that is negative and 0 otherwise, is the gradient of the
  reweighted scalar `(1 − Σ_k c_k)·L_ce + Σ_k L_k`: the c_k come from per-loss gradients that stop at the subset
  (cheap when it is the tail), then ONE backward of that scalar fills every parameter. With the subset = every
  parameter it is the global revision (tests/models/test_revision_subset.py);
- "none": plain sum of the losses, one backward.

Parameters that only some losses reach are exact under the same formula: where g_ce is zero (a distillation
adapter, which CE never reaches) the dot product gets nothing from them and the projection subtracts a multiple of
zero there, so their gradient is never changed; where a distillation loss is zero (e.g. the classifier, for a
feature loss) nothing is projected.

Implementations, all exact (they agree to rounding):
- "naive": one backward pass per loss (K+1 passes through the whole network);
- "batched": one backward of the stacked loss vector with K+1 one-hot cotangents (`is_grads_batched`, vmap);
  the same arithmetic in one call; on a CPU it is slower than the loop (measured in bench/grad_revision_cost.py);
- "jvp" (global mode; needs a `FeatureTap`): uses that only the scalar products g_k·g_ce are needed. With the
  shared features F (every loss reaches the backbone only through F) and per-loss feature gradients
  u_k = ∂L_k/∂F (cheap: they stop at F), g_k = b_k + Jᵀu_k (b_k: parameters after F, J = ∂F/∂θ), so
  g_k·g_ce = b_k·g_ce + u_k·(J g_ce): ONE Jacobian-vector product (a forward-mode re-run of the student up to F)
  serves every k. The update is (1 − Σ c_k)·g_ce + Σ_k b_k + Jᵀ(Σ_k u_k): two backward passes through the
  backbone and one forward-mode pass, whatever K, instead of K+1 backward passes.

`split`: a `FeatureTap` (or a pair `(F, F_leaf)`, `F_leaf = F.detach().requires_grad_()`, from which the caller
computed every loss). With a split, per-loss gradients first stop at F, and the backbone is back-propagated from F.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor

MODES = ("none", "global", "per_tensor", "tail")  # the one list of revision modes
IMPLS = ("auto", "naive", "batched", "jvp")

Grads = list[Tensor | None]
Reduce = Callable[[list[Tensor | None]], list[Tensor | None]]  # averages across data-parallel ranks


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


def _coefficients(dots: Tensor, n0: Tensor) -> Tensor:
    """c_k = g_k·g_ce / ‖g_ce‖² where g_k conflicts with g_ce (negative dot product), else 0."""
    return torch.where((dots < 0) & (n0 > 0), dots / n0.clamp(min=torch.finfo(n0.dtype).tiny), torch.zeros_like(dots))


def _global_coefficients(stacks: list[Tensor | None], names: list[str]) -> tuple[Tensor | None, dict[str, float]]:
    """The global test over the parameters of `stacks` (`[K+1, *shape]` each): (c_k for k ≥ 1, statistics)."""
    flat = [s.reshape(s.shape[0], -1) for s in stacks if s is not None]
    if not flat:
        return None, {}
    gram_row = sum((f @ f[0] for f in flat), torch.zeros(len(names), dtype=flat[0].dtype, device=flat[0].device))
    sq = sum((f.pow(2).sum(1) for f in flat), torch.zeros_like(gram_row))
    n0, dots = gram_row[0], gram_row[1:]
    cos = dots / (sq[1:].sqrt() * n0.sqrt()).clamp(min=torch.finfo(n0.dtype).tiny)
    stats = {}
    for i, name in enumerate(names[1:]):
        stats[f"conflict/{name}"] = float(dots[i] < 0 and n0 > 0)
        stats[f"cos/{name}"] = float(cos[i])
    return _coefficients(dots, n0), stats


def _combine_global(stacks: list[Tensor | None], names: list[str]) -> tuple[list[Tensor | None], dict[str, float]]:
    coef, stats = _global_coefficients(stacks, names)
    if coef is None:
        return list(stacks), {}
    scale = 1 - coef.sum()
    return [None if s is None else s[0] * scale + s[1:].sum(0) for s in stacks], stats


def _global_on_subset(losses: list[Tensor], params: Sequence[Tensor], subset: Sequence[Tensor], names: list[str],
                      reduce: Reduce | None) -> tuple[list[Tensor | None], dict[str, float]]:
    """The "tail" mode: the global test on `subset`, then one backward of the reweighted scalar (docstring)."""
    stacks = _per_loss_grads(losses, [p for p in subset if p.requires_grad], "naive", None)
    if reduce is not None:
        stacks = reduce(stacks)  # the combined batch's subset gradients: every rank takes the same decision
    coef, stats = _global_coefficients(stacks, names)
    total = losses[0] * (1 - coef.sum().detach()) if coef is not None else losses[0]
    for loss in losses[1:]:
        total = total + loss
    grads: list[Tensor | None] = list(torch.autograd.grad(total, params, allow_unused=True))
    return (reduce(grads) if reduce is not None else grads), stats


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
        coef = _coefficients(dots, n0)
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


def _quiet_forward_ad_setup() -> None:
    # On first use, torch registers its forward-AD decompositions through the deprecated torch.jit.script,
    # which warns once; the warning is torch's business, not the user's.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import torch._decomp.decompositions_for_jvp  # noqa: F401
        except ImportError:
            pass


class _Captured(Exception):
    """Stops a forward-mode re-run once the split layer has produced its output."""


class FeatureTap:
    """Splits the student at its distilled layer, without touching the model's code.

    Run the student's training forward through it (`out = splitter(x, return_features=True)` instead of
    `student(...)`). A forward hook on `layer` (the distilled layer, e.g. the last GCN block; it must run once per
    forward) keeps its output F and hands the rest of the model a detached leaf copy, so the head and every loss
    computed from the outputs hang off the leaf; `split` is then `(F, leaf)`. `jvp` re-runs the same forward (same
    inputs, same RNG state so dropout masks repeat, same autocast, BatchNorm buffers copied so running statistics
    are updated once) in forward-mode AD and stops at `layer`: J·v for the "jvp" revision. Under bfloat16 autocast
    the tangent is computed in bfloat16 too, so the dot products are as exact as that precision. The hook stays out
    of the way when gradients are off (evaluation) or the layer's output does not require grad (a frozen model).
    """

    def __init__(self, model: torch.nn.Module, layer: torch.nn.Module):
        self.model = model
        self.layer = layer
        self.features: Tensor | None = None
        self.leaf: Tensor | None = None
        self._pending: tuple | None = None
        self._call: tuple | None = None
        self._capture = False
        self._captured: Tensor | None = None
        self._handle = layer.register_forward_hook(self._hook)

    def __call__(self, *args, **kwargs):
        cuda = sorted({p.device.index or 0 for p in self.model.parameters() if p.is_cuda})
        rng = (torch.get_rng_state(), {i: torch.cuda.get_rng_state(i) for i in cuda})
        # Autocast (mixed precision) in force for the forward is replayed too, so the re-run computes the same F.
        amp = [(d, torch.get_autocast_dtype(d)) for d in ("cpu", "cuda") if torch.is_autocast_enabled(d)]
        self._pending = (args, kwargs, rng, amp)
        try:
            return self.model(*args, **kwargs)
        finally:
            self._pending = None

    def _hook(self, module: torch.nn.Module, inputs: object, output: Tensor) -> Tensor | None:
        if self._capture:  # a jvp re-run: its own hook takes the output
            return None
        self.features = self.leaf = self._call = None
        if not (torch.is_grad_enabled() and isinstance(output, Tensor) and output.requires_grad):
            return None
        self.features = output
        self.leaf = output.detach().requires_grad_(True)
        self._call = self._pending  # None when the model was called directly: then no jvp
        return self.leaf

    def _capture_hook(self, module: torch.nn.Module, inputs: object, output: Tensor) -> None:
        self._captured = output
        raise _Captured  # the rest of the model (head) is not needed

    @property
    def split(self) -> tuple[Tensor, Tensor]:
        if self.features is None or self.leaf is None:
            raise RuntimeError("no split features: run the student's forward with gradients enabled first")
        return self.features, self.leaf

    def jvp(self, params: Sequence[Tensor], tangents: Sequence[Tensor | None]) -> Tensor:
        """Directional derivative of the split features along `tangents` (one per parameter; None = 0)."""
        return self.rerun(params, tangents)[1]

    def rerun(self, params: Sequence[Tensor], tangents: Sequence[Tensor | None]) -> tuple[Tensor, Tensor]:
        """(features recomputed, their tangent): the first equals `split[0]` when the replay is faithful."""
        if self._call is None or self.features is None:
            raise RuntimeError("jvp needs the student's last training forward to have run through this FeatureTap")
        args, kwargs, (cpu_rng, cuda_rng), amp = self._call
        _quiet_forward_ad_setup()
        names = {id(p): n for n, p in self.model.named_parameters()}
        with contextlib.ExitStack() as stack:
            for device_type, dtype in amp:
                stack.enter_context(torch.autocast(device_type=device_type, dtype=dtype))
            return self._rerun(args, kwargs, cpu_rng, cuda_rng, names, params, tangents)

    def _rerun(self, args: tuple, kwargs: dict, cpu_rng: Tensor, cuda_rng: dict, names: dict,
               params: Sequence[Tensor], tangents: Sequence[Tensor | None]) -> tuple[Tensor, Tensor]:
        with torch.no_grad(), fwAD.dual_level(), torch.random.fork_rng(devices=list(cuda_rng)):
            torch.set_rng_state(cpu_rng)
            for i, state in cuda_rng.items():
                torch.cuda.set_rng_state(state, i)
            over: dict[str, Tensor] = {n: b.clone() for n, b in self.model.named_buffers()}
            for p, t in zip(params, tangents):
                if t is not None and id(p) in names:
                    over[names[id(p)]] = fwAD.make_dual(p.detach(), t)
            self._capture = True
            handle = self.layer.register_forward_hook(self._capture_hook)
            try:
                torch.func.functional_call(self.model, over, args, kwargs)
            except _Captured:
                pass
            finally:
                self._capture = False
                handle.remove()
            out, self._captured = self._captured, None
            if out is None:
                raise RuntimeError("the split layer did not run in the re-run forward")
            primal, tangent = fwAD.unpack_dual(out)
        return primal, (torch.zeros_like(primal) if tangent is None else tangent)

    def remove(self) -> None:
        self._handle.remove()


def _global_jvp(losses: list[Tensor], params: Sequence[Tensor], splitter: FeatureTap, names: list[str],
                reduce: Reduce | None = None) -> tuple[list[Tensor | None], dict[str, float]]:
    feats, f_leaf = splitter.split
    branch, u = _branch_and_feature_grads(losses, params, f_leaf)
    t0 = torch.autograd.grad(feats, params, grad_outputs=u[0], retain_graph=True, allow_unused=True)
    g0 = [_add(b, t) for b, t in zip(branch[0], t0)]
    if reduce is not None:
        g0 = reduce(g0)  # the combined batch's g_ce: every rank projects against the same vector
    jg0 = splitter.jvp(params, g0)  # J·g_ce in feature space: one forward-mode pass serves every loss
    n0 = _dot(g0, g0)
    dots = [_dot(branch[k], g0) + (u[k] * jg0).sum() for k in range(1, len(losses))]
    if reduce is not None and dots:
        # g_k·g_ce is linear in g_k: the combined batch's is the ranks' (weighted) mean of their local ones.
        dots = list(reduce([torch.stack([torch.as_tensor(d) for d in dots])])[0])  # type: ignore[index]
    stats = {}
    scale: Tensor | float = 1.0
    if dots:
        dots_t = torch.stack([torch.as_tensor(d) for d in dots])
        n0_t = torch.as_tensor(n0, dtype=dots_t.dtype, device=dots_t.device)
        scale = 1 - _coefficients(dots_t, n0_t).sum()
        for k in range(1, len(losses)):
            stats[f"conflict/{names[k]}"] = float(dots_t[k - 1] < 0 and n0_t > 0)
    u_d = torch.stack(u[1:]).sum(0)
    t_d = torch.autograd.grad(feats, params, grad_outputs=u_d, allow_unused=True)
    out = []
    if reduce is not None:
        # The distillation part Σ_k g_k is linear too: average it across ranks, then add the revised g_ce.
        d: list[Tensor | None] = []
        for i in range(len(params)):
            g = None
            for k in range(1, len(losses)):
                g = _add(g, branch[k][i])
            d.append(_add(g, t_d[i]))
        d = reduce(d)
        return [_add(None if g0[i] is None else g0[i] * scale, d[i]) for i in range(len(params))], stats
    for i in range(len(params)):
        g = None if g0[i] is None else g0[i] * scale
        for k in range(1, len(losses)):
            g = _add(g, branch[k][i])
        out.append(_add(g, t_d[i]))
    return out, stats


def revise_and_backward(losses: dict[str, Tensor], ce_key: str, params: Sequence[Tensor], mode: str = "global",
                        impl: str = "auto", split: FeatureTap | tuple[Tensor, Tensor] | None = None,
                        reduce: Reduce | None = None, subset: Sequence[Tensor] | None = None) -> dict[str, float]:
    """Back-propagate `losses` (weighted scalars, `ce_key` the classification loss) with gradient revision.

    Accumulates into `.grad` of `params` like `backward()` does (zero them before); parameters that no loss reaches
    are left alone. `params`: every trainable student parameter, distillation adapters included. Returns statistics
    per distillation loss: `conflict/<name>` (global: 1.0 if it conflicted with CE this step; per_tensor: the
    fraction of the parameter tensors shared with CE where it did) and, except with "jvp", `cos/<name>` (cosine
    with the CE gradient over all parameters). `impl` and `split`: see the module docstring; "auto" is "jvp" for
    the global mode when `split` is a FeatureTap, else "naive" (the fastest of the others on a CPU). `subset`: the
    parameters of the "tail" mode's conflict test (required there, and only there; `impl` and `split` unused).

    `reduce` (data-parallel training, see models/training/distributed.py): averages a list of tensors across ranks. The
    per-loss gradients (or, for "jvp", g_ce, the dot products and the distillation sum) are averaged BEFORE the
    projection, so every rank revises the combined batch's gradients; the `.grad` filled is already averaged.
    """
    if mode not in MODES:
        raise ValueError(f"unknown gradient revision mode {mode!r}; choose one of {', '.join(MODES)}")
    if impl not in IMPLS:
        raise ValueError(f"unknown gradient revision implementation {impl!r}; choose one of {', '.join(IMPLS)}")
    if ce_key not in losses:
        raise ValueError(f"the classification loss {ce_key!r} is not among the losses {sorted(losses)}")
    if not losses[ce_key].requires_grad:
        raise ValueError(f"the classification loss {ce_key!r} does not depend on any parameter")
    if (mode == "tail") != (subset is not None):
        raise ValueError("the 'tail' mode needs the subset of parameters its test runs on, and only it takes one")
    params = [p for p in params if p.requires_grad]
    # A loss that reaches no parameter (e.g. a constant) has a zero gradient: nothing to revise.
    names = [ce_key] + [k for k, v in losses.items() if k != ce_key and v.requires_grad]
    vals = [losses[k] for k in names]
    splitter = split if isinstance(split, FeatureTap) else None
    pair = split.split if isinstance(split, FeatureTap) else split
    if impl == "auto":
        impl = "jvp" if (mode == "global" and splitter is not None) else "naive"
    if impl == "jvp" and mode == "global" and splitter is None:
        raise ValueError("the 'jvp' implementation needs split=FeatureTap(student, layer)")

    stats: dict[str, float] = {}
    if mode == "none" or len(vals) == 1:
        total = torch.stack(vals).sum()
        if pair is None:
            grads = list(torch.autograd.grad(total, params, allow_unused=True))
        else:
            feats, f_leaf = pair
            g = torch.autograd.grad(total, [*params, f_leaf], allow_unused=True)
            trunk = (torch.autograd.grad(feats, params, grad_outputs=g[-1], allow_unused=True)
                     if g[-1] is not None else [None] * len(params))
            grads = [_add(b, t) for b, t in zip(g[:-1], trunk)]
        if reduce is not None:
            grads = reduce(grads)
    elif mode == "tail":
        grads, stats = _global_on_subset(vals, params, subset, names, reduce)  # type: ignore[arg-type]
    elif mode == "global" and impl == "jvp":
        grads, stats = _global_jvp(vals, params, splitter, names, reduce)  # type: ignore[arg-type]
    else:
        # per_tensor needs every loss's gradient tensor by tensor, which "jvp" does not give: it uses "naive".
        stacks = _per_loss_grads(vals, params, "batched" if impl == "batched" else "naive", pair)
        if reduce is not None:
            stacks = reduce(stacks)
        combine = _combine_global if mode == "global" else _combine_per_tensor
        grads, stats = combine(stacks, names)
    for p, g in zip(params, grads):
        if g is None:
            continue
        if p.grad is None:
            p.grad = g.detach().clone()
        else:
            p.grad.add_(g.detach())
    return stats


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
