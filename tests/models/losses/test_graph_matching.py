"""Graph matching loss: hand-computed node and edge values on a 1-sample, 2-channel, 3-node feature."""

from __future__ import annotations

import math

import pytest
import torch

from models.losses.graph_matching import GraphMatchingLoss, edge_matrices, pairwise_node_distances


def feature(points: list[tuple[float, float]]) -> torch.Tensor:
    """Nodes as 2-D points → a `(1, C=2, T'=1, V)` feature (channel 0 = x, channel 1 = y)."""
    return torch.tensor(points, dtype=torch.float64).t().reshape(1, 2, 1, len(points))


# Student: a 3-4-5 right triangle. Teacher: the unit right isosceles triangle.
STUDENT = [(0.0, 0.0), (3.0, 0.0), (0.0, 4.0)]
TEACHER = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)]


def identity_loss(**kw) -> GraphMatchingLoss:
    return GraphMatchingLoss(2, 2, adapter_init="identity", **kw).double()


def test_node_term_by_hand():
    out = identity_loss()(feature(STUDENT), feature(TEACHER))
    # Differences per element: x: (0, 2, 0), y: (0, 0, 3) → MSE = (4 + 9) / 6.
    assert out["node"].item() == pytest.approx(13 / 6, abs=1e-12)


def test_edge_term_by_hand():
    out = identity_loss()(feature(STUDENT), feature(TEACHER))
    # Student distances ab=3, ac=4, bc=5; the 6 off-diagonal entries average 4 → 0.75, 1.0, 1.25.
    s = [3 / 4, 4 / 4, 5 / 4]
    # Teacher distances 1, 1, √2; mean of positives m = (2 + √2) / 3.
    m = (2 + math.sqrt(2)) / 3
    t = [1 / m, 1 / m, math.sqrt(2) / m]
    # All |differences| < 1 → SmoothL1 = d²/2; each pair appears twice, the 3 diagonal zeros count in the mean of 9.
    expected = sum(2 * 0.5 * (a - b) ** 2 for a, b in zip(s, t)) / 9
    assert out["edge"].item() == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.0034813, abs=1e-6)


def test_distance_matrix_by_hand():
    d = pairwise_node_distances(feature(STUDENT))[0]
    assert torch.allclose(d, torch.tensor([[0, 3, 4], [3, 0, 5], [4, 5, 0]], dtype=torch.float64))
    e = edge_matrices(feature(STUDENT))[0]
    assert torch.allclose(e, d / 4)


def test_zero_when_equal():
    torch.manual_seed(0)
    f = torch.randn(3, 6, 4, 5, dtype=torch.float64)
    loss = GraphMatchingLoss(6, 6, adapter_init="identity").double()
    out = loss(f.clone().requires_grad_(), f)
    assert out["node"].item() == 0.0
    assert out["edge"].item() == pytest.approx(0.0, abs=1e-12)


def test_weights_and_zero_weight_skipped():
    base = identity_loss()(feature(STUDENT), feature(TEACHER))
    out = identity_loss(node_weight=0.5, edge_weight=3.0)(feature(STUDENT), feature(TEACHER))
    assert out["node"].item() == pytest.approx(0.5 * base["node"].item())
    assert out["edge"].item() == pytest.approx(3.0 * base["edge"].item())
    assert set(identity_loss(edge_weight=0.0)(feature(STUDENT), feature(TEACHER))) == {"node"}


def test_adapter_maps_narrow_student_and_node_term_is_mse_of_adapted():
    torch.manual_seed(1)
    loss = GraphMatchingLoss(4, 8).double()
    f_s = torch.randn(2, 4, 3, 5, dtype=torch.float64, requires_grad=True)
    f_t = torch.randn(2, 8, 3, 5, dtype=torch.float64, requires_grad=True)
    out = loss(f_s, f_t)
    w, b = loss.adapter.weight[:, :, 0, 0], loss.adapter.bias
    adapted = torch.einsum("oc,nctv->notv", w, f_s) + b[None, :, None, None]
    assert out["node"].item() == pytest.approx(((adapted - f_t) ** 2).mean().item(), rel=1e-12)
    (out["node"] + out["edge"]).backward()
    assert f_t.grad is None  # the teacher side takes no gradient
    assert f_s.grad is not None and loss.adapter.weight.grad is not None


def test_edge_on_raw_student_feature_leaves_adapter_out():
    torch.manual_seed(2)
    f_s = torch.randn(2, 4, 3, 5, dtype=torch.float64, requires_grad=True)
    f_t = torch.randn(2, 4, 3, 5, dtype=torch.float64)
    raw = GraphMatchingLoss(4, 4, node_weight=0.0, edge_on_adapted=False).double()
    raw(f_s, f_t)["edge"].backward()
    assert raw.adapter.weight.grad is None and f_s.grad is not None
    # On the raw feature, the edge term is the edge loss of the features as they are.
    expected = torch.nn.functional.smooth_l1_loss(edge_matrices(f_s), edge_matrices(f_t))
    assert raw(f_s, f_t)["edge"].item() == pytest.approx(expected.item(), rel=1e-12)


def test_time_stride_pools_before_the_edge_term():
    torch.manual_seed(3)
    f_s = torch.randn(2, 4, 8, 5, dtype=torch.float64)
    f_t = torch.randn(2, 4, 8, 5, dtype=torch.float64)
    pooled = GraphMatchingLoss(4, 4, adapter_init="identity", edge_time_stride=2).double()(f_s, f_t)["edge"]
    pool = torch.nn.functional.avg_pool2d
    expected = identity_loss_4()(pool(f_s, (2, 1)), pool(f_t, (2, 1)))["edge"]
    assert pooled.item() == pytest.approx(expected.item(), rel=1e-12)


def identity_loss_4() -> GraphMatchingLoss:
    return GraphMatchingLoss(4, 4, adapter_init="identity").double()


def test_coincident_nodes_give_finite_gradient():
    f_s = torch.zeros(1, 2, 1, 3, dtype=torch.float64, requires_grad=True)
    out = identity_loss()(f_s, feature(TEACHER))
    out["edge"].backward()
    assert torch.isfinite(f_s.grad).all()


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="T', V"):
        identity_loss()(feature(STUDENT), torch.zeros(1, 2, 2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="identity adapter"):
        GraphMatchingLoss(4, 8, adapter_init="identity")
