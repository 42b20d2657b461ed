"""`pipeline distill` end to end: pair HQ/LQ, teacher (trained or reused), student distillation, metrics.

RUN/ gets teacher.pt, student.pt (self-describing checkpoints), metrics.json (the design's CLI contract),
student_metrics.csv, student_curves.png, comparison.png, and teacher_run/ (the teacher's own training run).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.contract.atomic import atomic_path, atomic_savefig, atomic_write_text
from models.contract.errors import BadInput, notice
from models.contract.layouts import Layout, get_layout
from models.contract.numbers import check_number
from models.contract.skeleton import Clip
from models.losses.distill import WEIGHT_FIELDS, DistillConfig, build_distill_losses
from models.net.transforms import InputConfig
from models.openset import RULE
from models.training.calibration import rule_for
from models.training.classifier import train_model
from models.training.config import TrainConfig
from models.training.evaluation import evaluate_on
from models.training.student import train_student
from pipeline.data.clips import ClipDataset, constant_scores
from pipeline.data.corrupt import corrupt_dataset, parse_spec
from pipeline.data.paired import PairedClipDataset, PairedData, pair_datasets
from pipeline.data.pyskl_io import load_dataset
from pipeline.data.unlabeled import WithUnlabeled
from pipeline.stages.training import ModelOptions, build_model, check_model_options, default_warmup

# What a distillation run leaves in its folder as it goes (any one of them means there is something to resume).
RUN_FILES = ("teacher_run", "teacher.pt", "student_last.pt", "metrics.json")


@dataclass
class DistillRequest:
    distill: DistillConfig = field(default_factory=DistillConfig)
    student_train: TrainConfig = field(default_factory=TrainConfig)
    teacher_train: TrainConfig = field(default_factory=TrainConfig)
    input: InputConfig = field(default_factory=InputConfig)
    student_model: ModelOptions = field(default_factory=ModelOptions)
    teacher_model: ModelOptions = field(default_factory=ModelOptions)
    train_fraction: float = 1.0
    allow_unpaired: bool = False
    unlabeled_rest: bool = True  # train clips left out of the labels (train_fraction < 1) feed distillation only

    def to_dict(self) -> dict:
        return asdict(self)


def load_pair(hq_path: str | os.PathLike, lq_path: str | os.PathLike | None, corrupt: str | None,
              layout: str | Layout | None, seed: int, allow_unpaired: bool, source_layout: str | None = None
              ) -> tuple[PairedData, str]:
    """The paired data, and a description of where LQ came from."""
    if (lq_path is None) == (corrupt is None):
        raise BadInput("give exactly one of --lq FILE.pkl or --corrupt SPEC")
    lay = get_layout(layout) if layout is not None else None
    # Each side is read in --layout (as it, when a file stores none and the joint count fits; else converted).
    hq = load_dataset(hq_path, lay, source_layout)
    if lq_path is not None:
        lq = load_dataset(lq_path, lay, source_layout)
        source = str(lq_path)
    else:
        spec = parse_spec(corrupt)
        lq = corrupt_dataset(hq, spec, seed)
        source = f"corrupt:{spec.with_seed(seed)}"
    names = (f"HQ {hq_path}", f"LQ {lq_path}") if lq_path is not None else ("HQ", "LQ")  # name the files
    return pair_datasets(hq, lq, lay, allow_unpaired=allow_unpaired, names=names), source


def load_unlabeled(hq_path, lq_path, corrupt: str | None, layout, seed: int, allow_unpaired: bool,
                   source_layout: str | None, coord_dims: int) -> tuple[list[Clip], list[Clip]]:
    """Every clip of the unlabeled HQ pickle (its labels and splits are ignored) and its LQ: from `lq_path`, else
    corrupted from HQ with the run's --corrupt spec."""
    if lq_path is None and corrupt is None:
        raise BadInput("--unlabeled with --lq needs --unlabeled-lq (LQ of the unlabeled clips)", hq_path)
    pair, _ = load_pair(hq_path, lq_path, None if lq_path is not None else corrupt, layout, seed, allow_unpaired,
                        source_layout)
    if pair.hq[0].num_channels != coord_dims:
        raise BadInput(f"clips are {pair.hq[0].num_channels}D but the labeled clips are {coord_dims}D", hq_path)
    return pair.hq, pair.lq


