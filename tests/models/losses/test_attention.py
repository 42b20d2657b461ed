"""Attention transfer on the spatio-temporal map, by hand."""

from __future__ import annotations

import math

import pytest
import torch

from models.losses.attention import AttentionLoss, attention_map


def test_hand_value():
    # 1 sample, 2 channels, T'=1, V=2. Student channels (1, 0) and (1, 0): map (1, 0) → normalised (1, 0).
    f_s = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64).view(1, 2, 1, 2)
    # Teacher: all ones → map (1, 1) → (1/√2, 1/√2). Channel counts may differ: give it 3.
    f_t = torch.ones(1, 3, 1, 2, dtype=torch.float64)
    r = 1 / math.sqrt(2)
    expected = ((1 - r) ** 2 + r**2) / 2  # = 1 − 1/√2
    assert AttentionLoss(weight=1.0)(f_s, f_t).item() == pytest.approx(expected, abs=1e-12)
    assert AttentionLoss()(f_s, f_t).item() == pytest.approx(1000 * expected, abs=1e-9)


def test_map_is_mean_of_squares_normalised():
    f = torch.tensor([[3.0, 0.0], [1.0, 2.0]], dtype=torch.float64).view(1, 2, 1, 2)
    q = torch.tensor([(9 + 1) / 2, (0 + 4) / 2], dtype=torch.float64)
    assert torch.allclose(attention_map(f)[0], q / q.norm())


def test_zero_when_equal():
    f = torch.randn(2, 4, 3, 5)
    assert AttentionLoss()(f, 2 * f).item() == pytest.approx(0.0, abs=1e-6)
