"""`pipeline train` and `pipeline eval`: train an ST-GCN on a pyskl pickle; score a checkpoint on one (or, with
`eval --videos`, `pipeline run` on labelled videos: pipeline/cli/eval_videos.py)."""

from __future__ import annotations

from pathlib import Path

import click

from models.contract.errors import BadInput
from models.contract.paths import vet_output
from models.training.distributed import check_sync_bn, distributed
from models.training.policy import DEFAULT_STEPS, DEFAULT_THREADS, PRECISIONS, THREADS_HELP
from models.training.runtime import resolve_device, set_threads
from pipeline.cli.eval_videos import check_inputs, eval_videos, video_eval_options
from pipeline.cli.layout_opts import layout_option, source_layout_option
from pipeline.stages.training import eval_from_pickle, request_from_options, train_from_pickle


@click.command("train")
@click.option("--data", required=True, type=click.Path(path_type=Path), help="Training data: a pyskl pickle.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run folder for model.pt, metrics, plots.")
@layout_option
@source_layout_option
@click.option("--config", "config_file", default=None, type=click.Path(path_type=Path),
              help="TOML file setting any of these options by name (command-line options win).")
@click.option("--steps", type=click.IntRange(1), default=None,
              help=f"Optimizer steps, whatever the data set's size [{DEFAULT_STEPS} when --epochs is not given].")
@click.option("--epochs", type=click.IntRange(1), default=None, help="Epochs instead of --steps.")
@click.option("--seed", type=int, default=None, help="Random seed [0].")
@click.option("--batch-size", type=int, default=None, help="Batch size [32].")
@click.option("--lr", type=float, default=None, help="Peak learning rate, SGD Nesterov [0.1].")
@click.option("--weight-decay", type=float, default=None, help="Weight decay [5e-4].")
@click.option("--warmup", type=float, default=None, help="Linear warm-up epochs [5].")
@click.option("--schedule", type=click.Choice(["cosine", "step"]), default=None, help="LR schedule [cosine].")
@click.option("--milestones", default=None, help="Step schedule: epochs where the LR drops x0.1, e.g. 30,40.")
@click.option("--label-smoothing", type=float, default=None, help="Label smoothing [0].")
@click.option("--width", type=float, default=None, help="Channel width multiplier (0.5 = half) [1.0].")
@click.option("--depth", type=int, default=None, help="ST-GCN blocks [10].")
@click.option("--dropout", type=float, default=None, help="Dropout inside the blocks [0].")
@click.option("--length", type=int, default=None, help="Frames sampled per clip [64].")
@click.option("--features", default=None, help="Comma-separated: joint, bone, motion [joint].")
@click.option("--score/--no-score", "use_score", default=None, help="Keypoint score as an input channel [on].")
@click.option("--max-persons", type=int, default=None, help="Persons per clip (capped to the data's) [2].")
@click.option("--flip/--no-flip", "aug_flip", default=None, help="Left-right flip augmentation [on].")
@click.option("--aug-scale", type=float, default=None, help="Random per-axis scale +-s [0.1].")
@click.option("--aug-rotation", type=float, default=None, help="Random rotation +-degrees [10].")
@click.option("--test-clips", type=int, default=None, help="Windows per test clip, averaged [1].")
@click.option("--eval-every", type=int, default=None, help="Evaluate the test split every N epochs [1].")
@click.option("--train-split", default=None, help="Split to train on [train].")
@click.option("--test-split", default=None, help="Split to test on [test].")
@click.option("--precision", type=click.Choice(PRECISIONS), default=None,
              help="Training forward precision; bf16 is ~2x faster on CPUs with AVX-512 BF16 [fp32].")
@click.option("--workers", type=int, default=None, help="DataLoader worker processes [0].")
@click.option("--threads", type=click.IntRange(1), default=None, help=THREADS_HELP)
@click.option("--device", default=None,
              help="cpu, cuda or cuda:N [cpu]; under torchrun, cuda means one GPU per rank (cuda:LOCAL_RANK).")
@click.option("--amp/--no-amp", default=None,
              help="Mixed precision (bfloat16 autocast) on CUDA [on]; no effect on a CPU.")
