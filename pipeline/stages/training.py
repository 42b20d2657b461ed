"""The `pipeline train` and `pipeline eval` stages: from a pyskl pickle to a run folder, and back to numbers."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, make_dataclass, replace
from pathlib import Path

import torch

from models.checkpoint import load_checkpoint
from models.contract.atomic import atomic_write_text, new_folder
from models.contract.errors import BadInput, WriteFailed, notice
from models.contract.jsonio import read_json
from models.contract.layouts import Layout
from models.contract.paths import vet_input
from models.contract.skeleton import SkeletonDataset
from models.net.stgcn import STGCN, STGCNConfig
from models.net.transforms import InputConfig, in_channels
from models.training.classifier import train_model
from models.training.config import TrainConfig, iters_per_epoch, run_plan, test_loader, warmup_problem
from models.training.evaluation import evaluate
from pipeline.data.clips import ClipDataset, constant_scores
from pipeline.data.pyskl_io import load_dataset

# The STGCNConfig fields the data decides; the others are the user's model-size knobs, `ModelOptions`.
FROM_DATA = ("in_channels", "num_classes", "layout", "max_persons")
ModelOptions = make_dataclass(
    "ModelOptions",
    [(f.name, f.type, field(default=f.default)) for f in fields(STGCNConfig) if f.name not in FROM_DATA],
    namespace={"__doc__": "The model-size knobs a user picks (STGCNConfig less FROM_DATA)."})


@dataclass
class TrainRequest:
    train: TrainConfig = field(default_factory=TrainConfig)
    input: InputConfig = field(default_factory=InputConfig)
    model: ModelOptions = field(default_factory=ModelOptions)
    train_split: str = "train"
    test_split: str = "test"


# Options that may differ when a run is resumed (they do not change what is learned, or extend it).
RESUMABLE_CHANGES = {"epochs", "steps", "num_workers", "eval_every", "device", "amp"}
BUDGETS = ("epochs", "steps")  # a resumed run given one of them drops the other (the budget is one or the other)


def build_model(layout: Layout, num_classes: int, coord_dims: int, icfg: InputConfig, opts: ModelOptions
                ) -> tuple[STGCN, STGCNConfig]:
    cfg = STGCNConfig(in_channels=in_channels(icfg, coord_dims), num_classes=num_classes, layout=layout.to_dict(),
                      max_persons=icfg.max_persons, **_asdict(opts))
    return STGCN(cfg), cfg


def split_clips(ds: SkeletonDataset, name: str, path: str | os.PathLike) -> list:
    if name not in ds.split:
        have = ", ".join(ds.split) or "none"
        raise BadInput(f"no '{name}' split in the pickle (splits: {have})", path)
    clips = ds.subset(name)
    if not clips:
        raise BadInput(f"the '{name}' split is empty or names no clip in the file", path)
    return clips


def train_from_dataset(ds: SkeletonDataset, out: str | os.PathLike, req: TrainRequest, *, data_path: str = "",
                       resume: bool = False, overwrite: bool = False, progress: bool = True,
                       explicit: set[str] | None = None, stop_after_epoch: int | None = None,
                       dist=None) -> dict:
    """Train on `ds`'s train split, test on its test split; write `out/model.pt`, `out/metrics.json`, plots.

    With `resume`, the options stored in `out/request.json` are used; of `req`, only the fields named in
    `explicit` (all when None) are compared, and only RESUMABLE_CHANGES may differ. `dist`: a
    `models.training.distributed.DistContext` under torchrun (rank 0 writes the files).
    """
    out = Path(out)
    where = data_path or "data"
    if out.exists() and not out.is_dir():
        raise BadInput("exists and is not a folder", out)
    if resume:
        req = merge_resume(_stored_request(out), req, explicit)
    elif not overwrite and ((out / "last.pt").exists() or (out / "model.pt").exists()):
        raise BadInput("already holds a run: pass --resume to continue it, --overwrite to start over, or another "
                       "--out", out)
    train_clips = split_clips(ds, req.train_split, where)
    test_clips = split_clips(ds, req.test_split, where)
    icfg, tcfg = req.input, req.train
    iters = iters_per_epoch(tcfg, len(train_clips))
    if (problem := warmup_problem(tcfg, iters)) is not None:  # before anything is written
        raise BadInput(problem)
    done = _finished_steps(out) if resume else None
    if done is not None and done >= run_plan(tcfg, iters)[1]:
        notice(f"{out}: the run already finished its {done} steps: re-evaluating the saved model only (give "
               "--steps N or --epochs N to train further)")
    # Never pad more persons than the data has: an all-zero person would double the compute for nothing.
    persons = max(c.num_persons for c in ds.clips)
    if not resume and icfg.max_persons > persons:
        icfg = replace(icfg, max_persons=persons)
        req = replace(req, input=icfg)
    if not resume and icfg.use_score and constant_scores(train_clips):
        # Ground truth (every score 1.0): a constant channel teaches nothing and collapses the input BatchNorm, after
        # which any real estimator's scores wreck the model. Trained without it, as `distill` does for its teacher.
        icfg = replace(icfg, use_score=False)
        req = replace(req, input=icfg)
        notice("every keypoint score in the training split is 1.0 (ground truth): training without the score "
               "channel, so the model also works on an estimator's skeletons")
    torch.manual_seed(tcfg.seed)
    model, mcfg = build_model(ds.layout, ds.num_classes, ds.num_channels, icfg, req.model)
    train_set = ClipDataset(train_clips, ds.layout, icfg, train=True, seed=tcfg.seed)
    test_set = ClipDataset(test_clips, ds.layout, icfg, train=False, seed=tcfg.seed,
                           num_test_clips=tcfg.num_test_clips)
    # A run folder this command made is removed again when the run fails before its first resumable state
    # (a full disk): no half run folder. With a last.pt it stays, and the message says how to continue.
    with new_folder(out, keep="last.pt"):
        try:
            out.mkdir(parents=True, exist_ok=True)
            if dist is None or dist.is_main:
                _write_request(out / "request.json", req, str(data_path))
            return train_model(model, train_set, test_set, tcfg, out, layout=ds.layout, classes=ds.classes,
                               model_config=mcfg, input_config=icfg, resume=resume, progress=progress,
                               extra={"data": str(data_path), "model_options": _asdict(req.model)},
                               stop_after_epoch=stop_after_epoch, dist=dist)
        except WriteFailed as e:
            if (out / "last.pt").is_file():
                raise WriteFailed(f"{e}; the epochs in {out / 'last.pt'} are kept: `--resume` continues once "
                                  "there is room") from None
            raise


def _finished_steps(out: Path) -> int | None:
    """Optimizer steps of the finished run in `out` (from its metrics.json), None when there is none."""
    try:
        return int(read_json(out / "metrics.json")["steps"])
    except (BadInput, ValueError, KeyError, TypeError):
        return None


def _asdict(obj) -> dict:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _write_request(path: Path, req: TrainRequest, data_path: str) -> None:
    doc = {"data": data_path, "train": req.train.to_dict(), "input": req.input.to_dict(),
           "model": _asdict(req.model), "train_split": req.train_split, "test_split": req.test_split}
    atomic_write_text(path, json.dumps(doc, indent=2) + "\n")


def _stored_request(out: Path) -> TrainRequest:
    if not (out / "last.pt").is_file():
        raise BadInput("nothing to resume: no last.pt in the run folder", out)
    doc = read_json(out / "request.json")
    try:
        return TrainRequest(TrainConfig.from_dict(doc["train"]), InputConfig.from_dict(doc["input"]),
                            ModelOptions(**doc["model"]), doc["train_split"], doc["test_split"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BadInput(f"cannot resume: request.json is missing or unreadable ({type(e).__name__})", out) from None


def merge_resume(stored: TrainRequest, given: TrainRequest, explicit: set[str] | None = None) -> TrainRequest:
    """The stored options, with the allowed changes from `given` (only fields named in `explicit`, if given)."""
    tr = stored.train
    groups = (("train", fields(TrainConfig)), ("input", fields(InputConfig)), ("model", fields(ModelOptions)))
    for group, fs in groups:
        for f in fs:
            if (explicit is not None and f.name not in explicit) or (group, f.name) == ("input", "max_persons"):
                continue  # max_persons was capped to the data when the run started
            new, old = getattr(getattr(given, group), f.name), getattr(getattr(stored, group), f.name)
            if new == old:
                continue
            if group == "train" and f.name in BUDGETS:
                tr = replace(tr, **{b: (new if b == f.name else None) for b in BUDGETS})
            elif group == "train" and f.name in RESUMABLE_CHANGES:
                tr = replace(tr, **{f.name: new})
            else:
                raise BadInput(f"the run was started with {f.name}={old!r}; resume with the same value or leave "
                               f"the option out")
    for name in ("train_split", "test_split"):
        if (explicit is None or name in explicit) and getattr(given, name) != getattr(stored, name):
            raise BadInput(f"the run was started with {name}={getattr(stored, name)!r}")
    return replace(stored, train=tr)


def train_from_pickle(data: str | os.PathLike, out: str | os.PathLike, req: TrainRequest, *,
                      layout: str | Layout | None = None, resume: bool = False, overwrite: bool = False,
                      progress: bool = True, explicit: set[str] | None = None, dist=None,
                      source_layout: str | Layout | None = None) -> dict:
    ds = load_dataset(data, layout, source_layout)
    return train_from_dataset(ds, out, req, data_path=str(data), resume=resume, overwrite=overwrite,
                              progress=progress, explicit=explicit, dist=dist)


def eval_from_pickle(model_path: str | os.PathLike, data: str | os.PathLike, *, split: str = "test",
                     layout: str | Layout | None = None, batch_size: int = 64, num_test_clips: int | None = None,
                     num_workers: int = 0, device: str = "cpu", source_layout: str | Layout | None = None) -> dict:
    """Top-1/top-5/n of checkpoint `model_path` on `split` of the pickle `data` (computed on `device`)."""
    ds = load_dataset(data, layout, source_layout)
    model, meta = load_checkpoint(model_path, expect_layout=ds.layout, expect_classes=ds.num_classes,
                                  expect_channels=ds.num_channels)
    clips = split_clips(ds, split, data)
    tcfg = meta["extra"].get("train_config", {})
    k = num_test_clips if num_test_clips is not None else int(tcfg.get("num_test_clips", 1))
    dset = ClipDataset(clips, ds.layout, meta["input_config"], train=False, num_test_clips=k)
    loader = test_loader(dset, TrainConfig(batch_size=batch_size, num_workers=num_workers))
    res = evaluate(model.to(device), loader, device, len(meta["classes"]))
    return {"top1": res["top1"], "top5": res["top5"], "n": res["n"]}


# Command-line / config-file option name -> (group, field) of TrainRequest.
OPTION_FIELDS: dict[str, tuple[str, str]] = {
    "epochs": ("train", "epochs"), "steps": ("train", "steps"), "seed": ("train", "seed"),
    "batch_size": ("train", "batch_size"),
    "lr": ("train", "lr"), "weight_decay": ("train", "weight_decay"), "warmup": ("train", "warmup_epochs"),
    "schedule": ("train", "schedule"), "milestones": ("train", "milestones"),
    "label_smoothing": ("train", "label_smoothing"), "test_clips": ("train", "num_test_clips"),
    "eval_every": ("train", "eval_every"), "workers": ("train", "num_workers"),
    "precision": ("train", "precision"),
    "device": ("train", "device"), "amp": ("train", "amp"), "sync_bn": ("train", "sync_bn"),
    "width": ("model", "width"), "depth": ("model", "depth"), "dropout": ("model", "dropout"),
    "length": ("input", "length"), "features": ("input", "features"), "use_score": ("input", "use_score"),
    "max_persons": ("input", "max_persons"), "aug_flip": ("input", "aug_flip"),
    "aug_scale": ("input", "aug_scale"), "aug_rotation": ("input", "aug_rotation"),
    "norm": ("input", "norm"), "aug_window": ("input", "aug_window"), "aug_idle": ("input", "aug_idle"),
    "aug_crop": ("input", "aug_crop"), "aug_shear": ("input", "aug_shear"),
    "train_split": ("", "train_split"), "test_split": ("", "test_split"),
}
_CONFIG_ALIASES = {"score": "use_score", "flip": "aug_flip"}


def _parse_list(value, what: str, cast) -> tuple:
    items = value.split(",") if isinstance(value, str) else list(value)
    try:
        return tuple(cast(str(v).strip()) for v in items if str(v).strip())
    except ValueError:
        raise BadInput(f"--{what}: cannot read {value!r}") from None


def request_from_options(options: dict, config_file: str | os.PathLike | None = None
                         ) -> tuple[TrainRequest, set[str]]:
    """A TrainRequest from defaults, then the TOML config file, then explicit options (None = not given).

    Returns it with the set of field names the user set (used to check a resumed run's options).
    """
    values = option_values(options, config_file, OPTION_FIELDS, _CONFIG_ALIASES)
    groups: dict[str, dict] = {"train": {}, "input": {}, "model": {}, "": {}}
    explicit = set()
    for key, value in values.items():
        group, name = OPTION_FIELDS[key]
        if key == "milestones":
            value = _parse_list(value, "milestones", int)
        elif key == "features":
            value = _parse_list(value, "features", str)
        groups[group][name] = value
        explicit.add(name)
    try:
        req = TrainRequest(TrainConfig(**groups["train"]), InputConfig(**groups["input"]),
                           ModelOptions(**groups["model"]), **groups[""])
    except (ValueError, TypeError) as e:
        raise BadInput(f"invalid training options: {e}", config_file) from None
    check_model_options(req.model, config_file)
    return req, explicit


def check_model_options(opts: ModelOptions, where: str | os.PathLike | None = None) -> None:
    """BadInput unless the model-size knobs make a model within STGCNConfig's bounds (before any file is written)."""
    try:
        STGCNConfig(in_channels=1, num_classes=1, layout={}, **_asdict(opts))
    except (ValueError, TypeError) as e:
        raise BadInput(f"invalid model options: {e}", where) from None


def option_values(options: dict, config_file: str | os.PathLike | None, known, aliases: dict[str, str]) -> dict:
    """The options set by the TOML `config_file` (names in `known`, or their `aliases`), then by the command line
    (None = not given; the command line wins). `train` and `distill` read their options this one way."""
    values: dict[str, object] = {}
    if config_file is not None:
        values.update(read_config(Path(config_file), known, aliases))
    values.update({k: v for k, v in options.items() if v is not None})
    if all(values.get(b) is not None for b in BUDGETS):
        raise BadInput("give --epochs or --steps, not both (the run's budget is one or the other)", config_file)
    return values


def read_config(path: Path, known, aliases: dict[str, str]) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        raise BadInput("--config needs Python 3.11 or newer (tomllib)", path) from None
    vet_input(path, "config")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise BadInput(f"not valid TOML ({e})", path) from None
    out = {}
    for key, value in doc.items():
        name = aliases.get(key.replace("-", "_"), key.replace("-", "_"))
        if name not in known:
            raise BadInput(f"unknown option {key!r} (known: {', '.join(sorted(known))})", path)
        out[name] = value
    return out
