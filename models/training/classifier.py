"""Training and evaluation of a skeleton classifier, with building blocks the distillation loop reuses.

`train_model` writes into its run folder, each epoch: `metrics.csv` (all epochs so far), `curves.png`, and
`last.pt` (model, optimizer, scheduler, RNG state, epoch; atomic) so an interrupted run resumes exactly where it
stopped; at the end: `model.pt` (a self-describing checkpoint), `metrics.json` and `confusion.png`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from models.checkpoint import save_checkpoint
from models.contract.atomic import atomic_path, atomic_savefig, atomic_write_text
from models.contract.errors import BadInput
from models.contract.layouts import Layout
from models.net.stgcn import STGCN, STGCNConfig, count_params
from models.net.transforms import InputConfig
from models.training.distributed import DistContext, autocast, evaluate_on, sync_batchnorm

STATE_FORMAT = "skd-pipeline/train-state"


@dataclass
class TrainConfig:
    epochs: int = 60
    batch_size: int = 32
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    warmup_epochs: float = 5.0  # linear warm-up, per iteration
    schedule: str = "cosine"  # "cosine" (to 0 at the end) or "step" (x gamma at each milestone epoch)
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    seed: int = 0
    num_workers: int = 0
    device: str = "cpu"
    amp: bool = True  # mixed precision (bfloat16 autocast) on CUDA; ignored on a CPU
    sync_bn: bool = False  # under torchrun on CUDA: BatchNorm statistics of the whole batch (SyncBatchNorm)
    label_smoothing: float = 0.0
    eval_every: int = 1  # test-set evaluation every N epochs (and always after the last)
    num_test_clips: int = 1  # windows per test clip, softmax-averaged
    grad_clip: float = 0.0  # 0: no clipping (the gradient norm is still checked for inf/NaN)
    plot_every: int = 1  # redraw curves.png every N epochs (0: only at the end); metrics.csv is always written
    precision: str = "fp32"  # "bf16": autocast the training forward to bfloat16 (weights, grads, eval stay fp32)

    def __post_init__(self) -> None:
        self.milestones = tuple(int(m) for m in self.milestones)
        if self.schedule not in ("cosine", "step"):
            raise ValueError(f"schedule must be 'cosine' or 'step', got {self.schedule!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.eval_every < 1 or self.num_test_clips < 1:
            raise ValueError("epochs, batch_size, eval_every and num_test_clips must be >= 1")
        if self.lr <= 0:
            raise ValueError("lr must be > 0")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    @staticmethod
    def from_dict(d: dict) -> TrainConfig:
        known = set(TrainConfig.__dataclass_fields__)
        return TrainConfig(**{k: (tuple(v) if k == "milestones" else v) for k, v in d.items() if k in known})


# ---------------------------------------------------------------------------------------------------- blocks


def make_optimizer(model_params: Iterable[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(list(model_params), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           weight_decay=cfg.weight_decay)


def lr_factor(step: int, cfg: TrainConfig, iters_per_epoch: int) -> float:
    """The learning-rate multiplier at iteration `step` (0-based): linear warm-up, then cosine or step."""
    warm = int(round(cfg.warmup_epochs * iters_per_epoch))
    total = cfg.epochs * iters_per_epoch
    if step < warm:
        return (step + 1) / warm
    if cfg.schedule == "cosine":
        progress = (step - warm) / max(1, total - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    epoch = step // max(1, iters_per_epoch)
    return cfg.gamma ** sum(1 for m in cfg.milestones if epoch >= m)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, iters_per_epoch: int
                   ) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-iteration schedule: call `.step()` after every optimizer step (skipped steps included)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg, iters_per_epoch))


def cpu_autocast(cfg: TrainConfig, device: torch.device | str = "cpu"):
    """The CPU training forward's precision: bfloat16 autocast when `cfg.precision == "bf16"` (CUDA: `cfg.amp`).

    On CPUs with AVX-512 BF16 (or AMX) oneDNN runs bf16 convolutions about twice as fast as fp32; the weights,
    the optimizer and the loss stay fp32, so no loss scaling is needed.
    """
    on = cfg.precision == "bf16" and torch.device(device).type == "cpu"
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=on)


def batch_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits `[N, K]` for a batch `[N, M, T, V, C]`, or class probabilities averaged over the windows of a
    multi-window test batch `[N, W, M, T, V, C]` (returned as log-probabilities so argmax/softmax still work)."""
    if x.dim() == 6:
        n, w = x.shape[:2]
        probs = F.softmax(model(x.flatten(0, 1)), dim=-1).view(n, w, -1).mean(1)
        return probs.clamp_min(1e-12).log()
    return model(x)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: str | torch.device = "cpu",
             num_classes: int | None = None) -> dict:
    """Top-1/top-5 (fractions), n, confusion matrix `[true, predicted]`, per-clip probabilities and labels."""
    was_training = model.training
    model.eval()
    probs, labels = [], []
    try:
        for x, y in loader:
            out = batch_logits(model, x.to(device))
            probs.append(F.softmax(out.float(), dim=-1).cpu())
            labels.append(torch.as_tensor(y))
    finally:
        model.train(was_training)
    if not probs:
        raise ValueError("evaluate: the loader yielded no samples")
    return scores_from_probs(torch.cat(probs).numpy(), torch.cat(labels).numpy(), num_classes)


