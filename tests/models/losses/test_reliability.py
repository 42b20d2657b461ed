"""Reliability-weighted node matching: the mask from the LQ window, hand-computed values, only missing joints count,
zero (finite) when nothing is missing, no gradient to the teacher, and skd's `rel` option from the config to the step
and the command line."""

from __future__ import annotations

import pytest
import torch

from models.losses.distill import DistillConfig, build_distill_losses
from models.losses.reliability import ReliabilityNodeLoss, missing_fraction, missing_joints
from models.training.student import distill_step
from pipeline.cli.distill import distill
from pipeline.stages.distilling import OPTIONS, make_request, parse_weights
from tests.support.nets import teacher_student


def test_missing_joints_reads_all_zero_channels():
    x = torch.ones(1, 1, 2, 3, 3)
    x[0, 0, 0, 0] = 0.0  # every channel 0: missing
    x[0, 0, 1, 1, :2] = 0.0  # on the centre but with a score: present
    assert missing_joints(x).tolist() == [[[[True, False, False], [False, False, False]]]]


def test_missing_fraction_pools_time_and_handles_persons():
    x = torch.ones(2, 2, 4, 2, 3)
    x[0, 0, :3, 0] = 0.0  # clip 0, person 0: joint 0 missing in frames 0-2
    x[0, 1] = 0.0  # clip 0, person 1: no joint in the window (padding): weight 0
    x[1] = 0.0  # clip 1: nobody at all: its first person is missing everywhere
    m = missing_fraction(x, persons=3, frames=2)  # the net pads to 3 persons; T = 4 → T' = 2
    assert m.shape == (6, 2, 2)
    want = torch.zeros(6, 2, 2)
    want[0, :, 0] = torch.tensor([1.0, 0.5])  # step 0 = frames 0-1 (both missing), step 1 = frames 2-3 (one)
    want[3] = 1.0
    assert torch.equal(m, want)
    with pytest.raises(ValueError):
        missing_fraction(x, persons=1, frames=2)


def test_loss_by_hand():
    f_t = torch.zeros(2, 2, 1, 2, dtype=torch.float64)
    f_s = torch.zeros(2, 2, 1, 2, dtype=torch.float64)
    f_s[0, :, 0, 0] = torch.tensor([1.0, 0.0])  # e = (1 + 0) / 2 = 0.5, m = 1
    f_s[0, :, 0, 1] = torch.tensor([5.0, 5.0])  # e = 25, present (m = 0): no weight
    f_s[1, :, 0, 0] = torch.tensor([0.0, 2.0])  # e = (0 + 4) / 2 = 2, m = 0.5
    f_s[1, :, 0, 1] = torch.tensor([3.0, 0.0])  # present
    missing = torch.tensor([[[1.0, 0.0]], [[0.5, 0.0]]], dtype=torch.float64)
    # 2 · (1·0.5 + 0.5·2) / (1 + 0.5) = 2
    assert ReliabilityNodeLoss(2.0)(f_s, f_t, missing).item() == pytest.approx(2.0, rel=1e-5)


def test_zero_and_finite_when_nothing_is_missing():
    f_s = torch.randn(4, 8, 3, 5, requires_grad=True)
    out = ReliabilityNodeLoss(1.0)(f_s, torch.randn(4, 8, 3, 5), torch.zeros(4, 3, 5))
    assert out.item() == 0.0 and torch.isfinite(out) and out.requires_grad
    full = missing_fraction(torch.randn(2, 2, 12, 5, 3), persons=2, frames=3)  # no zero anywhere
    assert not full.any()


def test_only_missing_joints_count_and_teacher_gets_no_gradient():
    torch.manual_seed(0)
    f_s, f_t = torch.randn(4, 8, 3, 5), torch.randn(4, 8, 3, 5)
    missing = torch.zeros(4, 3, 5)
    missing[0, 1, 2] = 1.0
    missing[3, :, 4] = 0.25
    loss = ReliabilityNodeLoss(1.0)
    base = loss(f_s, f_t, missing)
    assert base.item() > 0
    present = (missing == 0)[:, None].expand_as(f_s)
    moved_s = torch.where(present, f_s + 10 * torch.randn_like(f_s), f_s)
    moved_t = torch.where(present, f_t - 3.0, f_t)
    assert loss(moved_s, moved_t, missing).item() == pytest.approx(base.item(), rel=1e-6)
    s = f_s.clone().requires_grad_()
    t = f_t.clone().requires_grad_()
    loss(s, t, missing).backward()
    assert t.grad is None
    assert s.grad[present].abs().max() == 0 and s.grad[~present].abs().max() > 0
    with pytest.raises(ValueError):
        loss(torch.randn(4, 6, 3, 5), f_t, missing)  # adapt the student first


