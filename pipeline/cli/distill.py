"""`pipeline distill`: teacher on HQ, frozen; student on LQ of the same clips, taught by the teacher."""

from __future__ import annotations

from pathlib import Path

import click

from models.contract.paths import vet_output
from models.losses import METHODS
from models.training.distributed import check_sync_bn, distributed
from models.training.function_matching import MIXES
from models.training.policy import PRECISIONS, THREADS_HELP
from models.training.runtime import resolve_device, set_threads
from pipeline.cli.layout_opts import NAMES, source_layout_option
from pipeline.stages.distilling import make_request, run_distill


@click.command()
@click.option("--hq", required=True, type=click.Path(path_type=Path), help="High-quality skeletons (pyskl pickle).")
@click.option("--lq", type=click.Path(path_type=Path), help="Low-quality skeletons of the same clips (pickle).")
@click.option("--corrupt", "corrupt_spec", metavar="SPEC",
              help="Simulate LQ from HQ instead of --lq, e.g. drop=0.6,impute=3,jitter=0.02,framedrop=0.1.")
@click.option("--layout", default=None, metavar="NAME|FILE.json",
              help=f"Layout to work in ({NAMES}); both sides are converted to it by joint name, and a pickle that "
                   "stores no layout and has this joint count is read as it (default: HQ's).")
@source_layout_option
@click.option("--method", default="skd", show_default=True,
              type=click.Choice(list(METHODS)), help="; ".join(f"{k} = {m.help}" for k, m in METHODS.items()) + ".")
@click.option("--grad-revision/--no-grad-revision", default=True, show_default=True,
              help="Project distillation gradients that conflict with the classification gradient.")
@click.option("--revision-mode", default=None, type=click.Choice(["global", "per_tensor", "tail"]),
              help="Project over all student parameters at once (global: the authors'), per parameter tensor, or "
                   "decide the projection on the last --revision-blocks blocks + head only (tail: cheaper) "
                   "[default: the method's: tail for skd, none for dkd, global otherwise].")
@click.option("--revision-blocks", default=1, show_default=True, type=click.IntRange(1, 30),
              help="Blocks of the tail revision.")
@click.option("--teacher", "teacher_ckpt", type=click.Path(path_type=Path),
              help="Reuse a trained teacher checkpoint (else one is trained on HQ and saved as RUN/teacher.pt).")
@click.option("--epochs", default=30, show_default=True, type=click.IntRange(1), help="Student epochs.")
@click.option("--teacher-epochs", type=click.IntRange(1), help="Teacher epochs [default: --epochs].")
@click.option("--student-width", default=1.0, show_default=True, type=click.FloatRange(0.05, 4.0),
              help="Student channel width multiplier (the teacher uses --teacher-width).")
@click.option("--teacher-width", default=1.0, show_default=True, type=click.FloatRange(0.05, 4.0))
@click.option("--depth", default=10, show_default=True, type=click.IntRange(1, 30), help="GCN blocks of both nets.")
@click.option("--length", default=64, show_default=True, type=click.IntRange(4), help="Frames sampled per clip.")
@click.option("--score/--no-score", "use_score", default=True, show_default=True,
              help="The keypoint score as a student input channel; --no-score when the deployed estimator's scores "
                   "are not calibrated like the LQ data's (the teacher goes without it on constant-score HQ).")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1))
@click.option("--lr", default=0.1, show_default=True, type=float)
@click.option("--tau", default=None, type=click.FloatRange(min=0, min_open=True),
              help="Temperature of the logit term (scaled by tau^2) [default: the method's: 4 for dkd, else 1].")
@click.option("--weights", default="", metavar="K=V,...",
              help="Loss weights, e.g. kd=1,node=0.1,edge=1,mid_edge=1,fitnet=1,rkd_dist=25,rkd_angle=50,at=1000,dkd=1,"
                   "ce=1 [default: the method's].")
@click.option("--mix", default="none", show_default=True, type=click.Choice(MIXES),
              help="Function matching: teacher and student see the same mix of their windows (mixup across clips, "
                   "cutmix in time, or either per batch); CE follows the mixed labels.")
