"""The student's training loop: a frozen teacher on HQ, the student on LQ of the same clips.

Per step: the teacher (eval mode, no gradient) gives logits and last-block features on the HQ window; the student
gives the same on the LQ window (same frames, same augmentation); CE on labels plus the method's distillation
terms; with gradient revision the distillation gradients that conflict with CE's are projected (see
models/grad_revision.py), otherwise the weighted sum is back-propagated once.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.contract.atomic import atomic_path, atomic_savefig
from models.contract.errors import BadInput
from models.grad_revision import FeatureTap, RevisionMeter, revise_and_backward
from models.losses import DistillConfig, DistillLosses
from models.net.stgcn import STGCN
from models.training.classifier import TrainConfig, make_optimizer, make_scheduler, train_loader, write_csv
from models.training.distributed import DistContext, amp_active, autocast, evaluate_on, sync_batchnorm

STATE_FORMAT = "skd-pipeline/distill-state"


@dataclass
class StudentHistory:
    rows: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    skipped_steps: int = 0
    steps: int = 0


def distill_step(teacher: STGCN, student: STGCN, losses: DistillLosses, x_hq: torch.Tensor, x_lq: torch.Tensor,
                 y: torch.Tensor, dcfg: DistillConfig, params: list[torch.Tensor],
                 split: FeatureTap | None, label_smoothing: float = 0.0, *, dist: DistContext | None = None,
                 amp: bool = False) -> tuple[dict[str, torch.Tensor], dict]:
    """Forward both nets, compute every loss, fill `.grad` of `params`; returns (losses, revision stats).

    A step whose losses are not all finite fills nothing and returns `{"skipped": 1.0}` in the stats. With `dist`
    the `.grad` filled is the ranks' average (weighted by batch slice), taken before the revision's projection,
    and a step is skipped on every rank when any rank's losses are not finite. `amp`: bfloat16 forwards on CUDA.
    """
    with torch.no_grad(), autocast(x_hq.device, amp):
        z_t, f_t = teacher(x_hq, return_features=True)
    # Through the splitter when revising: it cuts the student at the distilled layer (see FeatureTap).
    with autocast(x_lq.device, amp):
        z_s, f_s = (split if split is not None else student)(x_lq, return_features=True)
    if amp_active(x_lq.device, amp):  # the losses in float32
        z_t, f_t, z_s, f_s = z_t.float(), f_t.float(), z_s.float(), f_s.float()
    terms: dict[str, torch.Tensor] = {"ce": dcfg.ce_weight * F.cross_entropy(z_s, y, label_smoothing=label_smoothing)}
    if dcfg.method != "none":
        persons = f_s.shape[0] // x_lq.shape[0]  # the model pads persons up to its max_persons
        terms.update(losses(z_s, f_s, z_t, f_t, persons=persons))
    finite = all(bool(torch.isfinite(v)) for v in terms.values())
    if dist is not None:
        finite = dist.all_true(finite)
    if not finite:
        return terms, {"skipped": 1.0}
    stats: dict = {}
    if split is not None and len(terms) > 1:
        stats = revise_and_backward(terms, "ce", params, mode=dcfg.grad_revision, impl=dcfg.revision_impl,
                                    split=split, reduce=dist.reducer(len(y)) if dist is not None else None)
    else:
        torch.stack(list(terms.values())).sum().backward()
        if dist is not None:
            dist.average_gradients(params, len(y))
    terms["_logits"] = z_s.detach()
    return terms, stats


def train_student(teacher: STGCN, student: STGCN, losses: DistillLosses, train_set, test_set, cfg: TrainConfig,
                  dcfg: DistillConfig, out: Path, *, resume: bool = False, progress: bool = True,
                  num_classes: int, dist: DistContext | None = None) -> tuple[StudentHistory, dict | None]:
    """Train `student` (and the losses' adapters) for `cfg.epochs`; evaluates on `test_set` (LQ clips).

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
    iters = len(train_loader(train_set, cfg, 0))
    if iters == 0:
        raise BadInput("the training split is empty")
    optimizer = make_optimizer(params, cfg)
    scheduler = make_scheduler(optimizer, cfg, iters)
    hist = StudentHistory()
    state_path = out / "student_last.pt"
    start = _load_state(state_path, student, losses, optimizer, scheduler, hist) if resume and state_path.exists() \
        else 0
    if dist is not None:
        dist.broadcast_module(student)
        dist.broadcast_module(losses)
    main = dist is None or dist.is_main
    if cfg.sync_bn:
        student = sync_batchnorm(student, dist)
        if dcfg.revision_impl in ("auto", "jvp"):  # forward-mode AD does not go through SyncBatchNorm
            dcfg = replace(dcfg, revision_impl="naive")
    revise = dcfg.method != "none" and dcfg.grad_revision != "none"
    split = FeatureTap(student, student.blocks[-1]) if revise else None
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=cfg.epochs * iters, initial=min(start, cfg.epochs) * iters, unit="it",
                   desc=f"student ({dcfg.method})", dynamic_ncols=True)
    last_eval = None
    try:
        for epoch in range(start, cfg.epochs):
            t0 = time.perf_counter()
            student.train()
            meter = RevisionMeter()
            sums: dict[str, float] = {}
            correct = seen = skipped = 0
            for x_hq, x_lq, y in train_loader(train_set, cfg, epoch):
                x_hq, x_lq, y = x_hq.to(device), x_lq.to(device), y.to(device)
                optimizer.zero_grad(set_to_none=True)
                terms, stats = distill_step(teacher, student, losses, x_hq, x_lq, y, dcfg, params, split,
                                            cfg.label_smoothing, dist=dist, amp=cfg.amp)
                ok = "skipped" not in stats
                if ok:
                    norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
                    ok = bool(torch.isfinite(norm))
                if ok:
                    optimizer.step()
                    meter.update(stats)
                    for k, v in terms.items():
                        if not k.startswith("_"):
                            sums[k] = sums.get(k, 0.0) + float(v.detach()) * len(y)
                    correct += int((terms["_logits"].argmax(1) == y).sum())
                    seen += len(y)
                else:
                    skipped += 1  # a non-finite loss or gradient is counted, never applied
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                hist.steps += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(epoch=epoch + 1, ce=f"{sums.get('ce', 0) / max(seen, 1):.3f}",
                                    acc=f"{correct / max(seen, 1):.3f}", refresh=False)
            if dist is not None:  # the epoch's numbers over the whole batches, not this rank's slices
                sums = dist.sum_dict(sums)
                correct, seen = (int(v) for v in dist.sum_floats([correct, seen]))
                dist.average_buffers(student)
            hist.train_seconds += time.perf_counter() - t0
            hist.skipped_steps += skipped
            row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                   "train_top1": correct / seen if seen else float("nan"), "skipped_steps": skipped,
                   "epoch_seconds": round(time.perf_counter() - t0, 3)}
            row.update({f"loss_{k}": v / max(seen, 1) for k, v in sums.items()})
            row.update(meter.summary())
            if test_set is not None and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
                last_eval = evaluate_on(student, test_set, cfg, device, num_classes, dist)
                row.update(test_top1=last_eval["top1"], test_top5=last_eval["top5"])
            hist.rows.append(row)
            if main:
                _write_csv(out / "student_metrics.csv", hist.rows)
                _plot(out / "student_curves.png", hist.rows)
                _save_state(state_path, epoch + 1, student, losses, optimizer, scheduler, hist)
            if bar is not None:
                bar.write(_line(row))
    finally:
        if bar is not None:
            bar.close()
        if split is not None:
            split.remove()
    if test_set is not None and last_eval is None:
        last_eval = evaluate_on(student, test_set, cfg, device, num_classes, dist)
    student.cpu()
    losses.cpu()
    return hist, last_eval