@pytest.mark.parametrize("method", ["skd", "skd-authors"])
def test_skd_option_adds_the_term(method):
    torch.manual_seed(0)
    cfg = DistillConfig(method=method, rel_weight=1.5, mid_edge_weight=0.0)
    losses = build_distill_losses(cfg, 6, 8)
    f_s, f_t, z = torch.randn(4, 6, 3, 5), torch.randn(4, 8, 3, 5), torch.randn(2, 3)
    x = torch.randn(2, 1, 12, 5, 3)  # the window has 1 person, the net pads to 2 (rows N·M = 4)
    x[0, 0, :6, 1] = 0.0
    terms = losses(z, f_s, z, f_t, persons=2, x_s=x)
    assert {"rel", "kd", "node", "edge"} <= set(terms)
    want = 1.5 * ReliabilityNodeLoss()(losses.graph.adapter(f_s), f_t, missing_fraction(x, 2, 3))
    assert terms["rel"].item() == pytest.approx(want.item(), rel=1e-6) and terms["rel"].item() > 0
    with pytest.raises(ValueError):
        losses(z, f_s, z, f_t, persons=2)  # the term needs the window
    off = build_distill_losses(DistillConfig(method=method), 6, 8)
    assert DistillConfig(method=method).rel_weight == 0.0
    assert "rel" not in off(z, f_s, z, f_t, persons=2, x_s=x) and "rel" not in off(z, f_s, z, f_t, persons=2)



@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_distill_step_reads_the_lq_window(weight):
    t, s = teacher_student(2)
    dcfg = DistillConfig(method="skd", rel_weight=weight, mid_edge_weight=0.0, grad_revision="none")
    losses = build_distill_losses(dcfg, s.feature_channels, t.feature_channels)
    params = [p for p in list(s.parameters()) + list(losses.parameters()) if p.requires_grad]
    torch.manual_seed(1)
    x_hq = torch.randn(3, 1, 16, 13, 3)
    x_lq = x_hq + 0.1 * torch.randn_like(x_hq)
    x_lq[0, 0, 2:9, 4] = 0.0  # joints the LQ estimator missed
    x_lq[2, 0, :, 10] = 0.0
    y = torch.tensor([0, 1, 2])
    terms, _ = distill_step(t, s, losses, x_hq, x_lq, y, dcfg, params, None)
    if weight == 0:
        assert "rel" not in terms
        return
    with torch.no_grad():
        _, f_s = s(x_lq, return_features=True)
        _, f_t = t(x_hq, return_features=True)
        want = ReliabilityNodeLoss()(losses.graph.adapter(f_s), f_t, missing_fraction(x_lq, 2, f_s.shape[2]))
    assert terms["rel"].item() == pytest.approx(want.item(), rel=1e-5) and terms["rel"].item() > 0
    # Nothing missing in the window: the term is there, zero.
    s.zero_grad()
    terms, _ = distill_step(t, s, losses, x_hq, x_hq + 0.1, y, dcfg, params, None)
    assert terms["rel"].item() == 0.0


def test_command_line_weight():
    assert parse_weights("rel=1") == {"rel_weight": 1.0}
    ctx = distill.make_context("distill", ["--hq", "hq.pkl", "--out", "run", "--method", "skd",
                                           "--weights", "rel=1"])
    req = make_request(**{k: v for k, v in ctx.params.items() if k in OPTIONS})
    assert req.distill.rel_weight == 1.0 and req.distill.method == "skd"
    assert make_request(method="skd-authors", weights="rel=0.5,trel=1").distill.rel_weight == 0.5
