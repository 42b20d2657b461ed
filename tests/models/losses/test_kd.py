"""Logit KD: hand values, zero for equal logits, τ² scaling, batchmean."""

from __future__ import annotations

import math

import pytest
import torch

from models.losses.kd import KDLoss


def test_hand_value():
    # Student uniform (1/2, 1/2); teacher softmax(ln 3, 0) = (3/4, 1/4).
    z_s = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    z_t = torch.tensor([[math.log(3), 0.0]], dtype=torch.float64)
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert KDLoss(tau=1.0)(z_s, z_t).item() == pytest.approx(expected, abs=1e-12)


def test_zero_for_equal_logits():
    z = torch.randn(5, 7, dtype=torch.float64)
    assert KDLoss(tau=3.0)(z, z).item() == pytest.approx(0.0, abs=1e-12)


def test_tau_squared_scaling_and_weight():
    z_s = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    z_t = torch.tensor([[math.log(3), 0.0]], dtype=torch.float64)
    kl = KDLoss(tau=1.0)(z_s, z_t).item()
    # Doubling the logits at τ=2 gives the same distributions, so the loss is exactly τ² = 4 times the KL.
    assert KDLoss(tau=2.0)(2 * z_s, 2 * z_t).item() == pytest.approx(4 * kl, abs=1e-12)
    assert KDLoss(tau=2.0, weight=0.5)(2 * z_s, 2 * z_t).item() == pytest.approx(2 * kl, abs=1e-12)


def test_batchmean():
    z_s = torch.tensor([[0.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    z_t = torch.tensor([[math.log(3), 0.0], [0.0, 0.0]], dtype=torch.float64)
    expected = (0.75 * math.log(1.5) + 0.25 * math.log(0.5) + 0.0) / 2
    assert KDLoss()(z_s, z_t).item() == pytest.approx(expected, abs=1e-12)


def test_teacher_gets_no_gradient():
    z_s = torch.randn(3, 4, requires_grad=True)
    z_t = torch.randn(3, 4, requires_grad=True)
    KDLoss(tau=2.0)(z_s, z_t).backward()
    assert z_t.grad is None and z_s.grad is not None
