"""Logit distillation (Hinton et al. 2015): KL between temperature-softened teacher and student distributions."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from models.losses.method import LossMethod


class KDLoss(nn.Module):
    """`weight · τ² · KL(softmax(z_t/τ) ‖ softmax(z_s/τ))`, batchmean.

    The τ² factor keeps the gradient's magnitude independent of τ (at τ=1, the authors' setting, it is 1).
    """

    def __init__(self, tau: float = 1.0, weight: float = 1.0):
        super().__init__()
        if tau <= 0:
            raise ValueError(f"temperature must be > 0, got {tau}")
        self.tau = float(tau)
        self.weight = float(weight)

    def forward(self, z_s: Tensor, z_t: Tensor) -> Tensor:
        if z_s.shape != z_t.shape:
            raise ValueError(f"student and teacher logits differ in shape: {tuple(z_s.shape)} vs {tuple(z_t.shape)}")
        log_p_s = F.log_softmax(z_s / self.tau, dim=1)
        p_t = F.softmax(z_t.detach() / self.tau, dim=1)
        return self.weight * self.tau**2 * F.kl_div(log_p_s, p_t, reduction="batchmean")


def check_tau(cfg) -> None:
    if cfg.tau <= 0:
        raise ValueError(f"temperature must be > 0, got {cfg.tau}")


def kd_terms(m: dict[str, nn.Module], z_s: Tensor, f_s: Tensor, z_t: Tensor, f_t: Tensor,
             persons: int) -> dict[str, Tensor]:
    return {"kd": m["kd"](z_s, z_t)} if "kd" in m else {}


METHOD = LossMethod(help="Hinton logits", build=lambda cfg, cs, ct: {"kd": KDLoss(cfg.tau, cfg.kd_weight)},
                    terms=kd_terms, options={"tau": 1.0, "kd_weight": 1.0}, check=check_tau)
