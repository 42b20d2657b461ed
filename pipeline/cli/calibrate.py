"""`pipeline calibrate`: give a checkpoint the open-set rule that lets `run` say "not one of my actions"."""

from __future__ import annotations

from pathlib import Path

import click

from models.contract.paths import vet_output
from models.openset import ENERGY, RULE
from models.training.policy import THREADS_HELP
from models.training.runtime import set_threads
from pipeline.cli.layout_opts import layout_option, source_layout_option
from pipeline.stages.calibrate import RealClips, calibrate_checkpoint


@click.command("calibrate")
@click.option("--model", "model_path", required=True, type=click.Path(path_type=Path), help="Checkpoint (.pt).")
@click.option("--data", required=True, type=click.Path(path_type=Path),
              help="Labelled pickle of the model's classes: fitted on its train split, threshold on its test split.")
@click.option("--out", type=click.Path(path_type=Path), help="Where to write the calibrated checkpoint [--model].")
@click.option("--corrupt", metavar="SPEC",
              help="Simulate LQ first (as `distill --corrupt`): calibrate a student on the input it will see.")
@click.option("--score", default="mahalanobis", show_default=True, type=click.Choice(["mahalanobis", "energy"]),
              help="What the rule scores: the Mahalanobis distance of the pooled features to the nearest class mean, "
                   "or the energy of the logits (-logsumexp; no features needed, and it separated other actions "
                   "better on real footage). `run` reports either as the clip's \"distance\".")
@click.option("--keep", default=0.95, show_default=True, type=float,
              help="Fraction of in-class test clips the threshold keeps; the rest of the score range is flagged.")
@click.option("--real", "real_labels", type=click.Path(path_type=Path), metavar="LABELS.csv",
              help="Set the threshold on real in-class videos instead (video,label,split; skeletons from --cache).")
@click.option("--cache", "cache_dir", default="data_cache", show_default=True, type=click.Path(path_type=Path),
              help="Extraction cache holding the --real videos' skeletons.")
@click.option("--real-split", default="dev", show_default=True, help="Split of --real whose in-class clips count.")
@click.option("--quality", default="low", show_default=True, type=click.Choice(["low", "high"]),
              help="Skeleton tier of --real the model is fed at run time.")
@layout_option
@source_layout_option
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the --corrupt draw.")
@click.option("--threads", type=click.IntRange(1), default=None, help=THREADS_HELP)
def calibrate_cmd(model_path: Path, data: Path, out: Path | None, corrupt: str | None, score: str, keep: float,
                  real_labels: Path | None, cache_dir: Path, real_split: str, quality: str,
                  layout: str | None, source_layout: str | None, seed: int, threads: int | None) -> None:
    """Fit the open-set rule of a checkpoint (by --score: the Mahalanobis distance of its pooled features to the
    nearest class mean, or the energy of its logits; threshold at the --keep quantile of held-out in-class clips)
    and store it in the checkpoint, so that `pipeline run` flags clips of actions the model does not know. `train`
    and `distill` fit the Mahalanobis rule themselves."""
    vet_output(out or model_path, inputs=[data] + ([real_labels] if real_labels else []))
    set_threads(threads)
    real = RealClips(real_labels, cache_dir, real_split, quality) if real_labels is not None else None
    r = calibrate_checkpoint(model_path, data, out or model_path, layout=layout, source_layout=source_layout,
                             corrupt=corrupt, keep=keep, seed=seed, real=real,
                             kind=ENERGY if score == "energy" else RULE)
    for s in r["skipped"]:
        click.echo(f"skipped {s}", err=True)
    click.echo(f"wrote {r['out']}: {r['rule']} threshold {r['threshold']} keeps {keep:.0%} of {r['n_calib']} "
               f"clips of the {r['calibrated_on']} ({r['train_kept']:.1%} of {r['n_fit']} training clips)")
