"""`pipeline demo`: the method end to end on procedural skeletons; no data, no download."""

from __future__ import annotations

from pathlib import Path

import click

from models.contract.paths import vet_output
from models.training.policy import THREADS_HELP
from models.training.runtime import set_threads
from pipeline.stages.demo import DemoConfig, run_demo


@click.command()
@click.option("--out", default="runs/demo", show_default=True, type=click.Path(path_type=Path),
              help="Folder for the synthetic data, the three runs, demo.png and demo.json.")
@click.option("--epochs", default=15, show_default=True, type=click.IntRange(1), help="Epochs per network.")
@click.option("--clips-per-class", default=40, show_default=True, type=click.IntRange(4))
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0))
@click.option("--threads", type=click.IntRange(1), default=None, help=THREADS_HELP)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def demo(out: Path, epochs: int, clips_per_class: int, seed: int, threads: int | None, quiet: bool) -> None:
    """Make synthetic actions, train a teacher on clean (HQ) skeletons, then a plain and an SKD student on
    corrupted (LQ) ones, and print how each does on the LQ test clips (a few minutes on 2 CPU cores)."""
    vet_output(out, folder=True)
    set_threads(threads)

    run_demo(out, DemoConfig(clips_per_class=clips_per_class, epochs=epochs, teacher_epochs=epochs, seed=seed),
             progress=not quiet, echo=click.echo)
