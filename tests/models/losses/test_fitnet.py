"""FitNets: feature MSE through a 1×1 adapter, by hand."""

from __future__ import annotations

import pytest
import torch

from models.losses.fitnet import FitNetLoss


def test_hand_value_with_set_adapter():
    loss = FitNetLoss(1, 2, weight=2.0).double()
    with torch.no_grad():
        loss.adapter.weight.copy_(torch.tensor([2.0, -1.0], dtype=torch.float64).view(2, 1, 1, 1))
        loss.adapter.bias.copy_(torch.tensor([0.0, 1.0], dtype=torch.float64))
    f_s = torch.tensor([1.0, 3.0], dtype=torch.float64).view(1, 1, 1, 2)  # 1 sample, 1 channel, 2 nodes
    f_t = torch.zeros(1, 2, 1, 2, dtype=torch.float64)
    # Adapted: channel 0 = 2·(1, 3) = (2, 6); channel 1 = −(1, 3) + 1 = (0, −2).
    # MSE against 0 = (4 + 36 + 0 + 4) / 4 = 11; weight 2 → 22.
    assert loss(f_s, f_t).item() == pytest.approx(22.0, abs=1e-12)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="does not match"):
        FitNetLoss(2, 3)(torch.zeros(1, 2, 1, 2), torch.zeros(1, 4, 1, 2))