def scores_from_probs(p: np.ndarray, t: np.ndarray, num_classes: int | None = None) -> dict:
    """`evaluate`'s numbers from per-clip probabilities `[N, K]` and labels (also for gathered shards)."""
    t = t.astype(np.int64)
    k = num_classes or p.shape[1]
    top = np.argsort(-p, axis=1)
    top1 = float(np.mean(top[:, 0] == t))
    top5 = float(np.mean((top[:, : min(5, k)] == t[:, None]).any(1)))
    conf = np.zeros((k, k), dtype=np.int64)
    np.add.at(conf, (t, top[:, 0]), 1)
    loss = float(-np.mean(np.log(np.clip(p[np.arange(len(t)), t], 1e-12, None))))
    return {"top1": top1, "top5": top5, "n": int(len(t)), "loss": loss, "confusion": conf, "probs": p,
            "labels": t}


def train_loader(dataset, cfg: TrainConfig, epoch: int) -> DataLoader:
    """The epoch's shuffled loader: order depends only on (seed, epoch), so a resumed run sees the same batches."""
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    g = torch.Generator()
    g.manual_seed(cfg.seed * 1_000_003 + epoch)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, generator=g, num_workers=cfg.num_workers,
                        drop_last=len(dataset) > cfg.batch_size)
    # Under torchrun (models.training.distributed.ShardedTrainSet): this rank's slice of each of these very batches.
    return dataset.shard_loader(loader) if hasattr(dataset, "shard_loader") else loader


def test_loader(dataset, cfg: TrainConfig) -> DataLoader:
    return DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.num_workers)


test_loader.__test__ = False  # not a pytest test, whatever module imports it


# ------------------------------------------------------------------------------------------------ the loop


@dataclass
class _History:
    rows: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    skipped_steps: int = 0


CSV_FIELDS = ["epoch", "lr", "train_loss", "train_top1", "test_loss", "test_top1", "test_top5", "skipped_steps",
              "epoch_seconds"]


