"""The resume state a run writes after every epoch (atomically) and `--resume` reads back.

One format for every kind of run: the modules' weights by name, optimizer, scheduler, torch RNG, the history,
and the configuration the run was started with. `format` tells a classifier's `last.pt` from a student's
`student_last.pt`. Loaded with `weights_only=True`: a state file never runs code.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from models.checkpoint import check_finite_weights, torch_bytes
from models.contract.atomic import atomic_write_bytes
from models.contract.errors import BadInput
from models.contract.paths import vet_input
from models.training.history import History

CLASSIFIER_STATE = "skd-pipeline/train-state"
STUDENT_STATE = "skd-pipeline/distill-state"
_WHAT = {CLASSIFIER_STATE: "training", STUDENT_STATE: "distillation"}


def save_state(path: Path, fmt: str, epoch: int, modules: dict[str, nn.Module], optimizer, scheduler,
               hist: History, config: dict | None = None) -> None:
    state = {"format": fmt, "version": 1, "epoch": epoch,
             **{name: {k: v.detach().cpu() for k, v in m.state_dict().items()} for name, m in modules.items()},
             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "rng_torch": torch.get_rng_state(), "history": hist.rows, "train_seconds": hist.train_seconds,
             "skipped_steps": hist.skipped_steps, "steps": hist.steps, **(config or {})}
    for name in modules:
        check_finite_weights(state[name], path)
    atomic_write_bytes(path, torch_bytes(state))


def load_state(path: Path, fmt: str, modules: dict[str, nn.Module], optimizer, scheduler, hist: History,
               must_match: dict | None = None) -> int:
    """Restore everything `save_state` wrote; returns the number of epochs done.

    `must_match`: configuration entries (e.g. `model_config`) the run must have been started with.
    """
    if not path.is_file():
        raise BadInput("nothing to resume: no " + path.name + " in the run folder", path.parent)
    vet_input(path, "state")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or foreign file: one line, never a traceback
        raise BadInput(f"cannot resume from this file ({type(e).__name__}: {' '.join(str(e).split())[:160]})",
                       path) from None
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise BadInput(f"not a {_WHAT.get(fmt, fmt)} state file", path)
    for key, value in (must_match or {}).items():
        if state.get(key) != value:
            raise BadInput("the run was started with another model configuration (layout, width, depth, "
                           "features); resume with the same options", path)
    try:
        for name, m in modules.items():
            m.load_state_dict(state[name])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise BadInput(f"the run was started with other options ({str(e).splitlines()[0][:120]}); resume with "
                       f"the same ones", path) from None
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng_torch"])
    hist.rows = list(state["history"] if "history" in state else state["rows"])  # "rows": older student states
    hist.train_seconds = float(state["train_seconds"])
    hist.skipped_steps = int(state["skipped_steps"])
    hist.steps = int(state.get("steps", 0))
    return int(state["epoch"])