def stratified_fraction(clips: list[Clip], fraction: float, seed: int) -> np.ndarray:
    """Indices of a class-stratified `fraction` of `clips` (at least one clip per class)."""
    if fraction >= 1.0:
        return np.arange(len(clips))
    rng = np.random.default_rng(seed)
    labels = np.array([c.label for c in clips])
    keep = []
    for k in np.unique(labels):
        idx = np.flatnonzero(labels == k)
        keep.extend(rng.choice(idx, size=max(1, int(round(fraction * len(idx)))), replace=False).tolist())
    return np.sort(np.array(keep))


def run_distill(hq_path, out: str | os.PathLike, req: DistillRequest, *, lq_path=None, corrupt: str | None = None,
                layout: str | None = None, teacher_ckpt=None, resume: bool = False, progress: bool = True,
                dist=None, source_layout: str | None = None, unlabeled=None, unlabeled_lq=None) -> dict:
    """Everything `pipeline distill` does; returns the metrics.json dict.

    Unlabeled pairs (distillation terms only, no CE) are the clips of `unlabeled` (HQ pickle; LQ from
    `unlabeled_lq` or the `corrupt` spec) plus, when `req.unlabeled_rest` and `req.train_fraction < 1`, the train
    clips left out of the labels. The plain student (method "none") has nothing to learn from them and gets none.

    `dist` (a `models.training.distributed.DistContext` or None) shards the student's batches over ranks and averages
    the gradients; rank 0 alone writes files.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInput("exists and is not a folder", out)
    if not resume and (out / "metrics.json").exists():
        raise BadInput("already holds a finished run: pass --resume, or another --out", out)
    if resume and not any((out / name).exists() for name in RUN_FILES):
        raise BadInput("nothing to resume: no distillation run in this folder", out)
    if resume and (out / "metrics.json").exists():
        notice(f"{out}: the run already finished: re-evaluating its teacher and student only (give --epochs N "
               "to train the student further)")
    seed = req.student_train.seed
    data, lq_source = load_pair(hq_path, lq_path, corrupt, layout, seed, req.allow_unpaired, source_layout)
    tr_hq, tr_lq = data.subset("train")
    te_hq, te_lq = data.subset("test")
    if not tr_hq or not te_hq:
        raise BadInput("the HQ pickle needs non-empty 'train' and 'test' splits", hq_path)
    keep = stratified_fraction(tr_hq, req.train_fraction, seed)
    use_pool = req.distill.method != "none"
    rest = set(range(len(tr_hq))) - set(keep.tolist()) if use_pool and req.unlabeled_rest else set()
    pool_hq, pool_lq = [tr_hq[i] for i in sorted(rest)], [tr_lq[i] for i in sorted(rest)]
    tr_hq, tr_lq = [tr_hq[i] for i in keep], [tr_lq[i] for i in keep]
    coord_dims = tr_hq[0].num_channels
    if unlabeled is not None and use_pool:
        u_hq, u_lq = load_unlabeled(unlabeled, unlabeled_lq, corrupt, data.layout, seed, req.allow_unpaired,
                                    source_layout, coord_dims)
        pool_hq, pool_lq = pool_hq + u_hq, pool_lq + u_lq
    elif unlabeled is not None:
        notice("--unlabeled: the plain student (--method none) learns from labels only; the clips are not used")
    persons = max(c.num_persons for c in data.hq + data.lq)
    is_main = dist is None or dist.rank == 0
    given = None
    if teacher_ckpt is not None:  # checked before the run folder exists: a bad teacher leaves nothing behind
        given = load_checkpoint(teacher_ckpt, expect_layout=data.layout, expect_classes=len(data.classes),
                                expect_channels=coord_dims)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)

    # --- teacher: reuse, resume, or train on HQ
    s_icfg = replace(req.input, max_persons=min(req.input.max_persons, persons))
    # Ground-truth HQ has score 1.0 everywhere: a constant channel tells the teacher nothing and collapses its
    # input BatchNorm's variance, so any other score (an LQ clip) would be blown up. Such a teacher goes without it.
    icfg = replace(s_icfg, use_score=s_icfg.use_score and not constant_scores(tr_hq))
    if given is not None:
        teacher, meta = given
        icfg = meta["input_config"]  # the teacher must see its own input; the student shares the windows
        if is_main and Path(teacher_ckpt).resolve() != (out / "teacher.pt").resolve():
            with atomic_path(out / "teacher.pt") as tmp:
                shutil.copyfile(teacher_ckpt, tmp)
    elif (out / "teacher.pt").exists() and resume:
        teacher, meta = load_checkpoint(out / "teacher.pt", expect_layout=data.layout,
                                        expect_classes=len(data.classes), expect_channels=coord_dims)
        icfg = meta["input_config"]
    else:
        torch.manual_seed(req.teacher_train.seed)
        teacher, tcfg_model = build_model(data.layout, len(data.classes), coord_dims, icfg, req.teacher_model)
        run = out / "teacher_run"
        train_model(teacher, ClipDataset(tr_hq, data.layout, icfg, True, seed),
                    ClipDataset(te_hq, data.layout, icfg, False, seed), req.teacher_train, run,
                    layout=data.layout, classes=data.classes, model_config=tcfg_model, input_config=icfg,
                    resume=resume and (run / "last.pt").exists(), progress=progress and is_main,
                    extra={"role": "teacher", "data": str(hq_path)}, dist=dist)
        if is_main:
            with atomic_path(out / "teacher.pt") as tmp:
                shutil.copyfile(run / "model.pt", tmp)
        teacher, meta = load_checkpoint(run / "model.pt")
    scfg = req.student_train
    teacher.to(scfg.device).eval()
    # The student sees the same windows as the teacher; only the score channel may differ (LQ scores vary).
    s_icfg = replace(icfg, use_score=req.input.use_score)
    ev_hq = evaluate_on(teacher, ClipDataset(te_hq, data.layout, icfg, False, seed, scfg.num_test_clips), scfg,
                        scfg.device, len(data.classes), dist)
    ev_lq = evaluate_on(teacher, ClipDataset(te_lq, data.layout, icfg, False, seed, scfg.num_test_clips), scfg,
                        scfg.device, len(data.classes), dist)
    lq_test = ClipDataset(te_lq, data.layout, s_icfg, False, seed, scfg.num_test_clips)

    # --- student on LQ
    torch.manual_seed(seed)
    student, smodel_cfg = build_model(data.layout, len(data.classes), coord_dims, s_icfg, req.student_model)
    losses = build_distill_losses(req.distill, student.feature_channels, teacher.feature_channels)
    train_set = PairedClipDataset(tr_hq, tr_lq, data.layout, icfg, train=True, seed=seed, lq_cfg=s_icfg)
    if pool_hq:  # its own seed stream, so a pool clip's draws are not those of the labeled clip at its index
        train_set = WithUnlabeled(train_set, PairedClipDataset(pool_hq, pool_lq, data.layout, icfg, train=True,
                                                               seed=seed + 7919, lq_cfg=s_icfg))
    if dist is not None:
        train_set = dist.shard(train_set)
    hist, ev_s = train_student(teacher, student, losses, train_set, lq_test, scfg, req.distill, out,
                               resume=resume, progress=progress and is_main, num_classes=len(data.classes),
                               dist=dist)
    metrics = {
        "method": req.distill.method,
        "grad_revision": req.distill.grad_revision if req.distill.method != "none" else "none",
        "seed": seed,
        "classes": list(data.classes),
        "teacher": {"hq_top1": ev_hq["top1"], "lq_top1": ev_lq["top1"], "hq_top5": ev_hq["top5"],
                    "params": sum(p.numel() for p in teacher.parameters())},
        "student": {"lq_top1": ev_s["top1"], "lq_top5": ev_s["top5"],
                    "params": sum(p.numel() for p in student.parameters())},
        "epochs": scfg.epochs,
        "train_seconds": round(hist.train_seconds, 2),
        "seconds_per_step": round(hist.train_seconds / max(hist.steps, 1), 4),
        "skipped_steps": hist.skipped_steps,
        "revision": {k: v for k, v in (hist.rows[-1] if hist.rows else {}).items() if k.startswith("conflict/")},
        "n_train": len(tr_hq), "n_unlabeled": len(pool_hq), "n_test": len(te_hq),
        "lq_source": lq_source,
        "layout": data.layout.name,
        "pairing": data.report.describe(),
        "request": req.to_dict(),
    }
    open_set: dict = {}
    if is_main:
        student.cpu().eval()
        rule = rule_for(student, tr_lq, te_lq, data.layout, s_icfg, len(data.classes))
        open_set = {"open_set": rule.to_dict()}
        metrics["open_set"] = {"rule": RULE, "threshold": round(rule.threshold, 3), "keep": rule.keep,
                               "calibrated_on": "test split (LQ)"}
    if is_main:
        save_checkpoint(out / "student.pt", student, layout=data.layout, classes=data.classes,
                        model_config=smodel_cfg, input_config=s_icfg,
                        extra={"role": "student", "metrics": {k: metrics[k] for k in ("method", "seed", "epochs")}
                               | {"lq_top1": ev_s["top1"], "lq_top5": ev_s["top5"]},
                               "lq_source": lq_source, "train_config": scfg.to_dict(), **open_set})
        _plot_comparison(out / "comparison.png", metrics)
        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics


def _plot_comparison(path: Path, m: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["teacher on HQ", "teacher on LQ", f"student ({m['method']}) on LQ"]
    vals = [m["teacher"]["hq_top1"], m["teacher"]["lq_top1"], m["student"]["lq_top1"]]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bars = ax.bar(names, vals, color=["#4c72b0", "#8c8c8c", "#dd8452"])
    for b, v in zip(bars, vals):
        ax.text(b.get_x() + b.get_width() / 2, v + 0.01, f"{v:.3f}", ha="center")
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("top-1 (test split)")
    ax.set_title(f"LQ: {m['lq_source']}", fontsize=8)
    fig.tight_layout()
    atomic_savefig(fig, path)


def parse_weights(text: str) -> dict[str, float]:
    """`kd=1,node=0.5` -> DistillConfig field values."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = part.partition("=")
        key = key.strip()
        if key not in WEIGHT_FIELDS:
            raise BadInput(f"--weights: unknown loss {key!r} (known: {', '.join(WEIGHT_FIELDS)})")
        try:
            w = float(value)
        except ValueError:
            raise BadInput(f"--weights: {part!r} is not loss=number") from None
        if not np.isfinite(w) or w < 0:
            raise BadInput(f"--weights: {key} must be a finite number >= 0")
        out[WEIGHT_FIELDS[key]] = w
    return out


