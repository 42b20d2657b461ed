"""The parameters the "tail" gradient revision tests conflicts on: the student's last blocks and its head.

The revision itself is the global one restricted to this subset (models/grad_revision.py, mode "tail"): the
projection is decided on these parameters only, then applied to every parameter through one backward.
"""

from __future__ import annotations

from torch import Tensor, nn


def tail_parameters(student: nn.Module, losses: nn.Module, blocks: int = 1) -> list[Tensor]:
    """The last `blocks` blocks' parameters (with their edge-importance maps), the head, and the loss adapters."""
    n = len(student.blocks)
    keep = [p for b in student.blocks[max(0, n - blocks):] for p in b.parameters()]
    if getattr(student, "edge_importance", None) is not None:
        keep += list(student.edge_importance[max(0, n - blocks):])
    keep += list(student.fc.parameters()) + list(losses.parameters())
    return [p for p in keep if p.requires_grad]
