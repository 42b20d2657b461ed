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
from models.net.stgcn import STGCN
from models.net.transforms import InputConfig
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
from pipeline.stages.training import ModelOptions, build_model, check_model_options, option_values

# What a distillation run leaves in its folder as it goes (any one of them means there is something to resume).
RUN_FILES = ("teacher_run", "teacher.pt", "student_last.pt", "metrics.json")


# How the student's weights start: drawn at random, or a copy of the teacher's (same architecture and input
# channels), so the student begins from a classifier that already holds on real footage and learns the LQ shift.
STUDENT_INITS = ("random", "teacher")


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
    student_init: str = "random"  # STUDENT_INITS: "teacher" starts the student from the teacher's weights

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


def check_run_folder(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse a folder that is not one, a finished run (unless resuming it or starting over), nothing to resume."""
    if out.exists() and not out.is_dir():
        raise BadInput("exists and is not a folder", out)
    if resume and overwrite:
        raise BadInput("--resume continues the run in the folder, --overwrite starts it over: give one", out)
    if not resume and not overwrite and (out / "metrics.json").exists():
        raise BadInput("already holds a finished run: pass --resume, --overwrite to start over, or another --out",
                       out)
    if resume and not any((out / name).exists() for name in RUN_FILES):
        raise BadInput("nothing to resume: no distillation run in this folder", out)
    if resume and (out / "metrics.json").exists():
        notice(f"{out}: the run already finished: re-evaluating its teacher and student only (give --steps N or "
               "--epochs N to train the student further)")


@dataclass
class _Clips:
    """What a distillation run trains and tests on: labeled train pairs, unlabeled pairs, test pairs."""
    data: PairedData
    lq_source: str
    train: tuple[list[Clip], list[Clip]]
    pool: tuple[list[Clip], list[Clip]]
    test: tuple[list[Clip], list[Clip]]


def _load_clips(hq_path, req: DistillRequest, lq_path, corrupt: str | None, layout: str | None,
                source_layout: str | None, unlabeled, unlabeled_lq) -> _Clips:
    """The pairs, the labeled fraction of the train split, and the unlabeled pool (none for the plain student)."""
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
    if unlabeled is not None and use_pool:
        u_hq, u_lq = load_unlabeled(unlabeled, unlabeled_lq, corrupt, data.layout, seed, req.allow_unpaired,
                                    source_layout, tr_hq[0].num_channels)
        pool_hq, pool_lq = pool_hq + u_hq, pool_lq + u_lq
    elif unlabeled is not None:
        notice("--unlabeled: the plain student (--method none) learns from labels only; the clips are not used")
    return _Clips(data, lq_source, (tr_hq, tr_lq), (pool_hq, pool_lq), (te_hq, te_lq))


def _teacher(clips: _Clips, req: DistillRequest, out: Path, given, teacher_ckpt, hq_path, resume: bool,
             progress: bool, dist, is_main: bool) -> tuple[STGCN, InputConfig]:
    """The frozen teacher and its input configuration: `--teacher` reused, resumed from the folder, or trained on
    HQ; RUN/teacher.pt is written either way."""
    data, (tr_hq, _), (te_hq, _) = clips.data, clips.train, clips.test
    persons = max(c.num_persons for c in data.hq + data.lq)
    s_icfg = replace(req.input, max_persons=min(req.input.max_persons, persons))
    # Ground-truth HQ has score 1.0 everywhere: a constant channel tells the teacher nothing and collapses its
    # input BatchNorm's variance, so any other score (an LQ clip) would be blown up. Such a teacher goes without it.
    icfg = replace(s_icfg, use_score=s_icfg.use_score and not constant_scores(tr_hq))
    if given is not None:
        teacher, meta = given
        if is_main and Path(teacher_ckpt).resolve() != (out / "teacher.pt").resolve():
            with atomic_path(out / "teacher.pt") as tmp:
                shutil.copyfile(teacher_ckpt, tmp)
        return teacher, meta["input_config"]  # the teacher must see its own input; the student shares the windows
    if (out / "teacher.pt").exists() and resume:
        teacher, meta = load_checkpoint(out / "teacher.pt", expect_layout=data.layout,
                                        expect_classes=len(data.classes), expect_channels=tr_hq[0].num_channels)
        return teacher, meta["input_config"]
    seed = req.student_train.seed
    torch.manual_seed(req.teacher_train.seed)
    teacher, tcfg_model = build_model(data.layout, len(data.classes), tr_hq[0].num_channels, icfg, req.teacher_model)
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
    return teacher, meta["input_config"]


def _copy_teacher(teacher: STGCN, student: STGCN, source) -> None:
    """Start the student as the teacher (--student-init teacher); refused unless every tensor has the same shape."""
    theirs, ours = teacher.state_dict(), student.state_dict()
    odd = [k for k in ours if k not in theirs or theirs[k].shape != ours[k].shape]
    if odd or set(theirs) != set(ours):
        raise BadInput(f"--student-init teacher needs the teacher's architecture and input channels (same width, "
                       f"depth, and --score only if the teacher takes a score); {len(odd) or 'some'} tensor(s) "
                       f"differ, e.g. {(odd or sorted(set(theirs) ^ set(ours)))[0]}", source)
    student.load_state_dict({k: v.detach().clone().to(ours[k].device) for k, v in theirs.items()})


def run_distill(hq_path, out: str | os.PathLike, req: DistillRequest, *, lq_path=None, corrupt: str | None = None,
                layout: str | None = None, teacher_ckpt=None, resume: bool = False, overwrite: bool = False,
                progress: bool = True, dist=None, source_layout: str | None = None, unlabeled=None,
                unlabeled_lq=None) -> dict:
    """Everything `pipeline distill` does; returns the metrics.json dict.

    Unlabeled pairs (distillation terms only, no CE) are the clips of `unlabeled` (HQ pickle; LQ from
    `unlabeled_lq` or the `corrupt` spec) plus, when `req.unlabeled_rest` and `req.train_fraction < 1`, the train
    clips left out of the labels. The plain student (method "none") has nothing to learn from them and gets none.
    `overwrite` starts a run over in a folder that holds one.

    `dist` (a `models.training.distributed.DistContext` or None) shards the student's batches over ranks and averages
    the gradients; rank 0 alone writes files.
    """
    out = Path(out)
    check_run_folder(out, resume, overwrite)
    clips = _load_clips(hq_path, req, lq_path, corrupt, layout, source_layout, unlabeled, unlabeled_lq)
    data, seed, scfg = clips.data, req.student_train.seed, req.student_train
    coord_dims = clips.train[0][0].num_channels
    is_main = dist is None or dist.rank == 0
    given = None
    if teacher_ckpt is not None:  # checked before the run folder exists: a bad teacher leaves nothing behind
        given = load_checkpoint(teacher_ckpt, expect_layout=data.layout, expect_classes=len(data.classes),
                                expect_channels=coord_dims)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
    teacher, icfg = _teacher(clips, req, out, given, teacher_ckpt, hq_path, resume, progress, dist, is_main)
    teacher.to(scfg.device).eval()
    (tr_hq, tr_lq), (pool_hq, pool_lq), (te_hq, te_lq) = clips.train, clips.pool, clips.test
    # The student sees the same windows as the teacher; only the score channel may differ (LQ scores vary).
    s_icfg = replace(icfg, use_score=req.input.use_score)
    ev_hq, ev_lq = (evaluate_on(teacher, ClipDataset(te, data.layout, icfg, False, seed, scfg.num_test_clips), scfg,
                                scfg.device, len(data.classes), dist) for te in (te_hq, te_lq))

    # --- student on LQ
    torch.manual_seed(seed)
    student, smodel_cfg = build_model(data.layout, len(data.classes), coord_dims, s_icfg, req.student_model)
    if req.student_init == "teacher":
        _copy_teacher(teacher, student, teacher_ckpt or out / "teacher.pt")
    losses = build_distill_losses(req.distill, student.feature_channels, teacher.feature_channels)
    train_set = PairedClipDataset(tr_hq, tr_lq, data.layout, icfg, train=True, seed=seed, lq_cfg=s_icfg)
    if pool_hq:  # its own seed stream, so a pool clip's draws are not those of the labeled clip at its index
        train_set = WithUnlabeled(train_set, PairedClipDataset(pool_hq, pool_lq, data.layout, icfg, train=True,
                                                               seed=seed + 7919, lq_cfg=s_icfg))
    if dist is not None:
        train_set = dist.shard(train_set)
    lq_test = ClipDataset(te_lq, data.layout, s_icfg, False, seed, scfg.num_test_clips)
    hist, ev_s = train_student(teacher, student, losses, train_set, lq_test, scfg, req.distill, out,
                               resume=resume, progress=progress and is_main, num_classes=len(data.classes),
                               dist=dist)
    metrics = _metrics(req, clips, teacher, student, ev_hq, ev_lq, ev_s, hist)
    if is_main:
        student.cpu().eval()
        rule = rule_for(student, tr_lq, te_lq, data.layout, s_icfg, len(data.classes))
        metrics["open_set"] = {"rule": rule.kind, "threshold": round(rule.threshold, 3), "keep": rule.keep,
                               "calibrated_on": "test split (LQ)"}
        save_checkpoint(out / "student.pt", student, layout=data.layout, classes=data.classes,
                        model_config=smodel_cfg, input_config=s_icfg,
                        extra={"role": "student",
                               "metrics": {k: metrics[k] for k in ("method", "seed", "epochs", "steps")}
                               | {"lq_top1": ev_s["top1"], "lq_top5": ev_s["top5"]},
                               "lq_source": clips.lq_source, "train_config": scfg.to_dict(),
                               "open_set": rule.to_dict()})
        _plot_comparison(out / "comparison.png", metrics)
        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics


def _metrics(req: DistillRequest, clips: _Clips, teacher: STGCN, student: STGCN, ev_hq: dict, ev_lq: dict,
             ev_s: dict, hist) -> dict:
    """metrics.json (the design's CLI contract), less the open-set rule."""
    return {
        "method": req.distill.method,
        "grad_revision": req.distill.grad_revision if req.distill.method != "none" else "none",
        "seed": req.student_train.seed,
        "classes": list(clips.data.classes),
        "teacher": {"hq_top1": ev_hq["top1"], "lq_top1": ev_lq["top1"], "hq_top5": ev_hq["top5"],
                    "params": sum(p.numel() for p in teacher.parameters())},
        "student": {"lq_top1": ev_s["top1"], "lq_top5": ev_s["top5"],
                    "params": sum(p.numel() for p in student.parameters())},
        "epochs": len(hist.rows),  # run, the last one maybe cut short by a budget of steps
        "steps": hist.steps,  # the optimizer steps: the same for every method of a comparison at one --steps
        "budget": req.student_train.budget(),
        "train_seconds": round(hist.train_seconds, 2),
        "seconds_per_step": round(hist.train_seconds / max(hist.steps, 1), 4),
        "skipped_steps": hist.skipped_steps,
        "revision": {k: v for k, v in (hist.rows[-1] if hist.rows else {}).items() if k.startswith("conflict/")},
        "n_train": len(clips.train[0]), "n_unlabeled": len(clips.pool[0]), "n_test": len(clips.test[0]),
        "lq_source": clips.lq_source,
        "layout": clips.data.layout.name,
        "pairing": clips.data.report.describe(),
        "request": req.to_dict(),
    }


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


# Option name (command line, `--config` TOML, `make_request` keyword) -> the DistillRequest fields it sets. Their
# defaults are those of the fields (one place); "grad_revision", "revision_mode" and "weights" are read apart.
OPTION_FIELDS: dict[str, list[tuple[str, str]]] = {
    "method": [("distill", "method")], "revision_blocks": [("distill", "revision_blocks")],
    "tau": [("distill", "tau")],
    "epochs": [("student_train", "epochs")], "steps": [("student_train", "steps")],
    "teacher_epochs": [("teacher_train", "epochs")],
    "student_width": [("student_model", "width")], "teacher_width": [("teacher_model", "width")],
    "depth": [("student_model", "depth"), ("teacher_model", "depth")],
    "length": [("input", "length")], "features": [("input", "features")], "use_score": [("input", "use_score")],
    **{k: [("student_train", f), ("teacher_train", f)] for k, f in (
        ("batch_size", "batch_size"), ("lr", "lr"), ("seed", "seed"), ("workers", "num_workers"),
        ("device", "device"), ("warmup", "warmup_epochs"), ("amp", "amp"), ("sync_bn", "sync_bn"),
        ("precision", "precision"), ("eval_every", "eval_every"))},
    "train_fraction": [("", "train_fraction")], "allow_unpaired": [("", "allow_unpaired")],
    "unlabeled_rest": [("", "unlabeled_rest")], "student_init": [("", "student_init")],
    "mix": [("distill", "mix")], "mix_alpha": [("distill", "mix_alpha")],
}
OPTIONS = (*OPTION_FIELDS, "grad_revision", "revision_mode", "weights")
_CONFIG_ALIASES = {"score": "use_score"}


def option_defaults() -> dict[str, object]:
    """Each option's default, read off a default DistillRequest (for `--help`)."""
    req = DistillRequest()
    return {k: getattr(getattr(req, g) if g else req, f) for k, targets in OPTION_FIELDS.items()
            for g, f in targets[:1]}


def make_request(config_file: str | os.PathLike | None = None, **options) -> DistillRequest:
    """A DistillRequest from the fields' defaults, then the TOML `config_file`, then `options` (None = not given).

    Option names: OPTIONS (those of `pipeline distill`). `grad_revision`: a mode ("none", "global", ...; None: the
    method's own), or False / True as the command line's --no-grad-revision / --grad-revision, with
    `revision_mode` naming the mode. `tau` None: the method's own. The teacher's budget is `teacher_epochs`, else
    the student's (its epochs or steps)."""
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise TypeError(f"make_request: unknown option(s) {', '.join(sorted(unknown))}")
    values = option_values(options, config_file, OPTIONS, _CONFIG_ALIASES)
    groups: dict[str, dict] = {"distill": {}, "student_train": {}, "teacher_train": {}, "input": {},
                               "student_model": {}, "teacher_model": {}, "": {}}
    for key, value in values.items():
        if key == "features":
            value = tuple(value.split(",")) if isinstance(value, str) else tuple(value)
        for group, name in OPTION_FIELDS.get(key, ()):
            groups[group][name] = value
    revision = values.get("grad_revision")
    if revision is False:
        revision = "none"
    elif revision is None or revision is True:
        revision = values.get("revision_mode")
    if "epochs" in groups["teacher_train"]:
        groups["teacher_train"]["steps"] = None
    else:  # the student's budget
        groups["teacher_train"].update({k: groups["student_train"][k] for k in ("epochs", "steps")
                                        if k in groups["student_train"]})
    try:
        dcfg = DistillConfig(grad_revision=revision, **groups["distill"], **parse_weights(values.get("weights", "")))
        req = DistillRequest(dcfg, TrainConfig(**groups["student_train"]), TrainConfig(**groups["teacher_train"]),
                             InputConfig(**groups["input"]), ModelOptions(**groups["student_model"]),
                             ModelOptions(**groups["teacher_model"]), **groups[""])
        check_number("train_fraction", req.train_fraction, 0, 1, lo_open=True)
        if req.student_init not in STUDENT_INITS:
            raise ValueError(f"student-init must be one of {', '.join(STUDENT_INITS)}, got {req.student_init!r}")
    except (TypeError, ValueError) as e:
        raise BadInput(f"invalid distillation options: {e}", config_file) from None
    check_model_options(req.student_model, config_file)
    check_model_options(req.teacher_model, config_file)
    return req
