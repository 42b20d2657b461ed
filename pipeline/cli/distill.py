"""`pipeline distill`: teacher on HQ, frozen; student on LQ of the same clips, taught by the teacher."""

from __future__ import annotations

from pathlib import Path

import click

from models.contract.paths import vet_output
from models.grad_revision import MODES as REVISION_MODES
from models.losses import METHODS
from models.training.distributed import check_sync_bn, distributed
from models.training.function_matching import MIXES
from models.training.policy import PRECISIONS, THREADS_HELP
from models.training.runtime import resolve_device, set_threads
from pipeline.cli.layout_opts import NAMES, source_layout_option
from pipeline.stages.distilling import STUDENT_INITS, make_request, option_defaults, run_distill

D = option_defaults()  # the defaults, read off the request's fields (shown in --help; not restated here)


@click.command()
@click.option("--hq", required=True, type=click.Path(path_type=Path), help="High-quality skeletons (pyskl pickle).")
@click.option("--lq", type=click.Path(path_type=Path), help="Low-quality skeletons of the same clips (pickle).")
@click.option("--corrupt", "corrupt_spec", metavar="SPEC",
              help="Simulate LQ from HQ instead of --lq, e.g. drop=0.6,impute=3,jitter=0.02,framedrop=0.1.")
@click.option("--layout", default=None, metavar="NAME|FILE.json",
              help=f"Layout to work in ({NAMES}); both sides are converted to it by joint name, and a pickle that "
                   "stores no layout and has this joint count is read as it (default: HQ's).")
@source_layout_option
@click.option("--config", "config_file", default=None, type=click.Path(path_type=Path),
              help="TOML file setting any of the options below that are not files, by name (e.g. method = \"kd\", "
                   "steps = 3000, student-width = 0.5); command-line options win.")
@click.option("--method", default=None,
              type=click.Choice(list(METHODS)), help="; ".join(f"{k} = {m.help}" for k, m in METHODS.items())
              + f" [{D['method']}].")
@click.option("--grad-revision/--no-grad-revision", default=None,
              help="Project distillation gradients that conflict with the classification gradient [on].")
@click.option("--revision-mode", default=None, type=click.Choice([m for m in REVISION_MODES if m != "none"]),
              help="Project over all student parameters at once (global: the authors'), per parameter tensor, or "
                   "decide the projection on the last --revision-blocks blocks + head only (tail: cheaper) "
                   "[default: the method's: tail for skd, none for dkd, global otherwise].")
@click.option("--revision-blocks", default=None, type=click.IntRange(1, 30),
              help=f"Blocks of the tail revision [{D['revision_blocks']}].")
@click.option("--teacher", "teacher_ckpt", type=click.Path(path_type=Path),
              help="Reuse a trained teacher checkpoint (else one is trained on HQ and saved as RUN/teacher.pt).")
@click.option("--steps", default=None, type=click.IntRange(1),
              help=f"Optimizer steps of the student, whatever the data set's size and the unlabeled clips, so every "
                   f"method of a comparison gets the same [{D['steps']} when --epochs is not given].")
@click.option("--epochs", default=None, type=click.IntRange(1),
              help="Student epochs instead of --steps (an epoch goes over the labeled and the unlabeled clips).")
@click.option("--teacher-epochs", default=None, type=click.IntRange(1),
              help="Teacher epochs [default: the student's budget].")
@click.option("--student-width", default=None, type=click.FloatRange(0.05, 4.0),
              help=f"Student channel width multiplier (the teacher uses --teacher-width) [{D['student_width']}].")
@click.option("--teacher-width", default=None, type=click.FloatRange(0.05, 4.0), help=f"[{D['teacher_width']}]")
@click.option("--depth", default=None, type=click.IntRange(1, 30), help=f"GCN blocks of both nets [{D['depth']}].")
@click.option("--length", default=None, type=click.IntRange(4), help=f"Frames sampled per clip [{D['length']}].")
@click.option("--score/--no-score", "use_score", default=None,
              help="The keypoint score as a student input channel; --no-score when the deployed estimator's scores "
                   "are not calibrated like the LQ data's (the teacher goes without it on constant-score HQ) [on].")
@click.option("--batch-size", default=None, type=click.IntRange(1), help=f"[{D['batch_size']}]")
@click.option("--lr", default=None, type=float, help=f"Peak learning rate [{D['lr']}].")
@click.option("--tau", default=None, type=click.FloatRange(min=0, min_open=True),
              help="Temperature of the logit term (scaled by tau^2) [default: the method's: 4 for dkd, else 1].")
@click.option("--weights", default=None, metavar="K=V,...",
              help="Loss weights, e.g. kd=1,node=0.1,edge=1,mid_edge=1,fitnet=1,rkd_dist=25,rkd_angle=50,at=1000,dkd=1,"
                   "ce=1; skd's optional terms (0 = off): xclip, trel, rel [default: the method's].")
@click.option("--mix", default=None, type=click.Choice(MIXES),
              help="Function matching: teacher and student see the same mix of their windows (mixup across clips, "
                   f"cutmix in time, or either per batch); CE follows the mixed labels [{D['mix']}].")