def _line(row: dict) -> str:
    s = f"student epoch {row['epoch']}: ce {row.get('loss_ce', float('nan')):.4f} train {row['train_top1']:.3f}"
    if "test_top1" in row:
        s += f" LQ test top1 {row['test_top1']:.4f}"
    conflicts = [f"{k.split('/')[1]} {v:.0%}" for k, v in row.items() if k.startswith("conflict/")]
    if conflicts:
        s += " | revised: " + ", ".join(conflicts)
    return s + f" ({row['epoch_seconds']:.1f}s)"


def _write_csv(path: Path, rows: list[dict]) -> None:
    # The columns depend on the method's loss terms, so they are collected from the rows.
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    write_csv(path, rows, keys)


def _plot(path: Path, rows: list[dict]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for k in [k for k in rows[-1] if k.startswith("loss_")]:
        ax1.plot(ep, [r.get(k, np.nan) for r in rows], label=k[5:])
    ax1.set_yscale("log")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("weighted loss")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.plot(ep, [r["train_top1"] for r in rows], label="train top-1 (LQ, augmented)")
    te = [(r["epoch"], r["test_top1"]) for r in rows if "test_top1" in r]
    if te:
        ax2.plot(*zip(*te), "o-", label="LQ test top-1")
    ax2.set_ylim(0, 1.01)
    ax2.set_xlabel("epoch")
    ax2.legend()
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    atomic_savefig(fig, path)


def _save_state(path: Path, epoch: int, student: nn.Module, losses: nn.Module, optimizer, scheduler,
                hist: StudentHistory) -> None:
    state = {"format": STATE_FORMAT, "version": 1, "epoch": epoch,
             "student": {k: v.detach().cpu() for k, v in student.state_dict().items()},
             "losses": {k: v.detach().cpu() for k, v in losses.state_dict().items()},
             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "rng_torch": torch.get_rng_state(), "rows": hist.rows, "train_seconds": hist.train_seconds,
             "skipped_steps": hist.skipped_steps, "steps": hist.steps}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_state(path: Path, student: nn.Module, losses: nn.Module, optimizer, scheduler,
                hist: StudentHistory) -> int:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or foreign file: one line, never a traceback
        raise BadInput(f"cannot resume from this file ({type(e).__name__})", path) from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise BadInput("not a distillation state file", path)
    try:
        student.load_state_dict(state["student"])
        losses.load_state_dict(state["losses"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise BadInput(f"the run was started with other options ({str(e).splitlines()[0][:120]}); resume with "
                       f"the same ones", path) from None
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng_torch"])
    hist.rows = list(state["rows"])
    hist.train_seconds = float(state["train_seconds"])
    hist.skipped_steps = int(state["skipped_steps"])
    hist.steps = int(state["steps"])
    return int(state["epoch"])
