"""Distillation configuration and the builder that picks the loss modules for a method."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from models.losses.attention import AttentionLoss
from models.losses.fitnet import FitNetLoss
from models.losses.graph_matching import GraphMatchingLoss
from models.losses.kd import KDLoss
from models.losses.rkd import RKDLoss

METHODS = ("none", "kd", "fitnet", "rkd", "at", "skd")
REVISION_MODES = ("none", "global", "per_tensor")


@dataclass
class DistillConfig:
    """What the student learns from the teacher, and how the gradients are combined.

    `skd` = graph matching (node + edge) + logit KD, as the authors' code does (all weights 1, τ=1).
    `grad_revision` ("none" | "global" | "per_tensor") is read by the training loop; see models/grad_revision.py.
    """

    method: str = "skd"
    ce_weight: float = 1.0
    tau: float = 1.0
    kd_weight: float = 1.0
    node_weight: float = 1.0
    edge_weight: float = 1.0
    fitnet_weight: float = 1.0
    rkd_dist_weight: float = 25.0
    rkd_angle_weight: float = 50.0
    at_weight: float = 1000.0
    edge_on_adapted: bool = True
    edge_time_stride: int = 1
    adapter_init: str = "default"
    grad_revision: str = "global"
    revision_impl: str = "auto"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown distillation method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.grad_revision not in REVISION_MODES:
            raise ValueError(f"unknown gradient revision {self.grad_revision!r}; "
                             f"choose one of {', '.join(REVISION_MODES)}")
        if self.tau <= 0:
            raise ValueError(f"temperature must be > 0, got {self.tau}")
        if self.edge_time_stride < 1:
            raise ValueError(f"edge_time_stride must be >= 1, got {self.edge_time_stride}")


class DistillLosses(nn.Module):
    """The distillation terms of one method (CE is the training loop's).

    It is a module so that adapters move with `.to(device)` and their parameters reach the optimizer (and the
    gradient revision's parameter list). `forward` returns a dict of weighted scalar losses, one per term, e.g.
    `{"kd", "node", "edge"}` for skd and `{}` for "none".
    """

    def __init__(self, cfg: DistillConfig, channels_s: int, channels_t: int):
        super().__init__()
        self.cfg = cfg
        self.kd: KDLoss | None = None
        self.graph: GraphMatchingLoss | None = None
        self.fitnet: FitNetLoss | None = None
        self.rkd: RKDLoss | None = None
        self.at: AttentionLoss | None = None
        if cfg.method == "kd":
            self.kd = KDLoss(cfg.tau, cfg.kd_weight)
        elif cfg.method == "fitnet":
            self.fitnet = FitNetLoss(channels_s, channels_t, cfg.fitnet_weight)
        elif cfg.method == "rkd":
            self.rkd = RKDLoss(cfg.rkd_dist_weight, cfg.rkd_angle_weight)
        elif cfg.method == "at":
            self.at = AttentionLoss(cfg.at_weight)
        elif cfg.method == "skd":
            self.graph = GraphMatchingLoss(channels_s, channels_t, cfg.node_weight, cfg.edge_weight,
                                           cfg.edge_on_adapted, cfg.edge_time_stride, cfg.adapter_init)
            if cfg.kd_weight != 0:
                self.kd = KDLoss(cfg.tau, cfg.kd_weight)

    def forward(self, logits_s: Tensor, feats_s: Tensor, logits_t: Tensor, feats_t: Tensor,
                persons: int = 1) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        if self.kd is not None:
            out["kd"] = self.kd(logits_s, logits_t)
        if self.graph is not None:
            out.update(self.graph(feats_s, feats_t))
        if self.fitnet is not None:
            out["fitnet"] = self.fitnet(feats_s, feats_t)
        if self.rkd is not None:
            out.update(self.rkd(feats_s, feats_t, persons))
        if self.at is not None:
            out["at"] = self.at(feats_s, feats_t)
        return out


def build_distill_losses(cfg: DistillConfig, channels_s: int, channels_t: int) -> DistillLosses:
    """The loss modules for `cfg.method` (student feature channels C_s, teacher C_t)."""
    return DistillLosses(cfg, channels_s, channels_t)
