"""RKD distance and angle terms, by hand on three 2-D embeddings."""

from __future__ import annotations

import math

import pytest
import torch

from models.losses.rkd import RKDLoss, pool_embedding

STUDENT = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]], dtype=torch.float64)  # 3-4-5 triangle
TEACHER = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)  # right isosceles


def test_distance_term_by_hand():
    out = RKDLoss(dist_weight=1.0, angle_weight=0.0)(STUDENT, TEACHER)
    assert set(out) == {"rkd_dist"}
    s = [3 / 4, 4 / 4, 5 / 4]  # distances 3, 4, 5 over their mean 4
    m = (2 + math.sqrt(2)) / 3  # teacher distances 1, 1, √2 and their mean
    t = [1 / m, 1 / m, math.sqrt(2) / m]
    expected = sum((a - b) ** 2 for a, b in zip(s, t)) / 9  # SmoothL1 d²/2, each pair twice, mean over 3×3
    assert out["rkd_dist"].item() == pytest.approx(expected, abs=1e-12)


def test_angle_term_by_hand():
    out = RKDLoss(dist_weight=0.0, angle_weight=1.0)(STUDENT, TEACHER)
    # Per anchor i, entries [i, j, k] with j, k ≠ i: 1 on j = k, cos(angle at i) on j ≠ k (twice); the rest 0.
    # Student angles: right angle at a (cos 0), cos 9/15 = 0.6 at b, cos 16/20 = 0.8 at c.
    # Teacher: 0 at a, 1/√2 at b and at c. Only the off-diagonal cosines differ.
    r = 1 / math.sqrt(2)
    expected = 2 * 0.5 * ((0.6 - r) ** 2 + (0.8 - r) ** 2) / 27
    assert out["rkd_angle"].item() == pytest.approx(expected, abs=1e-12)


def test_default_weights_and_zero_when_equal():
    out = RKDLoss()(STUDENT, TEACHER)
    alone_d = RKDLoss(1.0, 0.0)(STUDENT, TEACHER)["rkd_dist"]
    alone_a = RKDLoss(0.0, 1.0)(STUDENT, TEACHER)["rkd_angle"]
    assert out["rkd_dist"].item() == pytest.approx(25 * alone_d.item())
    assert out["rkd_angle"].item() == pytest.approx(50 * alone_a.item())
    same = RKDLoss()(2 * STUDENT, STUDENT)  # relations are scale free
    assert same["rkd_dist"].item() == pytest.approx(0.0, abs=1e-12)
    assert same["rkd_angle"].item() == pytest.approx(0.0, abs=1e-12)


def test_pool_embedding_averages_positions_and_persons():
    f = torch.arange(2 * 2 * 3 * 1, dtype=torch.float64).view(2, 2, 3, 1)  # N·M = 2 rows (1 sample, M = 2)
    e = pool_embedding(f, persons=2)
    assert e.shape == (1, 2)
    assert torch.allclose(e, f.mean(dim=(2, 3)).mean(0, keepdim=True))