def train_model(model: STGCN, train_set, test_set, cfg: TrainConfig, out_dir: str | os.PathLike, *,
                layout: Layout, classes: list[str], model_config: STGCNConfig, input_config: InputConfig,
                resume: bool = False, progress: bool = True, extra: dict | None = None,
                stop_after_epoch: int | None = None, dist: DistContext | None = None) -> dict:
    """Train `model` on `train_set`, evaluate on `test_set`, write the run folder; returns metrics.json's dict.

    `resume` continues from `out_dir/last.pt` (same batches, same random draws, same weights as an uninterrupted
    run). `stop_after_epoch` ends the call after that many epochs, as an interruption would (tests use it).
    `dist` (under torchrun, see models/training/distributed.py): each rank trains on its slice of every batch, gradients
    and epoch metrics are reduced across ranks, evaluation is sharded, and rank 0 alone writes files.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(cfg.device)
    model.to(device)
    main = dist is None or dist.is_main
    if dist is not None:
        train_set = dist.shard(train_set)
    if cfg.sync_bn:
        model = sync_batchnorm(model, dist)
    iters = len(train_loader(train_set, cfg, 0))
    if iters == 0:
        raise BadInput("the training split is empty")
    optimizer = make_optimizer(model.parameters(), cfg)
    scheduler = make_scheduler(optimizer, cfg, iters)
    hist = _History()
    start = 0
    if resume:
        start = _load_state(out / "last.pt", model, optimizer, scheduler, hist, model_config)
    if dist is not None:
        dist.broadcast_module(model)
    params = [p for p in model.parameters() if p.requires_grad]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=cfg.epochs * iters, initial=min(start, cfg.epochs) * iters, unit="it",
                   desc=f"train {out.name}", dynamic_ncols=True)
    last_eval: dict | None = None
    try:
        for epoch in range(start, cfg.epochs):
            t0 = time.perf_counter()
            model.train()
            loss_sum, correct, seen, skipped = 0.0, 0, 0, 0
            for x, y in train_loader(train_set, cfg, epoch):
                x, y = x.to(device), y.to(device)
                with autocast(device, cfg.amp), cpu_autocast(cfg, device):
                    logits = model(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                finite = bool(torch.isfinite(loss))
                if dist is not None:
                    finite = dist.all_true(finite)  # skipped by every rank or none (no rank left waiting)
                if not finite:
                    skipped += 1  # never apply a non-finite step; keep the schedule in step with iterations
                else:
                    loss.backward()
                    if dist is not None:
                        dist.average_gradients(params, len(y))
                    norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
                    if torch.isfinite(norm):
                        optimizer.step()
                        loss_sum += float(loss.detach()) * len(y)
                        correct += int((logits.argmax(1) == y).sum())
                        seen += len(y)
                    else:
                        skipped += 1
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / max(seen, 1):.3f}",
                                    acc=f"{correct / max(seen, 1):.3f}", refresh=False)
            if dist is not None:  # the epoch's numbers over the whole batches; one model on every rank
                loss_sum, correct, seen = dist.sum_floats([loss_sum, correct, seen])
                correct, seen = int(correct), int(seen)
                dist.average_buffers(model)
            hist.train_seconds += time.perf_counter() - t0
            hist.skipped_steps += skipped
            row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                   "train_loss": loss_sum / seen if seen else float("nan"),
                   "train_top1": correct / seen if seen else float("nan"),
                   "test_loss": "", "test_top1": "", "test_top5": "", "skipped_steps": skipped,
                   "epoch_seconds": round(time.perf_counter() - t0, 3)}
            if test_set is not None and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
                last_eval = evaluate_on(model, test_set, cfg, device, len(classes), dist)
                row.update(test_loss=last_eval["loss"], test_top1=last_eval["top1"], test_top5=last_eval["top5"])
            hist.rows.append(row)
            if main:
                write_csv(out / "metrics.csv", hist.rows)
                if cfg.plot_every and (epoch + 1) % cfg.plot_every == 0:
                    _plot_curves(out / "curves.png", hist.rows)
                _save_state(out / "last.pt", epoch + 1, model, optimizer, scheduler, hist, cfg, model_config,
                            input_config)
            if bar is not None:
                bar.write(_epoch_line(row))
            if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < cfg.epochs:
                return {"stopped_after_epoch": epoch + 1}
    finally:
        if bar is not None:
            bar.close()
    # Final: evaluate (unless the last epoch just did), save model.pt, metrics.json, confusion.png.
    if test_set is not None and last_eval is None:
        last_eval = evaluate_on(model, test_set, cfg, device, len(classes), dist)
    metrics = {
        "classes": list(classes),
        "test_top1": last_eval["top1"] if last_eval else None,
        "test_top5": last_eval["top5"] if last_eval else None,
        "n_test": last_eval["n"] if last_eval else 0,
        "epochs": cfg.epochs,
        "train_seconds": round(hist.train_seconds, 2),
        "seed": cfg.seed,
        "skipped_steps": hist.skipped_steps,
        "params": count_params(model),
        "train_config": cfg.to_dict(),
        "input_config": input_config.to_dict(),
        "model_config": {k: v for k, v in model_config.to_dict().items() if k != "layout"},
        "layout": layout.name,
    }
    model.cpu().eval()  # handed back ready to use
    if main:
        if hist.rows:
            _plot_curves(out / "curves.png", hist.rows)
        if last_eval is not None:
            _plot_confusion(out / "confusion.png", last_eval["confusion"], classes)
        save_checkpoint(out / "model.pt", model, layout=layout, classes=classes, model_config=model_config,
                        input_config=input_config,
                        extra={"metrics": {k: metrics[k] for k in ("test_top1", "test_top5", "n_test", "epochs",
                                                                   "train_seconds", "seed")},
                               "train_config": cfg.to_dict(), **(extra or {})})
        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    if dist is not None:
        dist.barrier()  # model.pt is on disk before any rank reads it
    return metrics


def _epoch_line(row: dict) -> str:
    s = f"epoch {row['epoch']}: loss {row['train_loss']:.4f} train {row['train_top1']:.3f}"
    if row["test_top1"] != "":
        s += f" test top1 {row['test_top1']:.4f} top5 {row['test_top5']:.4f}"
    return s + f" ({row['epoch_seconds']:.1f}s)"


def _save_state(path: Path, epoch: int, model: nn.Module, optimizer, scheduler, hist: _History, cfg: TrainConfig,
                model_config: STGCNConfig, input_config: InputConfig) -> None:
    state = {
        "format": STATE_FORMAT, "version": 1, "epoch": epoch,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "rng_torch": torch.get_rng_state(),
        "history": hist.rows, "train_seconds": hist.train_seconds, "skipped_steps": hist.skipped_steps,
        "train_config": cfg.to_dict(), "model_config": model_config.to_dict(), "input_config": input_config.to_dict(),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_state(path: Path, model: nn.Module, optimizer, scheduler, hist: _History,
                model_config: STGCNConfig) -> int:
    if not path.is_file():
        raise BadInput("nothing to resume: no last.pt in the run folder", path.parent)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or foreign file: one line, never a traceback
        raise BadInput(f"cannot resume from this file ({type(e).__name__}: {' '.join(str(e).split())[:160]})",
                       path) from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise BadInput("not a training state file", path)
    if state["model_config"] != model_config.to_dict():
        raise BadInput("the run was started with another model configuration (layout, width, depth, features); "
                       "resume with the same options", path)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng_torch"])
    hist.rows = list(state["history"])
    hist.train_seconds = float(state["train_seconds"])
    hist.skipped_steps = int(state["skipped_steps"])
    return int(state["epoch"])


def write_csv(path: Path, rows: list[dict], fields: list[str] = CSV_FIELDS) -> None:
    """Per-epoch rows as CSV, atomically; a missing value is an empty cell."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in fields})
    atomic_write_text(path, buf.getvalue())


