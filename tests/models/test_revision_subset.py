"""The "tail" revision (the global one with its test on a parameter subset): with every parameter it is the exact
global revision; a tail subset still gives a finite update on every parameter, and differs from the global one when
the subset's test decides otherwise; unlabeled clips (label -1) contribute no CE term."""

from __future__ import annotations

import pytest
import torch

from models.contract.layouts import get_layout
from models.grad_revision import revise_and_backward
from models.losses.distill import DistillConfig, build_distill_losses
from models.net.stgcn import STGCN, STGCNConfig
from models.revision_subset import tail_parameters
from models.training.student import distill_step


def _nets(seed: int = 0) -> tuple[STGCN, STGCN]:
    torch.manual_seed(seed)
    lay = get_layout("penn13").to_dict()
    t = STGCN(STGCNConfig(in_channels=3, num_classes=5, layout=lay, width=0.25, depth=4, max_persons=1)).double()
    s = STGCN(STGCNConfig(in_channels=3, num_classes=5, layout=lay, width=0.125, depth=4, max_persons=1)).double()
    return t.eval(), s


def _terms(t: STGCN, s: STGCN, losses, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        z_t, f_t = t(x, return_features=True)
    z_s, f_s = s(x, return_features=True)
    out = {"ce": torch.nn.functional.cross_entropy(z_s, y)}
    out.update(losses(z_s, f_s, z_t, f_t))
    # A term that fights CE by construction, so every step has a conflict to project.
    out["anti"] = -0.5 * out["ce"] + 0.1 * out["node"]
    return out


def test_all_parameters_equals_exact_global_revision():
    t, s = _nets()
    losses = build_distill_losses(DistillConfig(method="skd-authors"), s.feature_channels, t.feature_channels).double()
    params = [p for p in list(s.parameters()) + list(losses.parameters()) if p.requires_grad]
    x = torch.randn(6, 1, 16, 13, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    conflicts = 0
    for trial in range(3):
        torch.manual_seed(100 + trial)
        for p in losses.parameters():
            p.data.normal_(0, 0.3)
        s.zero_grad()
        losses.zero_grad()
        st = revise_and_backward(_terms(t, s, losses, x, y), "ce", params, mode="global", impl="naive")
        exact = [p.grad.clone() for p in params]
        s.zero_grad()
        losses.zero_grad()
        sub = revise_and_backward(_terms(t, s, losses, x, y), "ce", params, mode="tail", subset=params)
        for a, b in zip(exact, [p.grad for p in params]):
            assert torch.allclose(a, b, atol=1e-10, rtol=1e-8)
        assert st.keys() == sub.keys()
        assert all(sub[k] == pytest.approx(st[k], abs=1e-9) for k in st)
        conflicts += sum(v for k, v in sub.items() if k.startswith("conflict/"))
    assert conflicts > 0  # the projection really ran (otherwise the equality would be trivial)


def test_tail_subset_fills_every_parameter():
    t, s = _nets(1)
    losses = build_distill_losses(DistillConfig(method="skd-authors"), s.feature_channels, t.feature_channels).double()
    params = [p for p in list(s.parameters()) + list(losses.parameters()) if p.requires_grad]
    tail = tail_parameters(s, losses, 1)
    assert 0 < len(tail) < len(params)
    assert all(any(p is q for q in params) for p in tail)
    x = torch.randn(4, 1, 16, 13, 3, dtype=torch.float64)
    revise_and_backward(_terms(t, s, losses, x, torch.tensor([0, 1, 2, 3])), "ce", params, mode="tail", subset=tail)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in s.blocks[0].parameters())


def test_tail_decides_on_its_subset_only():
    # g_ce = (1, 1) and g_a = (-2, 1) conflict over both parameters (dot -1), but agree on y alone (dot 1): the
    # tail test on {y} leaves g_a whole, the global one projects it (see test_grad_revision's worked example).
    x = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    y = torch.tensor(-0.7, dtype=torch.float64, requires_grad=True)
    stats = revise_and_backward({"ce": x + y, "a": -2 * x + y}, "ce", [x, y], mode="tail", subset=[y])
    assert (x.grad.item(), y.grad.item()) == pytest.approx((-1.0, 2.0), abs=1e-12)  # (1,1) + (-2,1)
    assert stats["conflict/a"] == 0.0
    x.grad = y.grad = None
    stats = revise_and_backward({"ce": x + y, "a": -2 * x + y}, "ce", [x, y], mode="tail", subset=[x, y])
    assert (x.grad.item(), y.grad.item()) == pytest.approx((-0.5, 2.5), abs=1e-12)  # the global revision's
    assert stats["conflict/a"] == 1.0


def test_tail_needs_its_subset():
    x = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="subset"):
        revise_and_backward({"ce": 2 * x, "a": -x}, "ce", [x], mode="tail")
    with pytest.raises(ValueError, match="subset"):
        revise_and_backward({"ce": 2 * x, "a": -x}, "ce", [x], mode="global", subset=[x])


def test_unlabeled_clips_add_no_ce():
    t, s = _nets(2)
    t, s = t.float(), s.float()
    dcfg = DistillConfig(method="skd-authors", grad_revision="none")
    losses = build_distill_losses(dcfg, s.feature_channels, t.feature_channels)
    params = [p for p in list(s.parameters()) + list(losses.parameters()) if p.requires_grad]
    x = torch.randn(4, 1, 16, 13, 3)
    y_mixed = torch.tensor([1, -1, 3, -1])
    terms, _ = distill_step(t, s, losses, x, x, y_mixed, dcfg, params, None)
    with torch.no_grad():
        z_s = s(x)  # train mode without dropout: the same logits
    expected = torch.nn.functional.cross_entropy(z_s[[0, 2]], torch.tensor([1, 3]))
    assert terms["ce"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert set(terms) >= {"kd", "node", "edge"}
    # All unlabeled: CE is exactly 0 and the classifier gets only the KD term's gradient.
    s.zero_grad()
    terms, _ = distill_step(t, s, losses, x, x, torch.full((4,), -1), dcfg, params, None)
    assert terms["ce"].item() == 0.0
    g_all = s.fc.weight.grad.clone()
    s.zero_grad()
    with torch.no_grad():
        z_t, f_t = t(x, return_features=True)
    z_s, f_s = s(x, return_features=True)
    torch.stack(list(losses(z_s, f_s, z_t, f_t).values())).sum().backward()
    assert torch.allclose(g_all, s.fc.weight.grad, atol=1e-6)
