"""Multi-block edge term: a hand-computed value on 3-node graphs, and the hooks that tap a real ST-GCN's blocks."""

from __future__ import annotations

import pytest
import torch

from models.contract.layouts import get_layout
from models.losses.multiblock import BlockTap, MultiBlockEdgeLoss, middle_blocks
from models.net.stgcn import STGCN, STGCNConfig


def _graph(values: list[float]) -> torch.Tensor:
    """One sample, 1 channel, 1 frame, len(values) nodes: `(1, 1, 1, V)`."""
    return torch.tensor(values, dtype=torch.float64).view(1, 1, 1, -1)


def test_hand_value():
    # Student nodes 0, 1, 3: distances 1, 3, 2 (mean of the 6 positive entries 2) → 0.5, 1.5, 1.
    # Teacher nodes 0, 1, 2: distances 1, 2, 1 (mean 4/3) → 0.75, 1.5, 0.75.
    # Differences: ±0.25 on 4 of the 9 entries → SmoothL1 = 4 · 0.5 · 0.25² / 9 = 0.125 / 9.
    # Second block: equal graphs → 0. Mean over blocks, times the weight 2: 2 · (0.125 / 9) / 2.
    s = [_graph([0, 1, 3]), _graph([0, 2, 5])]
    t = [_graph([0, 1, 2]), _graph([0, 2, 5])]
    assert MultiBlockEdgeLoss(weight=2.0)(s, t).item() == pytest.approx(0.125 / 9, abs=1e-12)


def test_channel_counts_may_differ_and_errors():
    s = [torch.randn(2, 4, 8, 5)]
    t = [torch.randn(2, 16, 8, 5)]
    assert MultiBlockEdgeLoss()(s, t).item() > 0
    with pytest.raises(ValueError):
        MultiBlockEdgeLoss()(s, [torch.randn(2, 16, 4, 5)])
    with pytest.raises(ValueError):
        MultiBlockEdgeLoss()(s, [])


def test_block_tap_on_stgcn_and_pooling():
    lay = get_layout("penn13")
    m = STGCN(STGCNConfig(in_channels=3, num_classes=4, layout=lay.to_dict(), width=0.125, max_persons=1))
    tap = BlockTap(m, (3, 6))
    m(torch.randn(2, 1, 32, lay.num_joints, 3))
    f3, f6 = tap.features()
    assert f3.shape[2] == 32 and f6.shape[2] == 16 and f3.shape[3] == lay.num_joints
    # Gradient flows from the tapped feature back into the model.
    loss = MultiBlockEdgeLoss(frames=8)([f3, f6], [f3.detach() * 2 + 1, f6.detach().flip(3)])
    loss.backward()
    assert m.blocks[0].parameters().__next__().grad is not None
    tap.remove()
    tap.outputs.clear()
    m(torch.randn(1, 1, 32, lay.num_joints, 3))
    with pytest.raises(RuntimeError):
        tap.features()


def test_middle_blocks_and_the_skd_recipes():
    from models.losses.distill import DistillConfig, build_distill_losses

    assert middle_blocks(10) == (3, 6) and middle_blocks(3) == (1,) and middle_blocks(1) == ()
    skd, authors = DistillConfig(method="skd"), DistillConfig(method="skd-authors")
    assert (skd.node_weight, skd.edge_weight, skd.kd_weight, skd.tau, skd.mid_edge_weight, skd.grad_revision) == \
        (0.1, 1.0, 1.0, 1.0, 1.0, "tail")
    assert (authors.node_weight, authors.mid_edge_weight, authors.grad_revision) == (1.0, 0.0, "global")
    assert build_distill_losses(skd, 4, 8).blocks(10) == (3, 6)
    assert build_distill_losses(authors, 4, 8).blocks(10) == ()
    with pytest.raises(ValueError, match="middle blocks"):
        DistillConfig(method="skd", grad_revision="global")
    f = [torch.randn(2, 4, 8, 5, requires_grad=True)]
    out = build_distill_losses(skd, 4, 8)(torch.randn(2, 3), torch.randn(2, 4, 2, 5), torch.randn(2, 3),
                                          torch.randn(2, 8, 2, 5), blocks_s=f, blocks_t=[torch.randn(2, 8, 8, 5)])
    assert set(out) == {"kd", "node", "edge", "mid_edge"}