def _plot_curves(path: Path, rows: list[dict]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(ep, [r["train_loss"] for r in rows], label="train")
    te = [(r["epoch"], r["test_loss"], r["test_top1"]) for r in rows if r["test_top1"] != ""]
    if te:
        ax1.plot([e for e, _, _ in te], [lo for _, lo, _ in te], "o-", label="test")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.plot(ep, [r["train_top1"] for r in rows], label="train top-1 (augmented)")
    if te:
        ax2.plot([e for e, _, _ in te], [a for _, _, a in te], "o-", label="test top-1")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy")
    ax2.set_ylim(0, 1.01)
    ax2.legend()
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    atomic_savefig(fig, path)


def _plot_confusion(path: Path, conf: np.ndarray, classes: list[str]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(classes)
    norm = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    size = min(4 + 0.35 * k, 30)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if k <= 60:
        ax.set_xticks(range(k))
        ax.set_yticks(range(k))
        ax.set_xticklabels(classes, rotation=90, fontsize=8)
        ax.set_yticklabels(classes, fontsize=8)
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if conf[i, j]:
                    ax.text(j, i, str(conf[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    acc = np.trace(conf) / max(conf.sum(), 1)
    ax.set_title(f"confusion (rows: true, columns: predicted), top-1 {acc:.3f}")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    atomic_savefig(fig, path)
