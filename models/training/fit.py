"""The one epoch loop: plain training and distillation differ only in their step function and their files.

Per step the `Step` fills `.grad` of the parameters (and reports its loss terms); the loop owns everything else:
the seeded batches, clipping, never applying a non-finite step (counted, the schedule kept in step), the
cross-rank reduction of the epoch's numbers, evaluation cadence, the progress bar, the CSV and the plot, and the
resume state written after every epoch (rank 0 only).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from models.contract.errors import BadInput
from models.grad_revision import RevisionMeter
from models.training.config import TrainConfig, make_optimizer, make_scheduler, run_plan, train_loader, warmup_problem
from models.training.distributed import DistContext
from models.training.evaluation import evaluate_on
from models.training.history import History, write_csv
from models.training.state import load_state, save_state


@dataclass
class StepOut:
    """What one step did: its (weighted) loss terms, the logits and labels for accuracy, revision statistics.

    `stats` holds `{"skipped": 1.0}` when the losses were not all finite (nothing was back-propagated)."""
    terms: dict[str, Tensor]
    logits: Tensor | None  # None only for a skipped step
    labels: Tensor
    stats: dict = field(default_factory=dict)


Step = Callable[[tuple[Tensor, ...]], StepOut]


@dataclass
class RunFiles:
    """Where a kind of run keeps its per-epoch files, and how it shapes, prints and plots an epoch's row."""
    state: Path
    state_format: str
    csv: Path
    plot: Path
    plot_fn: Callable[[Path, list[dict]], None]
    line: Callable[[dict], str]
    row: Callable[[dict, dict | None], dict]  # (the loop's row, the evaluation or None) -> the row kept
    csv_fields: list[str] | None = None  # None: every key of the rows
    config: dict = field(default_factory=dict)  # stored in the state
    hint: str = ""  # how to make the run cheaper, said when the estimate is long
    must_match: dict = field(default_factory=dict)  # entries of `config` a resumed run must have been started with


ESTIMATE_AFTER_STEPS = 3   # steps timed before the run says how long it will take
LONG_RUN_S = 15 * 60       # beyond this the estimate comes with the hint of a cheaper run
PLAIN_REPORTS = 10         # progress lines of a run whose output is not a terminal (one per tenth of the run)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else \
        f"{seconds / 3600:.1f} h"


def estimate_line(desc: str, step_s: float, iters: int, steps_left: int, budget: str, hint: str = "") -> str:
    """What the first steps say about the run's length (they include start-up, so it errs long), and what the
    budget (`budget`: "--steps N" / "--epochs N") costs; with the hint of a cheaper run when that is long."""
    total = step_s * steps_left
    line = (f"{desc}: ~{step_s:.2f} s/step on this machine: ~{_duration(step_s * iters)} per epoch of {iters} "
            f"steps, ~{_duration(total)} for the {steps_left} steps left ({budget})")
    if total > LONG_RUN_S:
        fits = int(LONG_RUN_S / step_s)  # the steps that fit the long-run limit, rounded down when many
        cheaper = fits // 100 * 100 if fits >= 100 else fits
        ways = [f"fewer steps (--steps {cheaper}: ~{_duration(step_s * cheaper)})"] if cheaper >= 10 else []
        ways += [hint] if hint else []
        line += f"; for a quicker run: {', '.join(ways)}" if ways else ""
    return line


