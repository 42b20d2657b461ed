"""Function matching: one mix for both sides, lambda and labels handled as documented, nothing changes when off."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.losses.distill import DistillConfig, build_distill_losses
from models.net.stgcn import STGCN
from models.training.function_matching import Mix, apply_mix, check_mix, draw_mix, mixed_ce
from models.training.student import distill_step
from tests.support.nets import teacher_student


class _Spy(torch.nn.Module):
    """Records the input each forward saw."""

    def __init__(self, net: STGCN):
        super().__init__()
        self.net, self.seen = net, []

    def forward(self, x, return_features=False):
        self.seen.append(x.detach().clone())
        return self.net(x, return_features=return_features)


def test_draw_is_seeded_and_in_range():
    for kind in ("mixup", "cutmix", "both"):
        a = draw_mix(kind, 0.5, 8, 32, np.random.default_rng(3))
        b = draw_mix(kind, 0.5, 8, 32, np.random.default_rng(3))
        assert a.lam == b.lam and torch.equal(a.perm, b.perm) and a.cut == b.cut
        assert 0.0 <= a.lam <= 1.0 and sorted(a.perm.tolist()) == list(range(8))
    m = draw_mix("cutmix", 1.0, 8, 32, np.random.default_rng(5))
    start, end = m.cut
    assert 0 <= start <= end <= 32 and m.lam == pytest.approx(1 - (end - start) / 32)
    assert draw_mix("none", 1.0, 8, 32, np.random.default_rng(0)) is None
    assert draw_mix("mixup", 1.0, 1, 32, np.random.default_rng(0)) is None  # no partner in a batch of one
    with pytest.raises(ValueError):
        check_mix("mixup", 0.0)
    with pytest.raises(ValueError):
        DistillConfig(mix="blend")


def test_apply_mix_values():
    x = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1, 1).expand(4, 1, 6, 2, 3).contiguous()
    perm = torch.tensor([1, 0, 3, 2])
    up = apply_mix(x, Mix("mixup", 0.25, perm))
    assert torch.allclose(up[:, 0, 0, 0, 0], 0.25 * torch.tensor([0., 1, 2, 3]) + 0.75 * torch.tensor([1., 0, 3, 2]))
    cut = apply_mix(x, Mix("cutmix", 0.5, perm, (2, 5)))
    assert torch.equal(cut[:, :, :2], x[:, :, :2]) and torch.equal(cut[:, :, 5:], x[:, :, 5:])
    assert torch.equal(cut[:, :, 2:5], x[perm][:, :, 2:5])
    assert apply_mix(x, None) is x


def test_mixed_ce_follows_lambda_and_skips_unlabeled():
    torch.manual_seed(1)
    z = torch.randn(4, 5)
    y = torch.tensor([0, 1, 2, 3])
    perm = torch.tensor([1, 0, 3, 2])
    m = Mix("mixup", 0.3, perm)
    want = 0.3 * F.cross_entropy(z, y) + 0.7 * F.cross_entropy(z, y[perm])
    assert mixed_ce(z, y, m).item() == pytest.approx(want.item(), rel=1e-6)
    assert mixed_ce(z, y, None).item() == pytest.approx(F.cross_entropy(z, y).item(), rel=1e-6)
    # Clip 1 unlabeled: its own share and its share as clip 0's partner drop out.
    y2 = torch.tensor([0, -1, 2, 3])
    num = 0.3 * (F.cross_entropy(z[[0, 2, 3]], y2[[0, 2, 3]], reduction="sum")) \
        + 0.7 * F.cross_entropy(z[[1, 2, 3]], y2[perm][[1, 2, 3]], reduction="sum")
    assert mixed_ce(z, y2, m).item() == pytest.approx((num / (0.3 * 3 + 0.7 * 3)).item(), rel=1e-6)
    zero = mixed_ce(z.requires_grad_(), torch.full((4,), -1), m)
    assert zero.item() == 0.0 and zero.requires_grad


def test_step_feeds_both_sides_the_same_mix():
    t, s = teacher_student(1)
    dcfg = DistillConfig(method="kd", grad_revision="none", mix="cutmix")
    losses = build_distill_losses(dcfg, s.feature_channels, t.feature_channels)
    spy_t, spy_s = _Spy(t), _Spy(s)
    params = [p for p in s.parameters() if p.requires_grad]
    x_hq = torch.randn(6, 1, 16, 13, 3)
    x_lq = x_hq + 0.5 * torch.randn_like(x_hq)
    y = torch.tensor([0, 1, 2, 3, 4, -1])
    m = Mix("cutmix", 0.5, torch.tensor([5, 4, 3, 2, 1, 0]), (4, 12))
    terms, _ = distill_step(spy_t, spy_s, losses, x_hq, x_lq, y, dcfg, params, None, mix=m)
    assert torch.equal(spy_t.seen[0], apply_mix(x_hq, m)) and torch.equal(spy_s.seen[0], apply_mix(x_lq, m))
    assert not torch.equal(spy_t.seen[0], x_hq)
    # The same partner and frames on both sides: the LQ perturbation of the mix is the mix of the perturbation.
    assert torch.allclose(spy_s.seen[0] - spy_t.seen[0], apply_mix(x_lq - x_hq, m), atol=1e-6)
    with torch.no_grad():
        z_s = s(apply_mix(x_lq, m))
    assert terms["ce"].item() == pytest.approx(mixed_ce(z_s, y, m).item(), rel=1e-5)


def test_no_mix_is_the_plain_step():
    t, s = teacher_student(1)
    dcfg = DistillConfig(method="kd", grad_revision="none")
    assert dcfg.mix == "none"
    losses = build_distill_losses(dcfg, s.feature_channels, t.feature_channels)
    params = [p for p in s.parameters() if p.requires_grad]
    x = torch.randn(4, 1, 16, 13, 3)
    y = torch.tensor([0, 1, -1, 3])
    a, _ = distill_step(t, s, losses, x, x, y, dcfg, params, None)
    g_a = [p.grad.clone() for p in params]
    s.zero_grad()
    b, _ = distill_step(t, s, losses, x, x, y, dcfg, params, None, mix=None)
    assert all(torch.equal(a[k], b[k]) for k in ("ce", "kd"))
    assert all(torch.equal(u, p.grad) for u, p in zip(g_a, params))
    assert draw_mix(dcfg.mix, dcfg.mix_alpha, 4, 16, np.random.default_rng(0)) is None
