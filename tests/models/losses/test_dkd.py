"""Decoupled KD: a hand-computed value, the TCKD/NCKD split, the label vs teacher-argmax target."""

from __future__ import annotations

import math

import pytest
import torch

from models.losses.dkd import DKDLoss


def _hand(z_s: list[float], z_t: list[float], target: int, alpha: float, beta: float) -> float:
    ps = [math.exp(v) / sum(math.exp(u) for u in z_s) for v in z_s]
    pt = [math.exp(v) / sum(math.exp(u) for u in z_t) for v in z_t]
    bs, bt = (ps[target], 1 - ps[target]), (pt[target], 1 - pt[target])
    tckd = sum(b * math.log(b / a) for a, b in zip(bs, bt))
    others = [j for j in range(len(z_s)) if j != target]
    ns = [ps[j] / (1 - ps[target]) for j in others]
    nt = [pt[j] / (1 - pt[target]) for j in others]
    nckd = sum(b * math.log(b / a) for a, b in zip(ns, nt))
    return alpha * tckd + beta * nckd


def test_hand_value_tau_one():
    # Student uniform over 3 classes; teacher softmax(ln 4, ln 2, 0) = (4/7, 2/7, 1/7); target class 0.
    z_s = torch.zeros(1, 3, dtype=torch.float64)
    z_t = torch.tensor([[math.log(4), math.log(2), 0.0]], dtype=torch.float64)
    # By hand: TCKD = 4/7 ln((4/7)/(1/3)) + 3/7 ln((3/7)/(2/3)); NCKD = 2/3 ln((2/3)/(1/2)) + 1/3 ln((1/3)/(1/2)).
    tckd = 4 / 7 * math.log(12 / 7) + 3 / 7 * math.log(9 / 14)
    nckd = 2 / 3 * math.log(4 / 3) + 1 / 3 * math.log(2 / 3)
    got = DKDLoss(alpha=1.0, beta=8.0, tau=1.0)(z_s, z_t).item()
    assert got == pytest.approx(tckd + 8 * nckd, abs=1e-12)
    assert got == pytest.approx(_hand([0, 0, 0], [math.log(4), math.log(2), 0], 0, 1, 8), abs=1e-12)


def test_tau_and_weight_and_label_target():
    z_s = torch.tensor([[1.0, -0.5, 0.3, 2.0]], dtype=torch.float64)
    z_t = torch.tensor([[3.0, 0.0, -1.0, 0.5]], dtype=torch.float64)
    tau = 4.0
    hand = _hand([v / tau for v in z_s[0].tolist()], [v / tau for v in z_t[0].tolist()], 3, 1.0, 2.0)
    # Target from the label (3), not the teacher's argmax (0): a different split, a different value.
    got = DKDLoss(alpha=1.0, beta=2.0, tau=tau, weight=0.5)(z_s, z_t, torch.tensor([3])).item()
    assert got == pytest.approx(0.5 * tau**2 * hand, abs=1e-10)
    by_argmax = DKDLoss(alpha=1.0, beta=2.0, tau=tau, weight=0.5)(z_s, z_t).item()
    hand0 = _hand([v / tau for v in z_s[0].tolist()], [v / tau for v in z_t[0].tolist()], 0, 1.0, 2.0)
    assert by_argmax == pytest.approx(0.5 * tau**2 * hand0, abs=1e-10)
    assert abs(got - by_argmax) > 1e-3
    # Label -1 (unlabeled) falls back to the teacher's argmax.
    assert DKDLoss(1.0, 2.0, tau, 0.5)(z_s, z_t, torch.tensor([-1])).item() == pytest.approx(by_argmax, abs=1e-12)


def test_zero_for_equal_logits_and_gradient_reaches_student():
    z = torch.randn(6, 5, dtype=torch.float64)
    assert DKDLoss()(z, z).item() == pytest.approx(0.0, abs=1e-12)
    z_s = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    DKDLoss()(z_s, z).backward()
    assert z_s.grad is not None and torch.isfinite(z_s.grad).all() and z_s.grad.abs().sum() > 0


def test_dkd_method_defaults():
    from models.losses.distill import DistillConfig, build_distill_losses

    cfg = DistillConfig(method="dkd")
    assert (cfg.tau, cfg.dkd_alpha, cfg.dkd_beta, cfg.grad_revision) == (4.0, 1.0, 8.0, "none")
    out = build_distill_losses(cfg, 4, 8)(torch.randn(3, 5), torch.randn(3, 4, 2, 5), torch.randn(3, 5),
                                          torch.randn(3, 8, 2, 5))
    assert set(out) == {"dkd"} and out["dkd"].item() > 0
    with pytest.raises(ValueError, match="dkd_alpha"):
        DistillConfig(method="dkd", dkd_beta=-1.0)
