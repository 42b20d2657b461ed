"""The fast (`low`) tier that `pipeline run` and `pipeline live` feed the student with, and its fallback.

`pipeline run` must work with nothing installed beyond the wheels: when the estimator's LQ weights (BlazePose
lite) are missing and the user chose none of its options, the configuration its config declares as a fallback
(`EstimatorConfig.fallback`: BlazePose full, in the mediapipe wheel) takes its place, with a note saying so. An
option the user named explicitly is never swapped: its missing weights are the usual one-line BadInput naming
`pipeline models install`.
"""

from __future__ import annotations

from dataclasses import fields

from estimators import DEFAULT, create, estimator_class
from estimators.base import PoseEstimator
from models.contract.errors import BadInput


def fast_estimator(name: str = DEFAULT, options: dict | None = None,
                   max_persons: int = 1) -> tuple[PoseEstimator, str | None]:
    """`ESTIMATORS[name]`'s low tier with `options` (its own, config field -> value), its weights checked before
    any video; and the note to show when the fallback was taken (None when not). The caller decides when to
    show it: `run` shows it with the first result, so that a run that fails says only its one error line."""
    cls = estimator_class(name)
    options = dict(options or {})
    for f in options:
        if f not in cls.OPTIONS:
            raise BadInput(f"{f!r} is not an option of --estimator {name}")
    own = {f.name for f in fields(cls)}
    if max_persons != 1 and "max_persons" not in own:
        raise BadInput(f"--max-persons is not an option of --estimator {name}")
    cfg = cls.tier("low", **({"max_persons": max_persons} if "max_persons" in own else {}), **options)
    est = create(name, cfg)
    try:
        est.settings()  # reads and checks the weights
    except BadInput as e:
        fallback = None if options else cfg.fallback()
        if fallback is None:
            raise
        est = create(name, fallback[0])
        est.settings()
        return est, f"{e}. Using {fallback[1]} instead."
    return est, None
