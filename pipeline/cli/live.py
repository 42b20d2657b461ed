"""`pipeline live`: camera, stream or file -> per-person action labels as JSON lines, while the video plays."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from estimators.base import native_stderr_quiet
from models.contract.paths import vet_output
from models.training.policy import DEFAULT_THREADS, THREADS_HELP
from pipeline.cli.estimator_opts import DEFAULT, EstimatorChoice, estimator_help, estimator_options, given_options
from pipeline.infer.live import LiveOptions, check_display, json_line, open_source, parse_source, run_live
from pipeline.infer.prediction import RunOptions, load_predictor
from pipeline.infer.runner import default_estimator


@click.command("live")
@click.argument("source")
@click.option("--model", type=click.Path(path_type=Path),
              help="Student checkpoint (.pt) [default: the bundled Penn Action student].")
@click.option("--onnx", "onnx_file", type=click.Path(path_type=Path),
              help="Run the model part in onnxruntime from a file written by `pipeline export`.")
@click.option("--window", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Length of the causal window each label is made from [4 s].")
@click.option("--stride", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="A label every this many seconds [1 s; half of --window when --window is given]. (Not "
                   "`extract --stride`, which is in frames.)")
@click.option("--max-persons", default=1, show_default=True, type=click.IntRange(1),
              help="Persons tracked and labelled (MediaPipe runs once per person and frame).")
@click.option("--estimator", "estimator_name", default=DEFAULT, show_default=True, type=EstimatorChoice(),
              help=estimator_help("Fast pose estimator (its low tier); blazepose falls back to the full model when "
                                  "lite is missing."))
@estimator_options
@click.option("--topk", default=5, show_default=True, type=click.IntRange(1), help="Labels per event.")
@click.option("--realtime/--no-realtime", default=True, show_default=True,
              help="Files: play at the file's frame rate (a slow machine drops frames, as on a camera); "
                   "--no-realtime processes every frame as fast as it can.")
@click.option("--queue", "queue_size", default=2, show_default=True, type=click.IntRange(1),
              help="Frames waiting for pose at most; beyond that frames are dropped and counted.")
@click.option("--drop", default="oldest", show_default=True, type=click.Choice(["oldest", "newest"]),
              help="Which frame a full queue drops.")
@click.option("--render", type=click.Path(path_type=Path),
              help="Write the frames with skeletons and labels to OUT.mp4 (atomically; a file source stopped "
                   "part-way writes nothing; a camera or stream stopped with Ctrl-C or SIGTERM is written).")
@click.option("--show", is_flag=True, help="Show the frames in a window (q or Esc stops; needs a display).")
@click.option("--threads", default=DEFAULT_THREADS, type=click.IntRange(1),
              help=THREADS_HELP + " Also OpenCV's threads.")
@click.option("--open-timeout", default=10.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              metavar="SECONDS", help="Give up on a stream that does not open (or stalls) this long.")
def live_cmd(source: str, model: Path | None, onnx_file: Path | None, window: float | None, stride: float | None,
             max_persons: int, estimator_name: str, topk: int, realtime: bool,
             queue_size: int, drop: str, render: Path | None,
             show: bool, threads: int, open_timeout: float, **backend_options) -> None:
    """Recognise actions live in SOURCE: a camera index (0), a stream URL (rtsp://, http://, udp://...) or a
    video file.

    Prints one JSON line per person and window: {"t", "person", "box", "labels", "latency_ms", "frames"}.
    Ctrl-C or the end of the stream prints a summary on stderr (frames read, processed, dropped; latency).
    """
    import cv2  # (here: `pipeline --help` lists the commands without loading OpenCV)

    pose_options = given_options(estimator_name, backend_options)

    opts = LiveOptions(window=window, stride=stride, max_persons=max_persons, topk=topk, realtime=realtime,
                       queue=queue_size, drop=drop, render=render, show=show)
    if show:
        check_display()
    if render is not None:  # before anything opens; a file source is the one input it must not overwrite
        spec = parse_source(source)
        vet_output(render, inputs=[spec.path] if spec.kind == "file" else [])
    cv2.setNumThreads(threads)
    predictor = load_predictor(RunOptions(model=model, onnx=onnx_file, threads=threads))
    stop = threading.Event()

    stopped_by: list[int] = []

    def on_stop(signum, frame) -> None:
        # SIGINT (Ctrl-C) and SIGTERM (kill, a service manager) end the run the same way: the render is kept or
        # discarded by run_live's rule, never left half-written. A second signal interrupts the clean-up.
        stopped_by.append(signum)
        stop.set()
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)

    with native_stderr_quiet() as console:  # camera/FFmpeg/MediaPipe chatter off; our lines go to `console`
        src = open_source(source, open_timeout)
        estimator, fallback_note = default_estimator(RunOptions(estimator=estimator_name, pose_options=pose_options,
                                                                max_persons=max_persons))
        if fallback_note is not None:  # live has no one-line contract to keep: said at once
            print(f"note: {fallback_note}", file=console, flush=True)
        previous = {sig: signal.signal(sig, on_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            stats = run_live(src, estimator, predictor, opts, json_line(stop), stop)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            estimator.close()
        print(stats.text(src.name), file=console, flush=True)
    if stats.interrupted:
        raise SystemExit(128 + (stopped_by[0] if stopped_by else signal.SIGINT))  # 130 for Ctrl-C, 143 for SIGTERM
