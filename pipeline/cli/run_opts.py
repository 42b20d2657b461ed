"""The options of `pipeline run` that say how a clip is run (model runtime, windows, pose estimator); `pipeline
eval --videos` takes the same ones, so it measures a clip exactly as `run` labels it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from estimators import DEFAULT
from estimators.mediapipe_pose import MODELS
from pipeline.infer.pose_choice import RUN_ESTIMATORS

_OPTIONS = (
    click.option("--onnx", "onnx_file", type=click.Path(path_type=Path),
                 help="Run the model part in onnxruntime from a file written by `pipeline export` (instead of "
                      "--model; the file carries the layout and classes)."),
    click.option("--window", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
                 help="Classify in sliding windows of this length [whole clip up to 10 s, else 4 s]."),
    click.option("--stride", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
                 help="Step between windows [2 s; half of --window when --window is given]."),
    click.option("--estimator", default=DEFAULT, show_default=True, type=click.Choice(RUN_ESTIMATORS),
                 help="Fast pose estimator (its low tier). blazepose: the lite model, or the full one that ships "
                      "with mediapipe when lite is not installed (said once on stderr)."),
    click.option("--pose-model", default=None, type=click.Choice(list(MODELS)),
                 help="BlazePose landmark model instead of lite (blazepose only; lite and heavy: `pipeline "
                      "models`)."),
)


def clip_run_options(f: Callable) -> Callable:
    """--onnx, --window, --stride, --estimator, --pose-model (as `onnx_file`, `window`, `stride`, `estimator`,
    `pose_model`)."""
    for option in reversed(_OPTIONS):
        f = option(f)
    return f
