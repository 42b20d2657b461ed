"""Cross-clip per-joint relations: cosine matrices per joint, zero when they agree, teacher gets no gradient."""

from __future__ import annotations

import pytest
import torch

from models.losses.cross_clip import CrossClipJointLoss, joint_relations
from models.losses.distill import DistillConfig, build_distill_losses


def test_relations_shape_and_values():
    f = torch.zeros(3, 2, 4, 5)
    f[0, 0] = 1.0  # clip 0: direction (1, 0) at every joint
    f[1, 1] = 2.0  # clip 1: (0, 1)
    f[2, 0] = -3.0  # clip 2: (-1, 0)
    r = joint_relations(f)
    assert r.shape == (5, 3, 3)
    assert torch.allclose(r[:, 0, 1], torch.zeros(5), atol=1e-6)
    assert torch.allclose(r[:, 0, 2], -torch.ones(5), atol=1e-6)
    assert torch.allclose(r[:, 1, 1], torch.ones(5), atol=1e-6)
    # Two persons per clip are averaged first.
    assert joint_relations(torch.randn(6, 2, 4, 5), persons=2).shape == (5, 3, 3)
    with pytest.raises(ValueError):
        joint_relations(torch.randn(5, 2, 4, 5), persons=2)


def test_loss_zero_for_rescaled_teacher_and_gradient_to_student_only():
    torch.manual_seed(0)
    f_t = torch.randn(4, 8, 3, 5)
    loss = CrossClipJointLoss(2.0)
    assert loss(3.0 * f_t, f_t).item() == pytest.approx(0.0, abs=1e-7)  # cosine: scale free
    f_s = torch.randn(4, 6, 3, 5, requires_grad=True)  # other channel count: no adapter needed
    t = f_t.clone().requires_grad_()
    out = loss(f_s, t)
    assert out.item() > 0
    out.backward()
    assert f_s.grad is not None and t.grad is None
    assert CrossClipJointLoss()(torch.randn(1, 6, 3, 5), torch.randn(1, 8, 3, 5)).item() == 0.0


def test_skd_option_adds_the_term():
    cfg = DistillConfig(method="skd", xclip_weight=1.0, trel_weight=0.5, mid_edge_weight=0.0)
    losses = build_distill_losses(cfg, 6, 8)
    f_s, f_t = torch.randn(4, 6, 3, 5), torch.randn(4, 8, 3, 5)
    z = torch.randn(4, 3)
    terms = losses(z, f_s, z, f_t)
    assert {"xclip", "trel", "kd", "node", "edge"} <= set(terms)
    assert "xclip" not in build_distill_losses(DistillConfig(method="skd"), 6, 8)(z, f_s, z, f_t)
