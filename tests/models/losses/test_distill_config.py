"""DistillConfig validation and the per-method builder."""

from __future__ import annotations

import pytest
import torch

from models.losses.distill import DistillConfig, build_distill_losses

EXPECTED = {"none": set(), "kd": {"kd"}, "fitnet": {"fitnet"}, "rkd": {"rkd_dist", "rkd_angle"}, "at": {"at"},
            "skd": {"kd", "node", "edge"}, "skd-authors": {"kd", "node", "edge"}, "dkd": {"dkd"}}


@pytest.mark.parametrize("method", sorted(EXPECTED))
def test_builder_terms_per_method(method):
    torch.manual_seed(0)
    losses = build_distill_losses(DistillConfig(method=method), channels_s=4, channels_t=8)
    n, m = 3, 2
    z_s, z_t = torch.randn(n, 5, requires_grad=True), torch.randn(n, 5)
    f_s, f_t = torch.randn(n * m, 4, 3, 5, requires_grad=True), torch.randn(n * m, 8, 3, 5)
    out = losses(z_s, f_s, z_t, f_t, persons=m)
    assert set(out) == EXPECTED[method]
    for v in out.values():
        assert v.dim() == 0 and torch.isfinite(v)
    has_adapter = method in ("fitnet", "skd", "skd-authors")
    assert (len(list(losses.parameters())) > 0) == has_adapter


def test_skd_without_kd_weight():
    out = build_distill_losses(DistillConfig(kd_weight=0.0), 4, 4)(
        torch.randn(2, 3), torch.randn(2, 4, 2, 3), torch.randn(2, 3), torch.randn(2, 4, 2, 3))
    assert set(out) == {"node", "edge"}


def test_invalid_config():
    with pytest.raises(ValueError, match="unknown distillation method"):
        DistillConfig(method="foo")
    with pytest.raises(ValueError, match="gradient revision"):
        DistillConfig(grad_revision="sometimes")
    with pytest.raises(ValueError, match="temperature"):
        DistillConfig(tau=0)
