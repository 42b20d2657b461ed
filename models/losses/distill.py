"""`DistillConfig` (its fields derived from `METHODS`) and `DistillLosses`, the chosen method's terms as a module."""

from __future__ import annotations

from dataclasses import field, fields, make_dataclass

from torch import Tensor, nn

from models.contract.numbers import check_number
from models.losses import METHODS

REVISION_MODES = ("none", "global", "per_tensor")


def _method_options() -> list[tuple[str, type, object]]:
    seen: dict[str, object] = {}
    for m in METHODS.values():
        for k, v in m.options.items():
            seen.setdefault(k, v)
    return [(k, type(v), field(default=v)) for k, v in seen.items()]


def _post_init(self) -> None:
    if self.method not in METHODS:
        raise ValueError(f"unknown distillation method {self.method!r}; choose one of {', '.join(METHODS)}")
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


# What the student learns from the teacher, and how the gradients are combined: the method, the CE weight, every
# method's options, and `grad_revision` ("none" | "global" | "per_tensor", read by the training loop; see
# models/grad_revision.py).
DistillConfig = make_dataclass(
    "DistillConfig",
    [("method", str, field(default="skd")), ("ce_weight", float, field(default=1.0)), *_method_options(),
     ("grad_revision", str, field(default="global")), ("revision_impl", str, field(default="auto"))],
    namespace={"__post_init__": _post_init, "__doc__": "The distillation options (fields: see the comment above)."})

# `--weights` keys: `ce` and every method option named `<key>_weight`.
WEIGHT_FIELDS = {"ce": "ce_weight",
                 **{k[: -len("_weight")]: k for k, *_ in _method_options() if k.endswith("_weight")}}


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

    def forward(self, logits_s: Tensor, feats_s: Tensor, logits_t: Tensor, feats_t: Tensor,
                persons: int = 1) -> dict[str, Tensor]:
        return self._method.terms(dict(self.named_children()), logits_s, feats_s, logits_t, feats_t, persons)


def build_distill_losses(cfg, channels_s: int, channels_t: int) -> DistillLosses:
    """The loss modules for `cfg.method` (student feature channels C_s, teacher C_t)."""
    return DistillLosses(cfg, channels_s, channels_t)