@click.option("--sync-bn/--no-sync-bn", default=None,
              help="Under torchrun on CUDA: BatchNorm statistics over the whole batch, not each rank's slice [off].")
@click.option("--resume", is_flag=True, help="Continue the interrupted run in --out (from its last.pt).")
@click.option("--overwrite", is_flag=True, help="Start over in an --out that already holds a run.")
@click.option("--quiet", is_flag=True, help="No progress output.")
def train(data: Path, out: Path, layout: str | None, source_layout: str | None, config_file: Path | None,
          resume: bool, overwrite: bool, quiet: bool, threads: int | None, **options) -> None:
    """Train an ST-GCN classifier on the train split of DATA; test on its test split.

    Writes OUT/model.pt (checkpoint with layout, classes and configuration), OUT/metrics.json
    ({"classes", "test_top1", "test_top5", "epochs", "steps", "train_seconds", ...}), OUT/metrics.csv, OUT/curves.png,
    OUT/confusion.png, and OUT/last.pt after every epoch for --resume. Under `torchrun --nproc_per_node N -m
    pipeline train ...` each rank takes its slice of every batch (--batch-size is the global batch).
    """
    import json

    vet_output(out, folder=True, inputs=[data, config_file])
    set_threads(threads)
    with distributed(options["device"]) as dist:
        if dist is not None:
            options["device"] = str(dist.device)
        elif options["device"] is not None:
            options["device"] = str(resolve_device(options["device"]))
        if options["sync_bn"]:
            check_sync_bn(dist)  # before anything is written
        req, explicit = request_from_options(options, config_file)
        metrics = train_from_pickle(data, out, req, layout=layout, source_layout=source_layout, resume=resume,
                                    overwrite=overwrite, progress=not quiet and (dist is None or dist.is_main),
                                    explicit=explicit,
                                    dist=dist)
    if dist is not None and not dist.is_main:
        return
    summary = {k: metrics[k] for k in ("test_top1", "test_top5", "epochs", "steps", "train_seconds")}
    click.echo(f"wrote {out / 'model.pt'} and {out / 'metrics.json'}: {json.dumps(summary)}")


@click.command("eval")
@click.option("--model", "model_path", type=click.Path(path_type=Path),
              help="Checkpoint (.pt) [--videos: the bundled student].")
@click.option("--data", type=click.Path(path_type=Path), help="A pyskl pickle.")
@video_eval_options
@click.option("--split", default=None, help="Split of DATA to score [test]; --videos: only rows of this split [all].")
@layout_option
@source_layout_option
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--test-clips", type=click.IntRange(1), default=None, help="Windows per clip, averaged [as trained].")
@click.option("--threads", type=click.IntRange(1), default=None, help=THREADS_HELP)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"top1", "top5", "n"} as JSON (--videos: {"summary", "clips"}).')
@click.pass_context
def eval_cmd(ctx: click.Context, model_path: Path | None, data: Path | None, split: str | None, layout: str | None,
             source_layout: str | None, batch_size: int, test_clips: int | None, threads: int | None, device: str,
             as_json: bool, videos: Path | None, **video_opts) -> None:
    """Top-1 and top-5 accuracy of a checkpoint on a split of a pickle; or, with --videos, how `pipeline run`
    labels labelled videos (top-1, top-3, per class, confusion, the unknown-action flag; --report for a page)."""
    import json

    check_inputs(ctx, data, videos)
    set_threads(threads)
    if videos is not None:
        eval_videos(videos, model_path, split=split, threads=threads or DEFAULT_THREADS,
                    device=str(resolve_device(device)), as_json=as_json, **video_opts)
        return
    if model_path is None:
        raise BadInput("--data needs --model CKPT")
    split = split or "test"
    res = eval_from_pickle(model_path, data, split=split, layout=layout, source_layout=source_layout,
                           batch_size=batch_size,
                           num_test_clips=test_clips, device=str(resolve_device(device)))
    if as_json:
        click.echo(json.dumps(res))
    else:
        click.echo(f"{data} [{split}]: top-1 {res['top1']:.4f}  top-5 {res['top5']:.4f}  n {res['n']}")
