"""`pipeline eval --videos LABELS.csv`: the options it adds to `pipeline eval`, and the call of its stage."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import click

from models.contract.errors import BadInput
from models.contract.paths import vet_input, vet_output
from pipeline.cli.estimator_opts import given_options
from pipeline.cli.run_opts import clip_run_options
from pipeline.infer.prediction import RunOptions
from pipeline.stages.eval_report import write_report
from pipeline.stages.video_eval import evaluate_videos, format_summary

# `eval`'s options that only one of its two inputs takes, by parameter name.
PICKLE_ONLY = ("layout", "source_layout", "batch_size", "test_clips")
VIDEO_ONLY = ("onnx_file", "window", "stride", "estimator", "report", "no_progress")  # + every backend option


def video_eval_options(f: Callable) -> Callable:
    """--videos, `run`'s clip options (--onnx, --window, --stride, --estimator and its backend's options), --report,
    --no-progress."""
    f = click.option("--no-progress", is_flag=True, help="--videos: no progress bar (it shows on a terminal only).")(f)
    f = click.option("--report", type=click.Path(path_type=Path), metavar="DIR",
                     help="--videos: write DIR/index.html, one static page to open in a browser (mistakes and "
                          "flagged clips first, each with its skeleton clip; the confusion matrix), with "
                          "DIR/report.json and DIR/confusion.png.")(f)
    f = clip_run_options(f)
    return click.option("--videos", type=click.Path(path_type=Path), metavar="LABELS.csv",
                        help="Score `pipeline run` on labelled videos instead of a pickle: rows video,label[,split] "
                             "(paths relative to the CSV). A label that is not one of the model's classes (e.g. "
                             "`other`) marks a clip its unknown-action flag should catch.")(f)


def check_inputs(ctx: click.Context, data: Path | None, videos: Path | None) -> None:
    """Exactly one of --data and --videos, and none of the other one's options given."""
    if (data is None) == (videos is None):
        raise BadInput("give --data PICKLE or --videos LABELS.csv (one of them)")
    wrong = PICKLE_ONLY if videos is not None else VIDEO_ONLY
    backend = tuple(p.name for p in ctx.command.params if p.name.startswith("estopt_"))
    wrong = wrong + backend if videos is None else wrong
    given = [p.opts[0] for p in ctx.command.params
             if p.name in wrong and ctx.get_parameter_source(p.name) == click.core.ParameterSource.COMMANDLINE]
    if given:
        raise BadInput(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for "
                       f"{'--data' if videos is not None else '--videos'}, not "
                       f"{'--videos' if videos is not None else '--data'}")


def eval_videos(videos: Path, model: Path | None, onnx_file: Path | None, split: str | None, window: float | None,
                stride: float | None, estimator: str, report: Path | None, threads: int, device: str, as_json: bool,
                no_progress: bool, **backend_options) -> None:
    vet_input(videos, "labels")
    if report is not None:
        vet_output(report, folder=True, inputs=[videos, model, onnx_file])
    opts = RunOptions(model=model, onnx=onnx_file, window=window, stride=stride, progress=False, threads=threads,
                      device=device, estimator=estimator,
                      pose_options=given_options(estimator, backend_options))
    ev = evaluate_videos(videos, opts, split=split, progress=not no_progress)
    click.echo(json.dumps(ev.result) if as_json else format_summary(ev.result))
    if report is not None:
        title = f"pipeline eval --videos {videos.name}" + (f" --split {split}" if split else "")
        page = write_report(report, ev, title)
        click.echo(f"wrote {page}", err=True)
    s = ev.result["summary"]
    if not s["evaluated"]:
        raise BadInput(f"none of the {s['clips']} clips could be run (each is listed above)", videos)
