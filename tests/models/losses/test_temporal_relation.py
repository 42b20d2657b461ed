"""Per-joint temporal relations: frame-by-frame cosine matrices, zero loss when they agree, teacher no gradient."""

from __future__ import annotations

import pytest
import torch

from models.losses.temporal_relation import TemporalRelationLoss, temporal_relations


def test_relations_shape_and_values():
    f = torch.zeros(2, 2, 3, 4)
    f[:, 0, 0] = 1.0  # frame 0: (1, 0)
    f[:, 1, 1] = 1.0  # frame 1: (0, 1)
    f[:, 0, 2] = -1.0  # frame 2: (-1, 0)
    s = temporal_relations(f)
    assert s.shape == (2, 4, 3, 3)
    assert torch.allclose(s[..., 0, 1], torch.zeros(2, 4), atol=1e-6)
    assert torch.allclose(s[..., 0, 2], -torch.ones(2, 4), atol=1e-6)
    assert torch.allclose(s[..., 2, 2], torch.ones(2, 4), atol=1e-6)


def test_loss_matches_only_temporal_structure():
    torch.manual_seed(0)
    f_t = torch.randn(3, 8, 4, 5)
    loss = TemporalRelationLoss(1.0)
    assert loss(2.0 * f_t, f_t).item() == pytest.approx(0.0, abs=1e-7)
    f_s = torch.randn(3, 6, 4, 5, requires_grad=True)
    t = f_t.clone().requires_grad_()
    out = loss(f_s, t)
    assert out.item() > 0
    out.backward()
    assert f_s.grad is not None and t.grad is None
    with pytest.raises(ValueError):
        loss(torch.randn(3, 6, 2, 5), f_t)
