"""What a distillation method is, for the `METHODS` dict (models/losses/__init__.py): its options and its terms.

A method names the `DistillConfig` fields it reads (with their defaults; a field ending in `_weight` is also a
`--weights` key without the suffix), builds its loss modules from the config, and turns the two networks'
outputs into weighted scalar terms. Every method's `check` runs on every config (fields are shared).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

# (modules by name, student logits, student features, teacher logits, teacher features, persons) -> terms
Terms = Callable[[dict[str, nn.Module], Tensor, Tensor, Tensor, Tensor, int], dict[str, Tensor]]
# (modules by name, student outputs of the tapped blocks, teacher's) -> terms
BlockTerms = Callable[[dict[str, nn.Module], list[Tensor], list[Tensor]], dict[str, Tensor]]
# (modules by name, the student's input window or None, student features, teacher features, persons) -> terms
InputTerms = Callable[[dict[str, nn.Module], Tensor | None, Tensor, Tensor, int], dict[str, Tensor]]


@dataclass(frozen=True)
class LossMethod:
    help: str  # one phrase for `--method`'s help
    build: Callable[[Any, int, int], dict[str, nn.Module]]  # (DistillConfig, C_s, C_t) -> modules, in term order
    terms: Terms
    options: dict[str, Any] = field(default_factory=dict)  # DistillConfig fields this method reads -> default
    check: Callable[[Any], None] | None = None  # raises ValueError on a bad value of its options
    revision: str = "global"  # its gradient revision when none is asked for (DistillConfig.grad_revision)
    # Middle blocks whose outputs the method reads, from (DistillConfig, depth); the step taps them on both nets
    # and hands their outputs to `block_terms`. None / an empty tuple: the last block's features only.
    blocks: Callable[[Any, int], tuple[int, ...]] | None = None
    block_terms: BlockTerms | None = None
    # Terms that read the student's input window `(N, M, T, V, C)` as well (what its input lacks: skd's `rel`);
    # the step passes the window it fed the student, after any mix.
    input_terms: InputTerms | None = None


def no_terms(modules: dict[str, nn.Module], z_s: Tensor, f_s: Tensor, z_t: Tensor, f_t: Tensor,
             persons: int) -> dict[str, Tensor]:
    return {}


NONE = LossMethod(help="student on labels only", build=lambda cfg, cs, ct: {}, terms=no_terms)
