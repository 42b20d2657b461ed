"""Tiny real ST-GCN nets for distillation-step tests."""

from __future__ import annotations

import torch

from models.contract.layouts import get_layout
from models.net.stgcn import STGCN, STGCNConfig


def teacher_student(persons: int) -> tuple[STGCN, STGCN]:
    """A penn13 teacher (width 0.25, eval mode) and a narrower student (0.125), 5 classes, seeded."""
    torch.manual_seed(0)
    lay = get_layout("penn13").to_dict()
    t = STGCN(STGCNConfig(in_channels=3, num_classes=5, layout=lay, width=0.25, depth=4, max_persons=persons))
    s = STGCN(STGCNConfig(in_channels=3, num_classes=5, layout=lay, width=0.125, depth=4, max_persons=persons))
    return t.eval(), s
