"""Structural knowledge distillation, as the authors' code does it: graph matching (node + edge) plus logit KD
(all weights 1, τ=1)."""

from __future__ import annotations

from torch import Tensor, nn

from models.losses.graph_matching import GraphMatchingLoss
from models.losses.kd import KDLoss, check_tau, kd_terms
from models.losses.method import LossMethod


def _build(cfg, channels_s: int, channels_t: int) -> dict[str, nn.Module]:
    mods: dict[str, nn.Module] = {"kd": KDLoss(cfg.tau, cfg.kd_weight)} if cfg.kd_weight != 0 else {}
    mods["graph"] = GraphMatchingLoss(channels_s, channels_t, cfg.node_weight, cfg.edge_weight, cfg.edge_on_adapted,
                                      cfg.edge_time_stride, cfg.adapter_init)
    return mods


def _terms(m: dict[str, nn.Module], z_s: Tensor, f_s: Tensor, z_t: Tensor, f_t: Tensor,
           persons: int) -> dict[str, Tensor]:
    return {**kd_terms(m, z_s, f_s, z_t, f_t, persons), **m["graph"](f_s, f_t)}


def _check(cfg) -> None:
    check_tau(cfg)
    if cfg.edge_time_stride < 1:
        raise ValueError(f"edge_time_stride must be >= 1, got {cfg.edge_time_stride}")


METHOD = LossMethod(help="graph matching (node+edge) + logits", build=_build, terms=_terms, check=_check,
                    options={"tau": 1.0, "kd_weight": 1.0, "node_weight": 1.0, "edge_weight": 1.0,
                             "edge_on_adapted": True, "edge_time_stride": 1, "adapter_init": "default"})
