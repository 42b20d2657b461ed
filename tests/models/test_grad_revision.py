"""Gradient revision: a worked 2-parameter example, and every implementation against a direct reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models.grad_revision import FeatureTap, RevisionMeter, revise_and_backward
from models.losses.distill import DistillConfig, build_distill_losses


def two_scalars() -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.tensor(0.3, dtype=torch.float64, requires_grad=True),
            torch.tensor(-0.7, dtype=torch.float64, requires_grad=True))


def worked_losses(x, y, which: str) -> dict[str, torch.Tensor]:
    # g_ce = (1, 1); g_a = (−2, 1) conflicts (g_a·g_ce = −1); g_b = (3, 0) does not (g_b·g_ce = 3).
    out = {"ce": x + y}
    if "a" in which:
        out["a"] = -2 * x + y
    if "b" in which:
        out["b"] = 3 * x
    return out


@pytest.mark.parametrize("impl", ["naive", "batched"])
def test_conflicting_gradient_is_projected(impl):
    x, y = two_scalars()
    stats = revise_and_backward(worked_losses(x, y, "a"), "ce", [x, y], "global", impl)
    # g_a − (g_a·g_ce / ‖g_ce‖²) g_ce = (−2, 1) − (−1/2)(1, 1) = (−1.5, 1.5); plus g_ce → (−0.5, 2.5).
    assert (x.grad.item(), y.grad.item()) == pytest.approx((-0.5, 2.5), abs=1e-12)
    projected = (x.grad.item() - 1, y.grad.item() - 1)
    assert projected[0] * 1 + projected[1] * 1 == pytest.approx(0.0, abs=1e-12)  # orthogonal to g_ce
    assert stats["conflict/a"] == 1.0
    assert stats["cos/a"] == pytest.approx(-1 / (5**0.5 * 2**0.5))


@pytest.mark.parametrize("impl", ["naive", "batched"])
def test_agreeing_gradient_is_unchanged(impl):
    x, y = two_scalars()
    stats = revise_and_backward(worked_losses(x, y, "b"), "ce", [x, y], "global", impl)
    assert (x.grad.item(), y.grad.item()) == pytest.approx((4.0, 1.0), abs=1e-12)  # (1, 1) + (3, 0)
    assert stats["conflict/b"] == 0.0


def test_both_and_no_revision():
    x, y = two_scalars()
    revise_and_backward(worked_losses(x, y, "ab"), "ce", [x, y], "global")
    assert (x.grad.item(), y.grad.item()) == pytest.approx((2.5, 2.5), abs=1e-12)  # (1,1) + (−1.5,1.5) + (3,0)
    x, y = two_scalars()
    assert revise_and_backward(worked_losses(x, y, "ab"), "ce", [x, y], "none") == {}
    assert (x.grad.item(), y.grad.item()) == pytest.approx((2.0, 2.0), abs=1e-12)  # plain sum


def test_per_tensor_variant():
    x, y = two_scalars()
    stats = revise_and_backward(worked_losses(x, y, "ab"), "ce", [x, y], "per_tensor")
    # Tensor x: g_ce = 1, g_a = −2 conflicts → −2 − (−2/1)·1 = 0; g_b = 3 agrees. Tensor y: g_a = 1 agrees, g_b = 0.
    # x: 1 + 0 + 3 = 4; y: 1 + 1 + 0 = 2 (the global mode gives (2.5, 2.5)).
    assert (x.grad.item(), y.grad.item()) == pytest.approx((4.0, 2.0), abs=1e-12)
    assert stats["conflict/a"] == 0.5  # conflicted in x, agreed in y
    assert stats["conflict/b"] == 0.0  # shares only x with CE, agrees there


def test_per_tensor_equals_global_for_one_tensor():
    for mode in ("global", "per_tensor"):
        w = torch.tensor([0.3, -0.7], dtype=torch.float64, requires_grad=True)
        revise_and_backward(worked_losses(w[0], w[1], "ab"), "ce", [w], mode)
        assert w.grad.tolist() == pytest.approx([2.5, 2.5], abs=1e-12)


def test_accumulates_like_backward_and_leaves_unreached_params():
    x, y = two_scalars()
    z = torch.tensor(1.0, requires_grad=True)
    x.grad = torch.tensor(10.0, dtype=torch.float64)
    revise_and_backward(worked_losses(x, y, "a"), "ce", [x, y, z], "global")
    assert x.grad.item() == pytest.approx(9.5)
    assert z.grad is None


def test_bad_arguments():
    x, y = two_scalars()
    with pytest.raises(ValueError, match="mode"):
        revise_and_backward(worked_losses(x, y, "a"), "ce", [x, y], "sometimes")
    with pytest.raises(ValueError, match="not among"):
        revise_and_backward(worked_losses(x, y, "a"), "xent", [x, y], "global")
    with pytest.raises(ValueError, match="FeatureTap"):
        revise_and_backward(worked_losses(x, y, "a"), "ce", [x, y], "global", impl="jvp")


def test_meter():
    meter = RevisionMeter()
    meter.update({"conflict/a": 1.0})
    meter.update({"conflict/a": 0.0, "conflict/b": 1.0})
    assert meter.summary() == {"conflict/a": 0.5, "conflict/b": 1.0}


# ---- a small real network: all implementations against a direct reference -------------------------------------

class TinyGCNLike(nn.Module):
    """A few conv + BN + ReLU layers (and dropout), a pooled linear head: features `(N, C, T', V)`, then logits."""

    def __init__(self, c: int = 6, k: int = 4):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, c, (3, 1), padding=(1, 0)), nn.BatchNorm2d(c), nn.ReLU(), nn.Dropout(0.2),
            nn.Conv2d(c, c, (3, 1), stride=(2, 1), padding=(1, 0)), nn.BatchNorm2d(c), nn.ReLU(),
            nn.Conv2d(c, c, 1), nn.ReLU())
        self.fc = nn.Linear(c, k)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.body(x)
        return self.fc(f.mean(dim=(2, 3))), f


def setup(kd_weight: float):
    torch.manual_seed(0)
    student, teacher = TinyGCNLike().double(), TinyGCNLike().double().eval()
    distill = build_distill_losses(DistillConfig(kd_weight=kd_weight, tau=2.0), 6, 6).double()
    x = torch.randn(4, 3, 8, 5, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        z_t, f_t = teacher(x)
    params = list(student.parameters()) + list(distill.parameters())
    return student, distill, x, y, f_t, z_t, params


def losses_of(student, distill, x, y, f_t, z_t, split: str = "none"):
    """Losses of one training forward (dropout seeded, so every call sees the same masks) and the split to use."""
    torch.manual_seed(123)
    if split == "hook":
        splitter = FeatureTap(student, student.body)
        try:
            z, f = splitter(x)
        finally:
            splitter.remove()
        sp = splitter
    elif split == "pair":
        f_full = student.body(x)
        f = f_full.detach().requires_grad_()
        z = student.fc(f.mean(dim=(2, 3)))
        sp = (f_full, f)
    else:
        z, f = student(x)
        sp = None
    return {"ce": F.cross_entropy(z, y), **distill(z, f, z_t, f_t)}, sp


def reference(losses: dict[str, torch.Tensor], params, mode: str) -> list[torch.Tensor]:
    """The definition, written out: per-loss gradients, flattened, projected when conflicting, summed."""
    grads = {k: [torch.zeros_like(p) if g is None else g for p, g in
                 zip(params, torch.autograd.grad(v, params, retain_graph=True, allow_unused=True))]
             for k, v in losses.items()}
    ce = grads.pop("ce")
    if mode == "global":
        gce = torch.cat([g.flatten() for g in ce])
        total = gce.clone()
        for gk in grads.values():
            v = torch.cat([g.flatten() for g in gk])
            if v @ gce < 0:
                v = v - (v @ gce) / (gce @ gce) * gce
            total += v
        sizes = [p.numel() for p in params]
        return [t.view_as(p) for t, p in zip(total.split(sizes), params)]
    out = []
    for i, p in enumerate(params):
        g0, total = ce[i].flatten(), ce[i].flatten().clone()
        for gk in grads.values():
            v = gk[i].flatten()
            if v @ g0 < 0 and g0 @ g0 > 0:
                v = v - (v @ g0) / (g0 @ g0) * g0
            total += v
        out.append(total.view_as(p))
    return out


@pytest.mark.parametrize("kd_weight", [1.0, -1.0])  # −1 flips the KD gradient so that it surely conflicts
@pytest.mark.parametrize("mode", ["global", "per_tensor"])
@pytest.mark.parametrize("impl,split", [("naive", "none"), ("batched", "none"), ("naive", "pair"),
                                        ("batched", "pair"), ("naive", "hook"), ("jvp", "hook"), ("auto", "hook")])
def test_implementations_match_reference(mode, impl, split, kd_weight):
    student, distill, x, y, f_t, z_t, params = setup(kd_weight)
    ref = reference(losses_of(student, distill, x, y, f_t, z_t)[0], params, mode)
    losses, sp = losses_of(student, distill, x, y, f_t, z_t, split)
    stats = revise_and_backward(losses, "ce", params, mode, impl, sp)
    for p, r in zip(params, ref):
        assert torch.allclose(p.grad, r, atol=1e-9, rtol=1e-9)
    if kd_weight < 0 and mode == "global":
        assert stats["conflict/kd"] == 1.0
    # The adapter is reached by node and edge only: its gradient is their plain sum, never revised.
    plain = losses_of(student, distill, x, y, f_t, z_t)[0]
    for p, g in zip(distill.parameters(), torch.autograd.grad(plain["node"] + plain["edge"],
                                                              list(distill.parameters()))):
        assert torch.allclose(p.grad, g, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("split", ["none", "pair", "hook"])
def test_no_revision_is_plain_backward(split):
    student, distill, x, y, f_t, z_t, params = setup(1.0)
    losses, _ = losses_of(student, distill, x, y, f_t, z_t)
    sum(losses.values()).backward()
    expected = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    losses, sp = losses_of(student, distill, x, y, f_t, z_t, split)
    revise_and_backward(losses, "ce", params, "none", split=sp)
    for p, e in zip(params, expected):
        assert torch.allclose(p.grad, e, atol=1e-12)


def test_jvp_rerun_leaves_batchnorm_statistics_and_rng_alone():
    student, distill, x, y, f_t, z_t, params = setup(1.0)
    losses_of(student, distill, x, y, f_t, z_t)
    after_one_forward = [b.clone() for b in student.buffers()]
    rng_after_forward = torch.get_rng_state()
    student, distill, x, y, f_t, z_t, params = setup(1.0)
    losses, sp = losses_of(student, distill, x, y, f_t, z_t, "hook")
    rng_before = torch.get_rng_state()
    assert torch.equal(rng_before, rng_after_forward)
    revise_and_backward(losses, "ce", params, "global", "jvp", sp)
    assert torch.equal(torch.get_rng_state(), rng_before)
    for b, e in zip(student.buffers(), after_one_forward):
        assert torch.equal(b, e)


def test_feature_split_hook():
    student, distill, x, y, f_t, z_t, params = setup(1.0)
    splitter = FeatureTap(student, student.body)
    try:
        z, f = splitter(x)
        assert f.is_leaf and f.requires_grad and splitter.split[0].grad_fn is not None
        with torch.no_grad():  # evaluation: the hook stays out of the way
            assert not student(x)[1].requires_grad
        with pytest.raises(RuntimeError, match="no split"):
            _ = splitter.split
        student(x)  # called directly, not through the splitter: the split works, a re-run is refused
        with pytest.raises(RuntimeError, match="through this FeatureTap"):
            splitter.jvp(params, [None] * len(params))
    finally:
        splitter.remove()


@pytest.mark.parametrize("amp", [False, True])
def test_rerun_replays_the_forward_exactly(amp):
    """Same dropout masks, same BatchNorm batch statistics, same autocast: the re-run recomputes F bit for bit."""
    torch.manual_seed(0)
    student = TinyGCNLike()
    x = torch.randn(4, 3, 8, 5)
    params = list(student.parameters())
    splitter = FeatureTap(student, student.body)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            splitter(x)
        feats = splitter.split[0]
        assert feats.dtype == (torch.bfloat16 if amp else torch.float32)
        primal, tangent = splitter.rerun(params, [torch.ones_like(p) for p in params])
        assert primal.dtype == feats.dtype and torch.equal(primal, feats)
        assert tangent.shape == feats.shape and tangent.abs().sum() > 0
    finally:
        splitter.remove()
