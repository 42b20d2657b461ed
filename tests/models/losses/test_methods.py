"""METHODS is the one list of distillation methods: the config, the --weights keys and the CLI follow it."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from models.losses import METHODS
from models.losses.distill import WEIGHT_FIELDS, DistillConfig, build_distill_losses
from pipeline.cli.distill import distill
from pipeline.stages.distilling import parse_weights


def test_every_method_option_is_a_config_field_with_its_default():
    fields = {f.name for f in dataclasses.fields(DistillConfig)}
    for name, m in METHODS.items():
        cfg = DistillConfig(method=name)
        for opt, default in m.options.items():
            assert opt in fields, (name, opt)
            assert getattr(cfg, opt) == default, (name, opt)  # each method's config has ITS defaults
        assert cfg.grad_revision == m.revision
    # An option a method lacks still gets a value (another method's default), never None.
    assert DistillConfig(method="none").node_weight is not None


def test_weights_keys_are_the_weight_options():
    assert WEIGHT_FIELDS["ce"] == "ce_weight"
    expected = {o for m in METHODS.values() for o in m.options if o.endswith("_weight")}
    assert set(WEIGHT_FIELDS.values()) == expected | {"ce_weight"}
    assert parse_weights("rkd_dist=3,node=0.5") == {"rkd_dist_weight": 3.0, "node_weight": 0.5}


def test_cli_choices_are_the_dict():
    opt = next(p for p in distill.params if p.name == "method")
    assert list(opt.type.choices) == list(METHODS)


@pytest.mark.parametrize("name", list(METHODS))
def test_each_method_builds_its_terms(name):
    losses = build_distill_losses(DistillConfig(method=name), 4, 8)
    out = losses(torch.randn(4, 3), torch.randn(4, 4, 2, 5), torch.randn(4, 3), torch.randn(4, 8, 2, 5))
    assert (out == {}) == (name == "none")
    assert all(v.dim() == 0 for v in out.values())
