"""Decoupled knowledge distillation (Zhao et al., CVPR 2022): target-class and non-target-class KD, weighted apart.

With p = softmax(z/τ) and target t: TCKD = KL([p_t, 1−p_t]^teacher ‖ [p_t, 1−p_t]^student) (binary), NCKD = KL over
the non-target classes renormalised among themselves; loss = weight · τ² · (α·TCKD + β·NCKD), batchmean.
The target is the label where given (≥ 0) and the teacher's argmax elsewhere; as a `pipeline distill` method
(which hands a method no labels) it is always the teacher's argmax, so unlabeled clips get the term too.
Defaults are the paper's (α 1, β 8, τ 4); with this project's label-smoothed teacher they hurt (docs/RESULTS.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.losses.kd import check_tau
from models.losses.method import LossMethod


def _kl_rows(p: Tensor, log_q: Tensor, log_p: Tensor) -> Tensor:
    """Σ_j p_j (log p_j − log q_j) per row, with 0·log 0 = 0."""
    return torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p)).sum(1)


class DKDLoss(nn.Module):
    def __init__(self, alpha: float = 1.0, beta: float = 8.0, tau: float = 4.0, weight: float = 1.0):
        super().__init__()
        if tau <= 0:
            raise ValueError(f"temperature must be > 0, got {tau}")
        self.alpha, self.beta, self.tau, self.weight = float(alpha), float(beta), float(tau), float(weight)

    def forward(self, z_s: Tensor, z_t: Tensor, target: Tensor | None = None) -> Tensor:
        if z_s.shape != z_t.shape:
            raise ValueError(f"student and teacher logits differ in shape: {tuple(z_s.shape)} vs {tuple(z_t.shape)}")
        z_t = z_t.detach()
        tgt = z_t.argmax(1) if target is None else torch.where(target >= 0, target, z_t.argmax(1))
        mask = F.one_hot(tgt, z_s.shape[1]).bool()
        ls, lt = z_s / self.tau, z_t / self.tau
        # Binary (target vs rest) distributions, in log space for stability.
        lp_s, lp_t = F.log_softmax(ls, 1), F.log_softmax(lt, 1)
        lb_s = torch.stack([lp_s[mask], torch.logsumexp(lp_s.masked_fill(mask, -torch.inf), 1)], 1)
        lb_t = torch.stack([lp_t[mask], torch.logsumexp(lp_t.masked_fill(mask, -torch.inf), 1)], 1)
        tckd = _kl_rows(lb_t.exp(), lb_s, lb_t)
        # Non-target distributions: softmax over the other classes only (the target masked out).
        ln_s = F.log_softmax(ls.masked_fill(mask, -torch.inf), 1).masked_fill(mask, 0.0)
        ln_t = F.log_softmax(lt.masked_fill(mask, -torch.inf), 1).masked_fill(mask, 0.0)
        nckd = _kl_rows(ln_t.exp().masked_fill(mask, 0.0), ln_s, ln_t)
        return self.weight * self.tau**2 * (self.alpha * tckd + self.beta * nckd).mean()


def _terms(m: dict[str, nn.Module], z_s: Tensor, f_s: Tensor, z_t: Tensor, f_t: Tensor,
           persons: int) -> dict[str, Tensor]:
    return {"dkd": m["dkd"](z_s, z_t)}


def _check(cfg) -> None:
    check_tau(cfg)
    if cfg.dkd_alpha < 0 or cfg.dkd_beta < 0:
        raise ValueError(f"dkd_alpha and dkd_beta must be >= 0, got {cfg.dkd_alpha} and {cfg.dkd_beta}")


METHOD = LossMethod(help="decoupled KD (target / non-target logits)",
                    build=lambda cfg, cs, ct: {"dkd": DKDLoss(cfg.dkd_alpha, cfg.dkd_beta, cfg.tau, cfg.dkd_weight)},
                    terms=_terms, check=_check, revision="none",
                    options={"tau": 4.0, "dkd_weight": 1.0, "dkd_alpha": 1.0, "dkd_beta": 8.0})
