"""Graph matching at more than one depth: the edge term on the outputs of middle blocks, next to the last one's.

`BlockTap` keeps chosen block outputs of a network through forward hooks (its forward is unchanged);
`MultiBlockEdgeLoss` applies graph matching's edge term (graph_matching.edge_matrices) to each student/teacher
pair and averages over blocks. Student and teacher share the block plan (same depth, so the same T' and V at each
block); their channels may differ, since node-distance matrices do not depend on the channel count (no adapter).
Earlier blocks have more frames: they are average-pooled over time to about `frames` first, as (T'·V)² matrices
grow fast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.losses.graph_matching import edge_matrices


def middle_blocks(depth: int) -> tuple[int, ...]:
    """Blocks at a third and two thirds of the depth (3 and 6 of 10), never the last one (graph matching's own)."""
    return tuple(sorted({b for b in (depth // 3, 2 * depth // 3) if 0 <= b < depth - 1}))


class BlockTap:
    """Keeps the latest output of `model.blocks[i]` for each i in `blocks`; `remove()` detaches the hooks."""

    def __init__(self, model: nn.Module, blocks: tuple[int, ...]):
        self.blocks = tuple(blocks)
        self.outputs: dict[int, Tensor] = {}
        self._handles = [model.blocks[i].register_forward_hook(self._hook(i)) for i in self.blocks]

    def _hook(self, i: int):
        def keep(module: nn.Module, inputs: object, output: Tensor) -> None:
            self.outputs[i] = output
        return keep

    def features(self) -> list[Tensor]:
        """The tapped outputs of the last forward, in block order (then forgotten, so none is used twice)."""
        missing = [i for i in self.blocks if i not in self.outputs]
        if missing:
            raise RuntimeError(f"blocks {missing} have not run since the last read")
        out = [self.outputs.pop(i) for i in self.blocks]
        return out

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


class MultiBlockEdgeLoss(nn.Module):
    """`weight · mean over blocks b of SmoothL1(E(F_s^b), E(F_t^b))`, E = normalised node-distance matrices."""

    def __init__(self, weight: float = 1.0, frames: int = 8):
        super().__init__()
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        self.weight = float(weight)
        self.frames = int(frames)

    def forward(self, feats_s: list[Tensor], feats_t: list[Tensor]) -> Tensor:
        if len(feats_s) != len(feats_t) or not feats_s:
            raise ValueError(f"need the same non-zero number of student and teacher blocks, got {len(feats_s)} "
                             f"and {len(feats_t)}")
        terms = []
        for f_s, f_t in zip(feats_s, feats_t):
            if f_s.dim() != 4 or f_s.shape[0] != f_t.shape[0] or f_s.shape[2:] != f_t.shape[2:]:
                raise ValueError(f"block features differ in N·M, T' or V: {tuple(f_s.shape)} vs {tuple(f_t.shape)}")
            stride = max(1, -(-f_s.shape[2] // self.frames))  # ceil(T' / frames)
            with torch.no_grad():
                e_t = edge_matrices(f_t.detach(), stride)
            terms.append(F.smooth_l1_loss(edge_matrices(f_s, stride), e_t, reduction="mean"))
        return self.weight * torch.stack(terms).mean()
