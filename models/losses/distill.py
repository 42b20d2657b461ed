"""`DistillConfig` (its fields derived from `METHODS`) and `DistillLosses`, the chosen method's terms as a module."""

from __future__ import annotations

from dataclasses import field, fields, make_dataclass

from torch import Tensor, nn

from models.contract.numbers import check_number
from models.grad_revision import MODES as REVISION_MODES
from models.losses import METHODS
from models.training.function_matching import check_mix


def _option_defaults() -> dict[str, object]:
    """Every method option with the default of the first method listing it (for the options a method lacks)."""
    seen: dict[str, object] = {}
    for m in METHODS.values():
        for k, v in m.options.items():
            seen.setdefault(k, v)
    return seen


def _method_options() -> list[tuple[str, type, object]]:
    # Default None: filled in by __post_init__ from the chosen method's own defaults (methods differ, e.g. the
    # node weight of `skd` and `skd-authors`), so `DistillConfig(method=m)` is always m's recipe.
    return [(k, type(v), field(default=None)) for k, v in _option_defaults().items()]


def _post_init(self) -> None:
    if self.method not in METHODS:
        raise ValueError(f"unknown distillation method {self.method!r}; choose one of {', '.join(METHODS)}")
    own = METHODS[self.method].options
    for k, v in _option_defaults().items():
        if getattr(self, k) is None:
            setattr(self, k, own.get(k, v))
    if self.grad_revision is None:
        self.grad_revision = METHODS[self.method].revision
    if self.grad_revision not in REVISION_MODES:
        raise ValueError(f"unknown gradient revision {self.grad_revision!r}; choose one of {', '.join(REVISION_MODES)}")
    # Every weight and option (tau, ...) is finite: NaN or inf would train a NaN student. (The ranges are each
    # method's `check`, and `--weights` refuses negative weights; tests flip a weight's sign on purpose.)
    for f in fields(self):
        if f.type is float or f.type == "float":
            check_number(f.name, getattr(self, f.name))
    for m in METHODS.values():
        if m.check is not None:
            m.check(self)
    check_mix(self.mix, self.mix_alpha)
    if self.revision_blocks < 1:
        raise ValueError(f"revision_blocks must be >= 1, got {self.revision_blocks}")
    if self.grad_revision in ("global", "per_tensor") and METHODS[self.method].blocks is not None \
            and METHODS[self.method].blocks(self, 10):
        # The exact revision cuts the student at its last block; a middle block's term would bypass the cut.
        raise ValueError(f"terms on middle blocks need the 'tail' or 'none' gradient revision, not "
                         f"{self.grad_revision!r}")


# What the student learns from the teacher, and how the gradients are combined: the method, the CE weight, every
# method's options (default: the method's own), and `grad_revision` ("none" | "global" | "per_tensor" | "tail";
# default: the method's; read by the training loop, see models/grad_revision.py),
# `revision_blocks` (the tail's blocks); `mix` / `mix_alpha`: function matching, the same mix of the HQ and the LQ
# windows of a batch (models/training/function_matching.py; "none": off).
DistillConfig = make_dataclass(
    "DistillConfig",
    [("method", str, field(default="skd")), ("ce_weight", float, field(default=1.0)), *_method_options(),
     ("grad_revision", str, field(default=None)), ("revision_impl", str, field(default="auto")),
     ("revision_blocks", int, field(default=1)), ("mix", str, field(default="none")),
     ("mix_alpha", float, field(default=1.0))],
    namespace={"__post_init__": _post_init, "__doc__": "The distillation options (fields: see the comment above)."})

# `--weights` keys: `ce` and every method option named `<key>_weight`.
WEIGHT_FIELDS = {"ce": "ce_weight",
                 **{k[: -len("_weight")]: k for k in _option_defaults() if k.endswith("_weight")}}


class DistillLosses(nn.Module):
    """The distillation terms of one method (CE is the training loop's).

    It is a module so that adapters move with `.to(device)` and their parameters reach the optimizer (and the
    gradient revision's parameter list). `forward` returns a dict of weighted scalar losses, one per term, e.g.
    `{"kd", "node", "edge"}` for skd and `{}` for "none".
    """

    def __init__(self, cfg, channels_s: int, channels_t: int):
        super().__init__()
        self.cfg = cfg
        self._method = METHODS[cfg.method]
        for name, module in self._method.build(cfg, channels_s, channels_t).items():
            self.add_module(name, module)

    def blocks(self, depth: int) -> tuple[int, ...]:
        """The middle blocks (of nets `depth` deep) whose outputs `forward` wants as `blocks_s` / `blocks_t`."""
        return tuple(self._method.blocks(self.cfg, depth)) if self._method.blocks is not None else ()

    def forward(self, logits_s: Tensor, feats_s: Tensor, logits_t: Tensor, feats_t: Tensor,
                persons: int = 1, blocks_s: list[Tensor] | None = None,
                blocks_t: list[Tensor] | None = None, x_s: Tensor | None = None) -> dict[str, Tensor]:
        """`x_s`: the student's input window `(N, M, T, V, C)`, for the terms that read it (a method whose
        config asks for such a term raises without it)."""
        mods = dict(self.named_children())
        out = self._method.terms(mods, logits_s, feats_s, logits_t, feats_t, persons)
        if self._method.block_terms is not None and blocks_s:
            out.update(self._method.block_terms(mods, blocks_s, blocks_t or []))
        if self._method.input_terms is not None:
            out.update(self._method.input_terms(mods, x_s, feats_s, feats_t, persons))
        return out


def build_distill_losses(cfg, channels_s: int, channels_t: int) -> DistillLosses:
    """The loss modules for `cfg.method` (student feature channels C_s, teacher C_t)."""
    return DistillLosses(cfg, channels_s, channels_t)
