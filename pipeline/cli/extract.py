"""`pipeline extract`: run a pose estimator over videos into the skeleton cache."""

from __future__ import annotations

from pathlib import Path

import click

from estimators import DEFAULT, QUALITIES
from models.contract.errors import BadInput
from models.contract.paths import vet_output
from models.training.policy import DEFAULT_THREADS, THREADS_HELP
from pipeline.cli.estimator_opts import EstimatorChoice, estimator_help, estimator_options, given_options
from pipeline.extract.driver import ExtractOptions, extract
from pipeline.extract.ray_extract import extract_ray
from pipeline.extract.shard import parse_shard


@click.command("extract")
@click.argument("videos", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--quality", required=True, type=click.Choice(QUALITIES),
              help="high: per-frame detection on every frame (teacher input; BlazePose heavy); low: tracking on "
                   "every 4th frame, gaps interpolated (student input; BlazePose lite).")
@click.option("--estimator", default=DEFAULT, show_default=True, type=EstimatorChoice(),
              help=estimator_help("The pose estimator; its name is the cache's and `dataset build --estimator`'s.")
              + " `pipeline models` lists the weights to install.")
@estimator_options
@click.option("--cache", "cache_dir", default="data_cache", show_default=True, type=click.Path(path_type=Path),
              help="Cache folder.")
@click.option("--workers", default=None, type=int,
              help="Videos extracted in parallel processes [1]; with --backend ray: tasks in flight [2 x the "
                   "cluster's CPUs].")
@click.option("--shard", "shard_spec", default=None, metavar="I/N",
              help="Only shard I of N (0-based) of the path-sorted videos, for batch schedulers; shards may share "
                   "one cache.")
@click.option("--backend", default="local", show_default=True, type=click.Choice(["local", "ray"]),
              help="local: this machine's processes; ray: one Ray task per video on a Ray cluster (optional extra).")
@click.option("--ray-address", default=None, metavar="ADDR",
              help="Ray cluster to use (what `ray start --head` prints, or auto) [RAY_ADDRESS, else a local Ray].")
@click.option("--retries", default=2, show_default=True, type=click.IntRange(0),
              help="With --backend ray: retries of a video whose task failed for an internal reason.")
@click.option("--max-persons", default=1, show_default=True, type=int,
              help="Persons kept per video. MediaPipe finds one person per pass: M>1 re-runs each frame with "
                   "the persons found so far greyed out (M x cost).")
@click.option("--flip-average", is_flag=True, help="Also run on the mirrored frame and average (2x cost).")
@click.option("--smooth", default=0, show_default=True, type=int,
              help="Temporal smoothing half-window in frames (0 = off).")
@click.option("--stride", default=None, type=int, metavar="FRAMES",
              help="Pose every N-th video frame, the others interpolated [the tier's: 1 high, 4 low]. (In `run` "
                   "and `live`, --stride is the step between classification windows, in seconds.)")
@click.option("--threads", default=DEFAULT_THREADS, type=click.IntRange(1),
              help=THREADS_HELP + " Only estimators that run torch (mmpose) use it.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--quiet", is_flag=True, help="No progress bar, and of the report only the failures and one line of "
                                           "counts.")
def extract_cmd(videos: tuple[Path, ...], quality: str, estimator: str, cache_dir: Path, workers: int | None,
                shard_spec: str | None, backend: str, ray_address: str | None, retries: int,
                max_persons: int, flip_average: bool, smooth: int, stride: int | None, threads: int,
                no_progress: bool, quiet: bool, **backend_options) -> None:
    """Extract skeletons from VIDEOS (files or folders) into the cache, one entry per video and settings.

    Videos already in the cache are skipped; a bad file is reported in the summary and the others go on.
    Exit code 2 when any video failed.
    """
    vet_output(cache_dir, folder=True)
    own = given_options(estimator, backend_options)
    if ray_address is not None and backend != "ray":
        raise BadInput("--ray-address needs --backend ray")
    shard = parse_shard(shard_spec)
    opts = ExtractOptions(quality=quality, estimator=estimator, cache_dir=cache_dir,
                          workers=1 if backend == "ray" or workers is None else workers,
                          max_persons=max_persons, flip_average=flip_average, smooth=smooth, stride=stride,
                          threads=threads, options=own)
    no_progress = no_progress or quiet
    if backend == "ray":
        s = extract_ray([str(v) for v in videos], opts, address=ray_address, shard=shard, retries=retries,
                        max_in_flight=workers, show_progress=not no_progress)
    else:
        s = extract([str(v) for v in videos], opts, show_progress=not no_progress, shard=shard)
    done, skipped, failed = s.by("done"), s.by("skipped"), s.by("failed")
    frames = sum(o.frames for o in done)
    work = sum(o.seconds for o in done)
    rate = f", {frames / work:.1f} frames/s" if work > 0 else ""
    if quiet:
        for o in failed:
            click.echo(f"  {o.reason}")
        click.echo(f"{len(done)} done, {len(skipped)} skipped, {len(failed)} failed ({frames} frames{rate}) "
                   f"in {s.seconds:.1f} s")
    else:
        _report(done, skipped, failed, frames, rate, cache_dir, s.seconds)
    if any(o.internal for o in failed):
        raise click.exceptions.Exit(1)  # a crash, not bad input: exit 1 as the CLI contract says
    if failed:
        raise BadInput(f"{len(failed)} of {len(s.outcomes)} videos failed (listed above)")


def _report(done: list, skipped: list, failed: list, frames: int, rate: str, cache_dir: Path, seconds: float) -> None:
    click.echo(f"done     {len(done):>4}  ({frames} frames{rate})")
    click.echo(f"skipped  {len(skipped):>4}  (already in {cache_dir})")
    for o in done:
        if o.reason:  # e.g. a damaged cache entry that was made again
            click.echo(f"  {o.video}: {o.reason}")
    click.echo(f"failed   {len(failed):>4}")
    for o in failed:
        click.echo(f"  {o.reason}")
    click.echo(f"total {seconds:.1f} s")
