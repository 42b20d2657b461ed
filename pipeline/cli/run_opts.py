"""The options of `pipeline run` that say how a clip is run (model runtime, windows, pose estimator); `pipeline
eval --videos` takes the same ones, so it measures a clip exactly as `run` labels it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from pipeline.cli.estimator_opts import DEFAULT, EstimatorChoice, estimator_help, estimator_options

_OPTIONS = (
    click.option("--onnx", "onnx_file", type=click.Path(path_type=Path),
                 help="Run the model part in onnxruntime from a file written by `pipeline export` (instead of "
                      "--model; the file carries the layout and classes)."),
    click.option("--window", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
                 help="Classify in sliding windows of this length [whole clip up to 10 s, else 4 s]."),
    click.option("--stride", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
                 help="Step between windows, in seconds [2 s; half of --window when --window is given]. (Not "
                      "`extract --stride`, which is in frames.)"),
    click.option("--estimator", default=DEFAULT, show_default=True, type=EstimatorChoice(),
                 help=estimator_help("Fast pose estimator (its low tier); blazepose uses lite, or the full model "
                                     "that ships with mediapipe when lite is not installed (said once on stderr).")),
)


def clip_run_options(f: Callable) -> Callable:
    """--onnx, --window, --stride, --estimator and each backend's own options (as `onnx_file`, `window`, `stride`,
    `estimator`; the backend options go to `**kwargs`, read back with `estimator_opts.given_options`)."""
    f = estimator_options(f)
    for option in reversed(_OPTIONS):
        f = option(f)
    return f