class _Report:
    """The run's progress: a tqdm bar when stderr is a terminal, else a plain line per tenth of the run.

    Epoch lines and the estimate go to stdout either way (through the bar, so they do not tear it)."""

    def __init__(self, desc: str, total: int, done: int) -> None:
        self.desc, self.total, self.done = desc, total, done
        self.bar = None
        self.t0 = time.perf_counter()
        self.start = done
        if sys.stderr.isatty():
            from tqdm import tqdm  # a progress bar only when shown (workers and tests run without)
            self.bar = tqdm(total=total, initial=done, unit="it", desc=desc, dynamic_ncols=True)

    def step(self, **post: object) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(refresh=False, **post)
            return
        every = max(1, self.total // PLAIN_REPORTS)
        if self.done % every == 0 or self.done == self.total:
            rate = (time.perf_counter() - self.t0) / max(1, self.done - self.start)
            extra = ", ".join(f"{k} {v}" for k, v in post.items())
            print(f"{self.desc}: step {self.done}/{self.total} ({100 * self.done // self.total}%), {extra}, "
                  f"~{_duration(rate * (self.total - self.done))} left", file=sys.stderr, flush=True)

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def fit(step: Step, modules: dict[str, nn.Module], params: list[Tensor], train_set, test_set, cfg: TrainConfig,
        files: RunFiles, *, eval_model: nn.Module, num_classes: int, resume: bool = False, progress: bool = True,
        desc: str = "train", dist: DistContext | None = None,
        stop_after_epoch: int | None = None) -> tuple[History, dict | None, bool]:
    """Run the epochs left; returns (history, the last evaluation or None, finished).

    `modules` are saved in (and restored from) the resume state by name; `params` are the optimised tensors.
    `stop_after_epoch` ends the call after that many epochs, as an interruption would (finished is then False).
    """
    device = torch.device(cfg.device)
    iters = len(train_loader(train_set, cfg, 0))
    if iters == 0:
        raise BadInput("the training split is empty")
    epochs, total = run_plan(cfg, iters)
    if (problem := warmup_problem(cfg, iters)) is not None:
        raise BadInput(problem)
    optimizer = make_optimizer(params, cfg)
    scheduler = make_scheduler(optimizer, cfg, iters)
    hist = History()
    start = 0
    if resume:
        start = load_state(files.state, files.state_format, modules, optimizer, scheduler, hist, files.must_match)
    if dist is not None:
        for m in modules.values():
            dist.broadcast_module(m)
    main = dist is None or dist.is_main
    bar = _Report(desc, total, min(start * iters, total)) if progress else None
    last_eval: dict | None = None
    try:
        for epoch in range(start, epochs):
            t0 = time.perf_counter()
            for m in modules.values():
                m.train()
            meter = RevisionMeter()
            sums: dict[str, float] = {}
            correct = seen = skipped = 0
            for i, batch in enumerate(train_loader(train_set, cfg, epoch)):
                if epoch * iters + i >= total:
                    break  # a budget of steps: the last epoch is cut short
                if bar is not None and epoch == start and i == ESTIMATE_AFTER_STEPS:
                    bar.write(estimate_line(desc, (time.perf_counter() - t0) / i, iters,
                                            total - start * iters, cfg.budget(), files.hint))
                optimizer.zero_grad(set_to_none=True)
                out = step(batch)
                ok = "skipped" not in out.stats
                if ok:
                    norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
                    ok = bool(torch.isfinite(norm))
                if ok:
                    optimizer.step()
                    meter.update(out.stats)
                    n = len(out.labels)
                    for k, v in out.terms.items():
                        sums[k] = sums.get(k, 0.0) + float(v.detach()) * n
                    correct += int((out.logits.argmax(1) == out.labels).sum())  # type: ignore[union-attr]
                    seen += n
                else:
                    skipped += 1  # a non-finite loss or gradient is counted, never applied
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                hist.steps += 1
                if bar is not None:
                    bar.step(epoch=epoch + 1, loss=f"{sums.get('ce', 0) / max(seen, 1):.3f}",
                             acc=f"{correct / max(seen, 1):.3f}")
            if dist is not None:  # the epoch's numbers over the whole batches, not this rank's slices
                sums = dist.sum_dict(sums)
                correct, seen = (int(v) for v in dist.sum_floats([correct, seen]))
                dist.average_buffers(eval_model)
            hist.train_seconds += time.perf_counter() - t0
            hist.skipped_steps += skipped
            row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                   "train_top1": correct / seen if seen else float("nan"), "skipped_steps": skipped,
                   "epoch_seconds": round(time.perf_counter() - t0, 3)}
            row.update({f"loss_{k}": v / max(seen, 1) for k, v in sums.items()})
            row.update(meter.summary())
            ev = None
            if test_set is not None and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == epochs):
                ev = last_eval = evaluate_on(eval_model, test_set, cfg, device, num_classes, dist)
            row = files.row(row, ev)
            hist.rows.append(row)
            if main:
                write_csv(files.csv, hist.rows, files.csv_fields)
                if cfg.plot_every and (epoch + 1) % cfg.plot_every == 0:
                    files.plot_fn(files.plot, hist.rows)
                save_state(files.state, files.state_format, epoch + 1, modules, optimizer, scheduler, hist,
                           files.config)
            if bar is not None:
                bar.write(files.line(row))
            if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < epochs:
                return hist, last_eval, False
    finally:
        if bar is not None:
            bar.close()
    if test_set is not None and last_eval is None:
        last_eval = evaluate_on(eval_model, test_set, cfg, device, num_classes, dist)
    return hist, last_eval, True