def make_request(*, method: str = "skd", grad_revision: str | None = None, epochs: int = 30,
                 teacher_epochs: int | None = None, student_width: float = 1.0, teacher_width: float = 1.0,
                 depth: int = 10, length: int = 64, batch_size: int = 32, lr: float = 0.1, tau: float | None = None,
                 weights: str = "", train_fraction: float = 1.0, allow_unpaired: bool = False, seed: int = 0,
                 workers: int = 0, device: str = "cpu", features: tuple[str, ...] = ("joint",),
                 warmup_epochs: float | None = None, amp: bool = True, sync_bn: bool = False,
                 precision: str = "fp32", eval_every: int = 1, revision_blocks: int = 1,
                 unlabeled_rest: bool = True, use_score: bool = True, mix: str = "none",
                 mix_alpha: float = 1.0) -> DistillRequest:
    """A DistillRequest from the command-line options (the same names a config file may use).

    `grad_revision` and `tau` None: the method's own (see models/losses)."""
    warm = default_warmup(epochs) if warmup_epochs is None else warmup_epochs
    try:
        dcfg = DistillConfig(method=method, tau=tau, grad_revision=grad_revision, revision_blocks=revision_blocks,
                             mix=mix, mix_alpha=mix_alpha, **parse_weights(weights))
        scfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, num_workers=workers,
                           device=device, warmup_epochs=warm, amp=amp, sync_bn=sync_bn,
                           precision=precision, eval_every=eval_every)
        t_epochs = teacher_epochs or epochs
        tcfg = replace(scfg, epochs=t_epochs, warmup_epochs=default_warmup(t_epochs))
        icfg = InputConfig(length=length, features=tuple(features), use_score=use_score)
        check_number("train_fraction", train_fraction, 0, 1, lo_open=True)
    except (TypeError, ValueError) as e:
        raise BadInput(f"invalid distillation options: {e}") from None
    student, teacher = ModelOptions(width=student_width, depth=depth), ModelOptions(width=teacher_width, depth=depth)
    check_model_options(student)
    check_model_options(teacher)
    return DistillRequest(dcfg, scfg, tcfg, icfg, student, teacher, train_fraction, allow_unpaired, unlabeled_rest)
