"""`pipeline run` (video -> fast estimator -> student -> labels) and `pipeline export` (checkpoint -> ONNX)."""

from __future__ import annotations

from pathlib import Path

import click

from models.contract.errors import BadInput
from models.contract.paths import vet_output
from models.training.policy import DEFAULT_THREADS, THREADS_HELP
from pipeline.cli.estimator_opts import given_options
from pipeline.cli.run_opts import clip_run_options
from pipeline.infer.onnx_export import export_onnx
from pipeline.infer.prediction import RunOptions, load_predictor
from pipeline.infer.runner import format_json, format_text, run_videos


@click.command("run")
@click.argument("clips", nargs=-1, type=click.Path(path_type=Path))  # files or folders
@click.option("--model", type=click.Path(path_type=Path),
              help="Student checkpoint (.pt) [default: the bundled Penn Action student, models/zoo/student_penn13.pt].")
@clip_run_options
@click.option("--topk", default=5, show_default=True, type=click.IntRange(1), help="Labels to print.")
@click.option("--json", "as_json", is_flag=True,
              help='One JSON object per video: {"video", "frames", "persons", "labels", "seconds"} (+ "windows", '
                   '"tracks").')
@click.option("--render", type=click.Path(path_type=Path),
              help="Write the video with the skeleton and the running label drawn (OUT.mp4; a folder when several "
                   "clips are given).")
@click.option("--threads", default=DEFAULT_THREADS, type=click.IntRange(1), help=THREADS_HELP)
@click.option("--device", default="cpu", show_default=True,
              help="cpu, cuda or cuda:N for the PyTorch model (the pose estimator runs on the CPU).")
@click.option("--max-persons", default=1, show_default=True, type=click.IntRange(1),
              help='Track up to N persons and classify each on its own; N > 1 adds "tracks": [{"id", "frames": '
                   '[first, last], "labels"}...] to the JSON ("persons" stays a count).')
@click.option("--no-progress", is_flag=True, help="No progress bar (it shows on a terminal only anyway).")
@click.option("--classes", "list_classes", is_flag=True,
              help="Print the actions the model knows (its whole vocabulary) and exit.")
def run_cmd(clips: tuple[Path, ...], model: Path | None, onnx_file: Path | None, topk: int, as_json: bool,
            render: Path | None, window: float | None, stride: float | None, threads: int, device: str,
            estimator: str, max_persons: int, no_progress: bool, list_classes: bool, **backend_options) -> None:
    """Recognise the action in CLIPS (video files, or folders searched for them) with the fast pose estimator
    and a distilled student.

    Prints the top-k labels with scores per clip (and the top label of each window for long clips). A clip or
    window unlike any action the model knows (its open-set rule, see `pipeline calibrate`) is reported as "not a
    known action" above the closest labels; the JSON keeps the scores and adds "open_set" (to the clip and to
    each window): "known", "threshold" and "distance", the rule's score (for a rule calibrated with `--score
    energy`, the energy of the logits). A bad clip is reported in one line and the others go on; the exit code is
    2 when any clip failed. `pipeline eval --videos` measures all this on labelled clips.
    """
    pose_options = given_options(estimator, backend_options)
    if device != "cpu":  # (checked only then: the check imports torch, which the ONNX path does without)
        from models.training.runtime import resolve_device

        device = str(resolve_device(device))
    opts = RunOptions(model=model, onnx=onnx_file, topk=topk, window=window, stride=stride, render=render,
                      progress=not no_progress, threads=threads, device=device,
                      estimator=estimator, pose_options=pose_options, max_persons=max_persons)
    if list_classes:
        info = load_predictor(opts).info
        click.echo(f"{len(info.classes)} actions ({info.source}):")
        for name in info.classes:
            click.echo(f"  {name}")
        return
    if not clips:
        raise BadInput("give one or more CLIPS (video files or folders), or --classes")
    fmt = format_json if as_json else format_text

    def show(r) -> None:
        click.echo(fmt(r))
        if "render" in r.extra:
            click.echo(f"wrote {r.extra['render']}", err=True)

    done, failures = run_videos(list(clips), opts, on_result=show,
                                on_failure=lambda f: click.echo(f"Error: {f.reason}", err=True))
    if failures and len(done) + len(failures) == 1:
        # Its one-line error is already printed. SystemExit, not click's Exit: with standalone_mode=False
        # click turns Exit into a return value that main() does not pass on.
        raise SystemExit(2)
    if failures:
        raise BadInput(f"{len(failures)} of {len(done) + len(failures)} clips failed (listed above)")


@click.command("export")
@click.option("--model", required=True, type=click.Path(path_type=Path), help="Checkpoint (.pt).")
@click.option("--onnx", "onnx_file", required=True, type=click.Path(path_type=Path), help="Output .onnx file.")
@click.option("--opset", default=17, show_default=True, type=click.IntRange(13), help="ONNX opset.")
def export_cmd(model: Path, onnx_file: Path, opset: int) -> None:
    """Export a checkpoint to ONNX (batch axis dynamic, metadata inside) and check onnxruntime against PyTorch."""
    vet_output(onnx_file, inputs=[model])
    r = export_onnx(model, onnx_file, opset=opset)
    click.echo(f"wrote {r['path']} ({r['bytes'] / 1e6:.2f} MB); onnxruntime vs PyTorch max abs diff "
               f"{r['max_abs_diff']:.2g} on random input; {r['seconds']:.1f} s")
