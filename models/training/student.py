"""Distillation: a frozen teacher on HQ, the student on LQ of the same clips, in the shared loop (`fit`).

Per step: the teacher (eval mode, no gradient) gives logits and last-block features on the HQ window; the student
gives the same on the LQ window (same frames, same augmentation); CE on labels plus the method's distillation
terms; with gradient revision the distillation gradients that conflict with CE's are projected (see
models/grad_revision.py; the "tail" mode's parameters: models/revision_subset.py), otherwise the weighted sum is
back-propagated once. A clip labeled -1 (UNLABELED: a pair without a label) feeds the distillation terms only.
A method that reads middle blocks gets their outputs through forward hooks on both nets (BlockTap); the terms
also get the LQ window the student was fed (`x_s`; skd's `rel` reads which joints it lacks).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from models.grad_revision import FeatureTap, revise_and_backward
from models.losses.distill import DistillConfig, DistillLosses
from models.losses.multiblock import BlockTap
from models.net.stgcn import STGCN
from models.revision_subset import tail_parameters
from models.training.config import TrainConfig
from models.training.distributed import DistContext, sync_batchnorm
from models.training.fit import RunFiles, Step, StepOut, fit
from models.training.function_matching import Mix, apply_mix, draw_mix, mixed_ce
from models.training.history import History, plot_student_curves, student_line
from models.training.runtime import amp_active, autocast, cpu_autocast
from models.training.state import STUDENT_STATE

UNLABELED = -1  # the label of a pair without one: no CE term


def labeled_ce(z: Tensor, y: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy over the clips with a label (y >= 0); exactly 0 (still in the graph) when none has one."""
    keep = y >= 0
    if bool(keep.all()):
        return F.cross_entropy(z, y, label_smoothing=label_smoothing)
    if not bool(keep.any()):
        return z.sum() * 0.0
    return F.cross_entropy(z[keep], y[keep], label_smoothing=label_smoothing)