@click.option("--mix-alpha", default=None, type=click.FloatRange(min=0, min_open=True),
              help=f"Strength of --mix: the mixing weight is drawn from Beta(alpha, alpha) [{D['mix_alpha']}].")
@click.option("--train-fraction", default=None, type=click.FloatRange(0.01, 1.0),
              help="Label this fraction of the training clips (stratified); the rest are unlabeled pairs for the "
                   f"distillation terms unless --no-unlabeled-rest [{D['train_fraction']}].")
@click.option("--unlabeled", type=click.Path(path_type=Path), metavar="HQ_U.pkl",
              help="HQ skeletons of clips without labels: every clip feeds the distillation terms (no CE).")
@click.option("--unlabeled-lq", type=click.Path(path_type=Path), metavar="LQ_U.pkl",
              help="LQ of the --unlabeled clips [default: corrupted from them with --corrupt].")
@click.option("--unlabeled-rest/--no-unlabeled-rest", default=None,
              help="With --train-fraction < 1, use the train clips left out of the labels as unlabeled pairs [on].")
@click.option("--student-init", default=None, type=click.Choice(STUDENT_INITS),
              help="The student's starting weights: random, or a copy of the teacher's (same width, depth and "
                   f"input channels; the student then only has to learn the LQ shift) [{D['student_init']}].")
@click.option("--allow-unpaired", is_flag=True, default=None, help="Drop clips that do not pair instead of failing.")
@click.option("--seed", default=None, type=int, help=f"[{D['seed']}]")
@click.option("--eval-every", default=None, type=click.IntRange(1),
              help=f"Evaluate the test split every N epochs (and after the last) [{D['eval_every']}].")
@click.option("--precision", default=None, type=click.Choice(PRECISIONS),
              help=f"Training forward precision; bf16 is ~2x faster on CPUs with AVX-512 BF16 [{D['precision']}].")
@click.option("--threads", type=click.IntRange(1), default=None, help=THREADS_HELP)
@click.option("--workers", default=None, type=click.IntRange(0), help=f"DataLoader workers [{D['workers']}].")
@click.option("--device", default=None,
              help="cpu, cuda or cuda:N (under torchrun, cuda means one GPU per rank: cuda:LOCAL_RANK) "
                   f"[{D['device']}].")
@click.option("--amp/--no-amp", default=None,
              help="Mixed precision (bfloat16 autocast) on CUDA; no effect on a CPU [on].")
@click.option("--sync-bn", is_flag=True, default=None,
              help="Under torchrun on CUDA: BatchNorm statistics over the whole batch, not each rank's slice.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out.")
@click.option("--overwrite", is_flag=True, help="Start over in an --out that already holds a run.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run folder.")
def distill(hq: Path, lq: Path | None, corrupt_spec: str | None, layout: str | None, source_layout: str | None,
            config_file: Path | None, teacher_ckpt: Path | None, unlabeled: Path | None, unlabeled_lq: Path | None,
            threads: int | None, resume: bool, overwrite: bool, quiet: bool, out: Path, **options) -> None:
    """Train a teacher on HQ skeletons (or reuse --teacher), freeze it, and distil a student on LQ skeletons.

    Writes RUN/teacher.pt, RUN/student.pt, RUN/metrics.json (teacher HQ/LQ top-1, student LQ top-1/top-5, the
    epochs and optimizer steps run), per-epoch CSVs and plots. The budget is --steps optimizer steps unless
    --epochs is given. Pairs without labels (--unlabeled, and by default the train clips that --train-fraction
    leaves unlabeled) add distillation terms only. Under `torchrun --nproc_per_node N -m pipeline distill ...` each
    rank takes its slice of every batch (--batch-size is the global batch) and rank 0 writes the files.
    """
    import json

    vet_output(out, folder=True, inputs=[hq, lq, teacher_ckpt, unlabeled, unlabeled_lq, config_file])
    set_threads(threads)
    with distributed(options["device"]) as dist:
        if options["device"] is not None or dist is not None:
            options["device"] = str(dist.device if dist is not None else resolve_device(options["device"]))
        req = make_request(config_file, **options)
        if req.student_train.sync_bn:
            check_sync_bn(dist)  # before anything is written
        m = run_distill(hq, out, req, lq_path=lq, corrupt=corrupt_spec, layout=layout,
                        unlabeled=unlabeled, unlabeled_lq=unlabeled_lq,
                        source_layout=source_layout, teacher_ckpt=teacher_ckpt, resume=resume, overwrite=overwrite,
                        progress=not quiet and (dist is None or dist.is_main), dist=dist)
    if dist is not None and not dist.is_main:
        return
    summary = {"teacher": {k: m["teacher"][k] for k in ("hq_top1", "lq_top1")},
               "student": {k: m["student"][k] for k in ("lq_top1", "lq_top5")}, "method": m["method"],
               "steps": m["steps"]}
    click.echo(f"wrote {out / 'metrics.json'}: {json.dumps(summary)}")
