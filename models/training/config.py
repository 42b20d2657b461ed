"""The optimisation settings every training run shares: `TrainConfig`, the optimizer, the LR schedule, the loader."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from models.contract.numbers import check_number
from models.training.policy import DEFAULT_STEPS, PRECISIONS


@dataclass
class TrainConfig:
    # The budget: `epochs` whole epochs, or `steps` optimizer steps (the last epoch cut short), whatever the data
    # set's size; neither given: DEFAULT_STEPS steps.
    epochs: int | None = None
    steps: int | None = None
    batch_size: int = 32
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    warmup_epochs: float | None = None  # linear warm-up, per iteration; None: 5 epochs or a sixth of a shorter run
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
    plot_every: int = 1  # redraw the curves every N epochs (0: only at the end); the CSV is always written
    precision: str = "fp32"  # "bf16": autocast the training forward to bfloat16 (weights, grads, eval stay fp32)

    def __post_init__(self) -> None:
        self.milestones = tuple(int(m) for m in self.milestones)
        if self.schedule not in ("cosine", "step"):
            raise ValueError(f"schedule must be 'cosine' or 'step', got {self.schedule!r}")
        if self.epochs is not None and self.steps is not None:
            raise ValueError("give a budget of epochs or of steps, not both")
        if self.epochs is None and self.steps is None:
            self.steps = DEFAULT_STEPS
        for name in ("epochs", "steps"):
            if getattr(self, name) is not None:
                check_number(name, getattr(self, name), 1, integer=True)
        if self.batch_size < 1 or self.eval_every < 1 or self.num_test_clips < 1:
            raise ValueError("batch_size, eval_every and num_test_clips must be >= 1")
        if self.warmup_epochs is not None:
            check_number("warmup_epochs", self.warmup_epochs, 0)
        for name, lo, hi, lo_open, hi_open in (
                ("lr", 0, None, True, False), ("weight_decay", 0, None, False, False),
                ("momentum", 0, 1, False, True),
                ("gamma", 0, None, True, False), ("label_smoothing", 0, 1, False, True),
                ("grad_clip", 0, None, False, False)):
            check_number(name, getattr(self, name), lo, hi, lo_open=lo_open, hi_open=hi_open)
        for name, lo in (("batch_size", 1), ("num_workers", 0), ("seed", 0), ("plot_every", 0)):
            check_number(name, getattr(self, name), lo, integer=True)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    @staticmethod
    def from_dict(d: dict) -> TrainConfig:
        known = set(TrainConfig.__dataclass_fields__)
        return TrainConfig(**{k: (tuple(v) if k == "milestones" else v) for k, v in d.items() if k in known})

    def budget(self) -> str:
        """The budget as the user gives it, e.g. "--steps 1500" or "--epochs 30"."""
        return f"--steps {self.steps}" if self.steps is not None else f"--epochs {self.epochs}"


def run_plan(cfg: TrainConfig, iters_per_epoch: int) -> tuple[int, int]:
    """(epochs, optimizer steps) of the run: every epoch whole, or `steps` steps with the last epoch cut short."""
    total = cfg.steps if cfg.steps is not None else cfg.epochs * iters_per_epoch  # type: ignore[operator]
    return -(-total // max(1, iters_per_epoch)), total


def warmup_steps(cfg: TrainConfig, iters_per_epoch: int) -> int:
    """Steps of the linear warm-up: `warmup_epochs`, by default 5 epochs or a sixth of a shorter run."""
    if cfg.warmup_epochs is None:
        return int(round(min(5 * iters_per_epoch, run_plan(cfg, iters_per_epoch)[1] / 6)))
    return int(round(cfg.warmup_epochs * iters_per_epoch))


def iters_per_epoch(cfg: TrainConfig, n_clips: int) -> int:
    """Optimizer steps per epoch over `n_clips` (the loader drops a last partial batch when there is a full one)."""
    return n_clips // cfg.batch_size if n_clips > cfg.batch_size else int(n_clips > 0)


def warmup_problem(cfg: TrainConfig, iters: int) -> str | None:
    """Why the warm-up does not fit the run (the learning rate would never reach its peak), or None."""
    total = run_plan(cfg, iters)[1]
    if cfg.warmup_epochs is not None and warmup_steps(cfg, iters) >= total:
        return (f"--warmup {cfg.warmup_epochs:g} epochs ({warmup_steps(cfg, iters)} steps) is not shorter than the "
                f"run ({cfg.budget()}: {total} steps): the learning rate would never reach --lr")
    return None


def make_optimizer(model_params: Iterable[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(list(model_params), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           weight_decay=cfg.weight_decay)


def lr_factor(step: int, cfg: TrainConfig, iters_per_epoch: int) -> float:
    """The learning-rate multiplier at iteration `step` (0-based): linear warm-up, then cosine or step."""
    warm = warmup_steps(cfg, iters_per_epoch)
    total = run_plan(cfg, iters_per_epoch)[1]
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


def train_loader(dataset, cfg: TrainConfig, epoch: int) -> DataLoader:
    """The epoch's shuffled loader: order depends only on (seed, epoch), so a resumed run sees the same batches."""
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    g = torch.Generator()
    g.manual_seed(cfg.seed * 1_000_003 + epoch)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, generator=g, num_workers=cfg.num_workers,
                        drop_last=len(dataset) > cfg.batch_size)
    # Under torchrun (models.training.distributed.ShardedTrainSet): this rank's slice of each of these batches.
    return dataset.shard_loader(loader) if hasattr(dataset, "shard_loader") else loader


def test_loader(dataset, cfg: TrainConfig) -> DataLoader:
    return DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.num_workers)


test_loader.__test__ = False  # not a pytest test, whatever module imports it