def distill_step(teacher: STGCN, student: STGCN, losses: DistillLosses, x_hq: torch.Tensor, x_lq: torch.Tensor,
                 y: torch.Tensor, dcfg: DistillConfig, params: list[torch.Tensor],
                 tap: FeatureTap | None, label_smoothing: float = 0.0, *, dist: DistContext | None = None,
                 amp: bool = False, precision: str = "fp32", subset: list[Tensor] | None = None,
                 block_taps: tuple[BlockTap, BlockTap] | None = None,
                 mix: Mix | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Forward both nets, compute every loss, fill `.grad` of `params`; returns (losses, revision stats).

    A step whose losses are not all finite fills nothing and returns `{"skipped": 1.0}` in the stats. With `dist`
    the `.grad` filled is the ranks' average (weighted by batch slice), taken before the revision's projection,
    and a step is skipped on every rank when any rank's losses are not finite. `amp`: bfloat16 forwards on CUDA;
    `precision` "bf16": bfloat16 forwards on a CPU (the losses stay float32). `subset`: the "tail" revision's
    parameters; `block_taps`: (student's, teacher's) hooks on the method's middle blocks. `mix`: function
    matching, the same mix applied to the HQ and the LQ window; CE then follows the mixed labels (`mixed_ce`).
    """
    x_hq, x_lq = apply_mix(x_hq, mix), apply_mix(x_lq, mix)
    with torch.no_grad(), autocast(x_hq.device, amp), cpu_autocast(precision, x_hq.device):
        z_t, f_t = teacher(x_hq, return_features=True)
    # Through the tap when revising: it cuts the student at the distilled layer (see FeatureTap).
    with autocast(x_lq.device, amp), cpu_autocast(precision, x_lq.device):
        z_s, f_s = (tap if tap is not None else student)(x_lq, return_features=True)
    if amp_active(x_lq.device, amp) or precision == "bf16":  # the losses in float32
        z_t, f_t, z_s, f_s = z_t.float(), f_t.float(), z_s.float(), f_s.float()
    ce = labeled_ce(z_s, y, label_smoothing) if mix is None else mixed_ce(z_s, y, mix, label_smoothing)
    terms: dict[str, torch.Tensor] = {"ce": dcfg.ce_weight * ce}
    if dcfg.method != "none":
        persons = f_s.shape[0] // x_lq.shape[0]  # the model pads persons up to its max_persons
        b_s = b_t = None
        if block_taps is not None:
            b_s, b_t = block_taps[0].features(), block_taps[1].features()
            if amp_active(x_lq.device, amp) or precision == "bf16":
                b_s, b_t = [f.float() for f in b_s], [f.float() for f in b_t]
        terms.update(losses(z_s, f_s, z_t, f_t, persons=persons, blocks_s=b_s, blocks_t=b_t, x_s=x_lq))
    finite = all(bool(torch.isfinite(v)) for v in terms.values())
    if dist is not None:
        finite = dist.all_true(finite)
    if not finite:
        return terms, {"skipped": 1.0}
    stats: dict = {}
    if (tap is not None or subset is not None) and len(terms) > 1:
        stats = revise_and_backward(terms, "ce", params, mode=dcfg.grad_revision, impl=dcfg.revision_impl,
                                    split=tap, subset=subset, reduce=dist.reducer(len(y)) if dist is not None else None)
    else:
        torch.stack(list(terms.values())).sum().backward()
        if dist is not None:
            dist.average_gradients(params, len(y))
    terms["_logits"] = z_s.detach()
    return terms, stats


def student_step(teacher: STGCN, student: STGCN, losses: DistillLosses, cfg: TrainConfig, dcfg: DistillConfig,
                 params: list[Tensor], tap: FeatureTap | None, dist: DistContext | None = None,
                 subset: list[Tensor] | None = None, block_taps: tuple[BlockTap, BlockTap] | None = None) -> Step:
    """`distill_step` as the loop's step function (batches of HQ window, LQ window, label)."""
    device = torch.device(cfg.device)
    # The mixes' own stream (seeded by the run's seed, not by the batch order; a resumed run draws anew).
    rng = np.random.default_rng([cfg.seed, 0x6D6978])

    def step(batch: tuple[Tensor, ...]) -> StepOut:
        x_hq, x_lq, y = (t.to(device) for t in batch)
        mix = draw_mix(dcfg.mix, dcfg.mix_alpha, x_hq.shape[0], x_hq.shape[2], rng)
        terms, stats = distill_step(teacher, student, losses, x_hq, x_lq, y, dcfg, params, tap,
                                    cfg.label_smoothing, dist=dist, amp=cfg.amp, precision=cfg.precision,
                                    subset=subset, block_taps=block_taps, mix=mix)
        logits = terms.pop("_logits", None)  # absent when the step was skipped
        if mix is not None and mix.lam < 0.5:  # a mixed clip's training accuracy: the larger share's label
            y = y[mix.perm.to(y.device)]
        keep = y >= 0  # the training accuracy counts labeled clips only
        if logits is not None and not bool(keep.all()):
            logits, y = logits[keep], y[keep]
        return StepOut({k: v.detach() for k, v in terms.items()}, logits, y, stats)

    return step


def _row(r: dict, ev: dict | None) -> dict:
    return {**r, **({"test_top1": ev["top1"], "test_top5": ev["top5"]} if ev else {})}


def train_student(teacher: STGCN, student: STGCN, losses: DistillLosses, train_set, test_set, cfg: TrainConfig,
                  dcfg: DistillConfig, out: Path, *, resume: bool = False, progress: bool = True,
                  num_classes: int, dist: DistContext | None = None,
                  stop_after_epoch: int | None = None) -> tuple[History, dict | None]:
    """Train `student` (and the losses' adapters) for `cfg`'s budget; evaluates on `test_set` (LQ clips).

    Writes `out/student_metrics.csv`, `out/student_curves.png` and `out/student_last.pt` each epoch (resumable).
    `dist` (under torchrun; `train_set` sharded with `dist.shard`): gradients averaged across ranks, epoch
    metrics summed over ranks, evaluation sharded, files written by rank 0 only.
    """
    device = torch.device(cfg.device)
    teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student.to(device)
    losses.to(device)
    params = [p for p in list(student.parameters()) + list(losses.parameters()) if p.requires_grad]
    if cfg.sync_bn:
        student = sync_batchnorm(student, dist)
        if dcfg.revision_impl in ("auto", "jvp"):  # forward-mode AD does not go through SyncBatchNorm
            dcfg = replace(dcfg, revision_impl="naive")
    revise = dcfg.method != "none" and dcfg.grad_revision != "none"
    subset = None
    if revise and dcfg.grad_revision == "tail":
        subset = tail_parameters(student, losses, dcfg.revision_blocks)
    tap = FeatureTap(student, student.blocks[-1]) if revise and subset is None else None
    mids = losses.blocks(len(student.blocks)) if dcfg.method != "none" else ()
    if mids and len(teacher.blocks) != len(student.blocks):
        raise ValueError(f"terms on middle blocks need nets of equal depth, got {len(student.blocks)} and "
                         f"{len(teacher.blocks)}")
    block_taps = (BlockTap(student, mids), BlockTap(teacher, mids)) if mids else None
    files = RunFiles(state=out / "student_last.pt", state_format=STUDENT_STATE, csv=out / "student_metrics.csv",
                     plot=out / "student_curves.png", plot_fn=plot_student_curves, line=student_line, row=_row,
                     hint="a shorter --length (32), --no-grad-revision, or a GPU (--device cuda)")
    try:
        hist, last_eval, _ = fit(student_step(teacher, student, losses, cfg, dcfg, params, tap, dist, subset,
                                              block_taps),
                                 {"student": student, "losses": losses}, params, train_set, test_set, cfg, files,
                                 eval_model=student, num_classes=num_classes,
                                 resume=resume and files.state.exists(), progress=progress,
                                 desc=f"student ({dcfg.method})", dist=dist, stop_after_epoch=stop_after_epoch)
    finally:
        if tap is not None:
            tap.remove()
        for bt in block_taps or ():
            bt.remove()
    student.cpu()
    losses.cpu()
    return hist, last_eval
