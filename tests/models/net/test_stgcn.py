"""ST-GCN: shapes for every layout (built-in and custom), 2D/3D, 1-2 persons; the graph conv's algebra; counts."""

from __future__ import annotations

import json

import pytest
import torch

from models.contract.layouts import BUILTIN, Layout, get_layout
from models.net.stgcn import STGCN, GraphConv, STGCNConfig, count_macs, count_params, stage_plan
from models.net.transforms import InputConfig, in_channels

CUSTOM = {"name": "stick5", "joints": ["hip", "chest", "head", "left_hand", "right_hand"],
          "edges": [[0, 1], [1, 2], [1, 3], [1, 4]], "center": 1}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny models gain nothing from threads, and on a shared 2-core machine OpenMP barriers stall.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _layouts() -> list[Layout]:
    return [*BUILTIN.values(), Layout.from_dict(CUSTOM)]


def small(layout: Layout, c_in: int, classes: int = 7, m: int = 2, **kw) -> STGCN:
    kw.setdefault("width", 0.125)
    return STGCN(STGCNConfig(in_channels=c_in, num_classes=classes, layout=layout.to_dict(), max_persons=m, **kw))


@pytest.mark.parametrize("layout", _layouts(), ids=lambda lay: lay.name)
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("persons", [1, 2])
def test_shapes_every_layout(layout: Layout, dims: int, persons: int) -> None:
    icfg = InputConfig(length=16, features=("joint", "bone"), max_persons=persons)
    c_in = in_channels(icfg, dims)
    assert c_in == 2 * dims + 1
    model = small(layout, c_in, m=persons).eval()
    x = torch.randn(3, persons, 16, layout.num_joints, c_in)
    with torch.no_grad():
        logits, feats = model(x, return_features=True)
        plain = model(x)
    assert logits.shape == (3, 7)
    assert torch.equal(logits, plain)
    # Two stride-2 stages: T' = T / 4; channels 256 x width in the last stage.
    assert feats.shape == (3 * persons, model.feature_channels, 4, layout.num_joints)
    assert model.feature_channels == 32
    assert torch.isfinite(logits).all()


def test_custom_layout_from_json_file(tmp_path) -> None:
    path = tmp_path / "stick.json"
    path.write_text(json.dumps(CUSTOM))
    layout = get_layout(str(path))
    model = small(layout, 3, classes=2, m=1)
    logits = model(torch.randn(2, 1, 12, 5, 3))
    assert logits.shape == (2, 2)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.edge_importance)


def test_fewer_persons_than_configured_are_padded() -> None:
    lay = get_layout("coco17")
    model = small(lay, 3, m=2).eval()
    x1 = torch.randn(2, 1, 8, 17, 3)
    x2 = torch.cat([x1, torch.zeros_like(x1)], dim=1)
    with torch.no_grad():
        assert torch.allclose(model(x1), model(x2), atol=1e-6)


def test_wrong_joint_or_person_count_is_refused() -> None:
    model = small(get_layout("penn13"), 3, m=1)
    with pytest.raises(ValueError, match="joints"):
        model(torch.randn(1, 1, 8, 17, 3))
    with pytest.raises(ValueError, match="persons"):
        model(torch.randn(1, 2, 8, 13, 3))


def test_stage_plan_matches_original_stgcn() -> None:
    plan = stage_plan(10, 64, 1.0)
    assert plan == [(64, 1)] * 4 + [(128, 2), (128, 1), (128, 1), (256, 2), (256, 1), (256, 1)]
    assert [c for c, _ in stage_plan(10, 64, 0.5)] == [32] * 4 + [64] * 3 + [128] * 3
    assert sum(s == 2 for _, s in stage_plan(4, 64, 1.0)) == 2
    assert len(stage_plan(1, 64, 1.0)) == 1


def test_graph_conv_equals_the_partitioned_sum() -> None:
    """y = sum_k W_k x A_k (the ST-GCN formula), computed here by one matmul and one 1x1 conv."""
    torch.manual_seed(0)
    g = GraphConv(5, 7, 3)
    x = torch.randn(2, 5, 6, 13).contiguous(memory_format=torch.channels_last)
    a = torch.rand(3, 13, 13)
    y = g(x, a)
    w = g.mix.weight.view(7, 3, 5)
    ref = sum(torch.einsum("oc,bctv,vw->botw", w[:, k], x, a[k]) for k in range(3)) + g.mix.bias.view(1, 7, 1, 1)
    assert torch.allclose(y, ref, atol=1e-5)
    assert y.is_contiguous(memory_format=torch.channels_last)


def test_edge_importance_and_layout_graph_are_used() -> None:
    lay = get_layout("penn13")
    model = small(lay, 3, m=1)
    assert model.A.shape == (3, 13, 13)
    assert "A" not in model.state_dict()  # rebuilt from the layout, not stored
    no_imp = small(lay, 3, m=1, edge_importance=False)
    assert no_imp.edge_importance is None
    assert count_params(model) - count_params(no_imp) == 10 * 3 * 13 * 13


def test_width_and_depth_shrink_the_model() -> None:
    lay = get_layout("ntu25")
    x = torch.randn(1, 1, 8, 25, 3)
    big = STGCN(STGCNConfig(3, 60, lay.to_dict(), max_persons=1))
    half = STGCN(STGCNConfig(3, 60, lay.to_dict(), width=0.5, max_persons=1))
    shallow = STGCN(STGCNConfig(3, 60, lay.to_dict(), depth=4, max_persons=1))
    p_big, p_half, p_shallow = count_params(big), count_params(half), count_params(shallow)
    assert 2.5e6 < p_big < 3.5e6  # the original ST-GCN has ~3.1 M parameters
    assert p_half < p_big / 3 and p_shallow < p_big
    m_big, m_half = count_macs(big, x), count_macs(half, x)
    assert 3 < m_big / m_half < 4.5  # MACs scale ~ width^2
    assert half.feature_channels == 128


def test_count_macs_of_a_graph_conv() -> None:
    g = GraphConv(4, 6, 3)

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.g = g

        def forward(self, x):
            return self.g(x, torch.ones(3, 5, 5))

    x = torch.randn(2, 4, 7, 5).contiguous(memory_format=torch.channels_last)
    # aggregation: (B*T) x (V*K) x V x C; mixing: B*T*V x (K*C) x C_out
    expected = 2 * 7 * (5 * 3) * 5 * 4 + 2 * 7 * 5 * (3 * 4) * 6
    assert count_macs(Wrap(), x) == expected


def test_train_mode_backward_and_dropout() -> None:
    model = small(get_layout("coco17"), 3, m=2, dropout=0.5, head_dropout=0.2)
    out = model(torch.randn(4, 2, 16, 17, 3))
    out.logsumexp(1).mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