@click.option("--mix-alpha", default=1.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Strength of --mix: the mixing weight is drawn from Beta(alpha, alpha).")
@click.option("--train-fraction", default=1.0, show_default=True, type=click.FloatRange(0.01, 1.0),
              help="Label this fraction of the training clips (stratified); the rest are unlabeled pairs for the "
                   "distillation terms unless --no-unlabeled-rest.")
@click.option("--unlabeled", type=click.Path(path_type=Path), metavar="HQ_U.pkl",
              help="HQ skeletons of clips without labels: every clip feeds the distillation terms (no CE).")
@click.option("--unlabeled-lq", type=click.Path(path_type=Path), metavar="LQ_U.pkl",
              help="LQ of the --unlabeled clips [default: corrupted from them with --corrupt].")
@click.option("--unlabeled-rest/--no-unlabeled-rest", default=True, show_default=True,
              help="With --train-fraction < 1, use the train clips left out of the labels as unlabeled pairs.")
@click.option("--allow-unpaired", is_flag=True, help="Drop clips that do not pair instead of failing.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--eval-every", default=1, show_default=True, type=click.IntRange(1),
              help="Evaluate the test split every N epochs (and after the last).")
@click.option("--precision", default="fp32", show_default=True, type=click.Choice(PRECISIONS),
              help="Training forward precision; bf16 is ~2x faster on CPUs with AVX-512 BF16.")
@click.option("--threads", type=click.IntRange(1), default=None, help=THREADS_HELP)
@click.option("--workers", default=0, show_default=True, type=click.IntRange(0), help="DataLoader workers.")
@click.option("--device", default="cpu", show_default=True,
              help="cpu, cuda or cuda:N (under torchrun, cuda means one GPU per rank: cuda:LOCAL_RANK).")
@click.option("--amp/--no-amp", default=True, show_default=True,
              help="Mixed precision (bfloat16 autocast) on CUDA; no effect on a CPU.")
@click.option("--sync-bn", is_flag=True,
              help="Under torchrun on CUDA: BatchNorm statistics over the whole batch, not each rank's slice.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run folder.")
def distill(hq: Path, lq: Path | None, corrupt_spec: str | None, layout: str | None, source_layout: str | None,
            method: str,
            grad_revision: bool, revision_mode: str | None, revision_blocks: int, teacher_ckpt: Path | None,
            epochs: int,
            teacher_epochs: int | None, student_width: float, teacher_width: float, depth: int, length: int,
            use_score: bool, batch_size: int, lr: float, tau: float | None, weights: str, mix: str,
            mix_alpha: float, train_fraction: float,
            unlabeled: Path | None, unlabeled_lq: Path | None, unlabeled_rest: bool, allow_unpaired: bool,
            seed: int, eval_every: int, precision: str, threads: int | None, workers: int, device: str, amp: bool,
            sync_bn: bool, resume: bool, quiet: bool, out: Path
            ) -> None:
    """Train a teacher on HQ skeletons (or reuse --teacher), freeze it, and distil a student on LQ skeletons.

    Writes RUN/teacher.pt, RUN/student.pt, RUN/metrics.json (teacher HQ/LQ top-1, student LQ top-1/top-5),
    per-epoch CSVs and plots. Pairs without labels (--unlabeled, and by default the train clips that
    --train-fraction leaves unlabeled) add distillation terms only: an epoch then also goes over them.
    Under `torchrun --nproc_per_node N -m pipeline distill ...` each rank takes its
    slice of every batch (--batch-size is the global batch) and rank 0 writes the files.
    """
    import json

    vet_output(out, folder=True, inputs=[hq, lq, teacher_ckpt, unlabeled, unlabeled_lq])
    set_threads(threads)
    with distributed(device) as dist:
        dev = dist.device if dist is not None else resolve_device(device)
        if sync_bn:
            check_sync_bn(dist)  # before anything is written
        req = make_request(method=method, grad_revision=revision_mode if grad_revision else "none", epochs=epochs,
                           teacher_epochs=teacher_epochs, student_width=student_width, teacher_width=teacher_width,
                           depth=depth, length=length, batch_size=batch_size, lr=lr, tau=tau, weights=weights,
                           train_fraction=train_fraction, allow_unpaired=allow_unpaired, seed=seed,
                           workers=workers, device=str(dev), amp=amp, sync_bn=sync_bn,
                           precision=precision, eval_every=eval_every, revision_blocks=revision_blocks,
                           unlabeled_rest=unlabeled_rest, use_score=use_score, mix=mix, mix_alpha=mix_alpha)
        m = run_distill(hq, out, req, lq_path=lq, corrupt=corrupt_spec, layout=layout,
                        unlabeled=unlabeled, unlabeled_lq=unlabeled_lq,
                        source_layout=source_layout, teacher_ckpt=teacher_ckpt,
                        resume=resume, progress=not quiet and (dist is None or dist.is_main), dist=dist)
    if dist is not None and not dist.is_main:
        return
    summary = {"teacher": {k: m["teacher"][k] for k in ("hq_top1", "lq_top1")},
               "student": {k: m["student"][k] for k in ("lq_top1", "lq_top5")}, "method": m["method"]}
    click.echo(f"wrote {out / 'metrics.json'}: {json.dumps(summary)}")
