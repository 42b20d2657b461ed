"""The fast (`low`) tier that `pipeline run` feeds the student with, and its fallback on a fresh install.

`pipeline run` must work with nothing installed beyond the wheels: when the default estimator's LQ model
(BlazePose lite) is missing and the user did not ask for a model, the full model that ships in the mediapipe
wheel takes its place and one line on stderr says so. An estimator or model the user named explicitly is never
swapped: its missing weights are the usual one-line BadInput naming `pipeline models install`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields

from estimators import DEFAULT, ESTIMATORS
from estimators.base import PoseEstimator
from estimators.blazepose import FALLBACK_MODEL
from models.contract.errors import BadInput, notice

# run has no option for a checkpoint or config file, which mmpose needs
RUN_ESTIMATORS = tuple(n for n in ESTIMATORS if n != "mmpose")


def fast_estimator(name: str = DEFAULT, model: str | None = None, note: Callable[[str], None] = notice,
                   max_persons: int = 1) -> PoseEstimator:
    """`ESTIMATORS[name]`'s low tier (with `model` when given), its weights checked before any video."""
    if name not in RUN_ESTIMATORS:
        raise BadInput(f"unknown estimator {name!r} for run ({', '.join(RUN_ESTIMATORS)})")
    cls = ESTIMATORS[name]
    if model is not None and "model" not in {f.name for f in fields(cls)}:
        raise BadInput(f"--pose-model (lite, full, heavy) is for --estimator {DEFAULT}, not {name}")
    persons = {"max_persons": max_persons} if "max_persons" in {f.name for f in fields(cls)} else {}
    est = cls.tier("low", **persons, **({} if model is None else {"model": model})).build()
    try:
        est.settings()  # reads and checks the weights
    except BadInput as e:
        if model is not None or name != DEFAULT:
            raise
        est = cls.tier("low", model=FALLBACK_MODEL, **persons).build()
        note(f"{e}. Using BlazePose {FALLBACK_MODEL} (ships with mediapipe) instead.")
    return est
