"""FitNets (Romero et al. 2015): the student's feature, through a 1×1 conv regressor, mimics the teacher's."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from models.losses.method import LossMethod


class FitNetLoss(nn.Module):
    """`weight · MSE(adapter(F_s), F_t)`, mean over elements, on `(N·M, C, T', V)` features.

    On the same layer this is exactly the node term of the graph matching loss; as a baseline it isolates what the
    edge (structure) and logit terms add.
    """

    def __init__(self, channels_s: int, channels_t: int | None = None, weight: float = 1.0):
        super().__init__()
        self.adapter = nn.Conv2d(channels_s, channels_s if channels_t is None else channels_t, kernel_size=1)
        self.weight = float(weight)

    def forward(self, f_s: Tensor, f_t: Tensor) -> Tensor:
        adapted = self.adapter(f_s)
        if adapted.shape != f_t.shape:
            raise ValueError(f"adapted student feature {tuple(adapted.shape)} does not match the teacher's "
                             f"{tuple(f_t.shape)}")
        return self.weight * F.mse_loss(adapted, f_t.detach())


METHOD = LossMethod(help="feature MSE",
                    build=lambda cfg, cs, ct: {"fitnet": FitNetLoss(cs, ct, cfg.fitnet_weight)},
                    terms=lambda m, z_s, f_s, z_t, f_t, persons: {"fitnet": m["fitnet"](f_s, f_t)},
                    options={"fitnet_weight": 1.0})
