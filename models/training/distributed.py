"""Data-parallel training under `torchrun`: process group, sharded batches, gradient/metric reduction, devices.

One process per rank; torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. The backend is
gloo on a CPU and NCCL on CUDA (one GPU per rank, `cuda:LOCAL_RANK`). How the pieces fit:

- **Batches.** `--batch-size` stays the *global* batch. Every step, each rank takes its slice of the very batch a
  single process would draw (the same seeded shuffle, then the batch is split over the ranks, as evenly as
  possible), so the union over the ranks of every step is the single-process batch and the epoch's order does not
  depend on the number of ranks.
- **Gradients.** Each rank back-propagates the mean loss of its slice; the ranks' gradients are averaged, weighted
  by slice size, in one flat all-reduce. For losses that are means over samples (CE, KD, node, edge, FitNet, AT)
  that is the gradient of the whole batch's mean loss: the update of a single process on the combined batch.
  RKD's distances and angles relate the samples of a batch, so under N ranks it only relates samples within a
  slice (as any data-parallel RKD does).
- **Gradient revision.** The per-loss gradients are averaged across ranks *before* the projection
  (`models.grad_revision.revise_and_backward(reduce=...)`), so a conflict is judged on the combined batch.
- **Why not the `DistributedDataParallel` wrapper.** Its reducer hooks `.backward()`; revision takes per-loss
  gradients with `torch.autograd.grad`, which it never sees, and the averaging has to happen between the per-loss
  gradients and the projection. One explicit all-reduce serves the plain and the revised steps alike. A step whose
  loss is not finite on any rank is skipped by all ranks (a one-sided skip would leave the others waiting).
- **BatchNorm.** A rank normalises its slice with that slice's statistics, so training with N ranks is not
  bit-identical to one process (see docs/DISTRIBUTED.md). Running statistics are averaged across ranks before
  every evaluation and checkpoint, so all ranks hold the same model. `--sync-bn` (CUDA only: torch's
  SyncBatchNorm needs GPU tensors) normalises with the whole batch's statistics.
- **Evaluation.** Each rank scores a strided shard of the test set; the per-clip probabilities are gathered and
  scored once, which gives the numbers a single process gets.
- **Files.** Rank 0 writes; the others wait at a barrier where they read what rank 0 wrote.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as tdist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from models.contract.errors import BadInput
from models.training.runtime import resolve_device

Reduce = Callable[[list[Tensor | None]], list[Tensor | None]]


# ------------------------------------------------------------------------------------------------- sharding


class RankSlices:
    """A batch sampler: this rank's slice of every batch of `base` (the single-process batch sampler)."""

    def __init__(self, base, rank: int, world_size: int):
        self.base, self.rank, self.world_size = base, rank, world_size

    def bounds(self, n: int) -> tuple[int, int]:
        """Start and end of this rank's slice of a batch of n (sizes differ by at most one)."""
        k, m = divmod(n, self.world_size)
        start = self.rank * k + min(self.rank, m)
        return start, start + k + (1 if self.rank < m else 0)

    def __len__(self) -> int:
        batch = getattr(self.base, "batch_size", None)
        total = len(self.base.sampler) if hasattr(self.base, "sampler") else None
        if batch is not None and total is not None and min(batch, total) < self.world_size:
            raise BadInput(f"a batch of {min(batch, total)} clips cannot be split over {self.world_size} ranks: "
                           f"use --batch-size >= {self.world_size} and at least {self.world_size} training clips")
        return len(self.base)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.base:
            batch = list(batch)
            if len(batch) < self.world_size:
                raise BadInput(f"a batch of {len(batch)} clips cannot be split over {self.world_size} ranks")
            lo, hi = self.bounds(len(batch))
            yield batch[lo:hi]


class ShardedTrainSet(Dataset):
    """A training set whose epoch loader (`models.training.config.train_loader`) yields only this rank's slices.

    `train_loader` builds the single-process loader as always (same seeded shuffle) and hands it to
    `shard_loader`, which keeps its sampler and generator and cuts each batch: the shuffle happens before the
    split, so the ranks' slices of a step together are exactly the single-process batch.
    """

    def __init__(self, dataset, rank: int, world_size: int):
        self.dataset, self.rank, self.world_size = dataset, rank, world_size

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        return self.dataset[i]

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def shard_loader(self, loader: DataLoader) -> DataLoader:
        # The same generator object: the new loader draws its worker seed from it, then the base sampler draws
        # the permutation from it, in the order a single-process loader does.
        return DataLoader(self.dataset, batch_sampler=RankSlices(loader.batch_sampler, self.rank, self.world_size),
                          num_workers=loader.num_workers, collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
                          worker_init_fn=loader.worker_init_fn, generator=loader.generator)


# ---------------------------------------------------------------------------------------------- the context


@dataclass
class DistContext:
    """This process's place in the job, and the collectives the training loops use."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # --- plumbing
    def barrier(self) -> None:
        if self.device.type == "cuda":
            tdist.barrier(device_ids=[self.device.index])
        else:
            tdist.barrier()

    def _all_reduce(self, t: Tensor, op=tdist.ReduceOp.SUM) -> Tensor:
        # NCCL reduces GPU tensors only, gloo CPU tensors: bring the buffer to the backend's device and back.
        comm = t.to(self.device) if t.device != self.device else t
        tdist.all_reduce(comm, op=op)
        return comm.to(t.device) if comm is not t else t

    def shard(self, dataset) -> ShardedTrainSet:
        if isinstance(dataset, ShardedTrainSet):
            return dataset
        return ShardedTrainSet(dataset, self.rank, self.world_size)

    # --- agreement and sums
    def all_true(self, flag: bool) -> bool:
        """True when `flag` holds on every rank (e.g. 'all losses finite': a step is skipped by all or none)."""
        t = torch.tensor([0.0 if flag else 1.0], dtype=torch.float64)
        return float(self._all_reduce(t)[0]) == 0.0

    def sum_floats(self, values: Sequence[float]) -> list[float]:
        t = torch.tensor([float(v) for v in values], dtype=torch.float64)
        return self._all_reduce(t).tolist()

    def sum_dict(self, values: dict[str, float]) -> dict[str, float]:
        """Sums per key across ranks (every rank must have the same keys, which the loops guarantee)."""
        keys = sorted(values)
        return dict(zip(keys, self.sum_floats([values[k] for k in keys])))

    # --- averaging
    def weighted_mean(self, tensors: Sequence[Tensor | None], weight: float,
                      like: Sequence[Tensor] | None = None) -> list[Tensor | None]:
        """Σ_r w_r·t_r / Σ_r w_r for every tensor (one flat all-reduce). None stays None when it is None on every
        rank; where only some ranks have a tensor, the others count zeros shaped like `like[i]`."""
        present = torch.tensor([t is not None for t in tensors], dtype=torch.float64)
        counts = self._all_reduce(present.clone())
        missing = [i for i, t in enumerate(tensors) if t is None and counts[i] > 0]
        if missing and like is None:
            raise RuntimeError("tensors to average exist on some ranks and not others")
        full = [t if t is not None or i not in missing else torch.zeros_like(like[i])  # type: ignore[index]
                for i, t in enumerate(tensors)]
        live = [t for t in full if t is not None]
        if not live:
            return list(full)
        dtype = live[0].dtype
        for t in live[1:]:
            dtype = torch.promote_types(dtype, t.dtype)
        buf = torch.cat([t.detach().reshape(-1).to(dtype) for t in live] + [torch.ones(1, dtype=dtype,
                                                                                     device=live[0].device)])
        buf.mul_(float(weight))
        buf = self._all_reduce(buf)
        buf = buf[:-1] / buf[-1]
        out: list[Tensor | None] = []
        pos = 0
        for t in full:
            if t is None:
                out.append(None)
                continue
            out.append(buf[pos:pos + t.numel()].view_as(t).to(t.dtype))
            pos += t.numel()
        return out

    def average_gradients(self, params: Sequence[Tensor], weight: float = 1.0) -> None:
        """Replace every `.grad` by the ranks' average weighted by `weight` (this rank's number of samples)."""
        avg = self.weighted_mean([p.grad for p in params], weight, like=list(params))
        for p, g in zip(params, avg):
            if g is not None:
                p.grad = g

    def reducer(self, weight: float) -> Reduce:
        """For `revise_and_backward(reduce=...)`: averages per-loss gradients before the projection."""
        return lambda tensors: self.weighted_mean(tensors, weight)

    def average_buffers(self, module: nn.Module) -> None:
        """Average the floating-point buffers (BatchNorm running statistics) so every rank holds the same model.

        A running mean averaged over ranks is exactly the running mean of the whole batches' means (it is linear);
        the running variance so averaged leaves out the spread between the slices' means."""
        bufs = [b for b in module.buffers() if b.is_floating_point()]
        for b, avg in zip(bufs, self.weighted_mean(bufs, 1.0)):
            b.data.copy_(avg)

    def broadcast_module(self, module: nn.Module) -> None:
        """Rank 0's parameters and buffers everywhere (the ranks start from one model whatever their RNGs did)."""
        for t in list(module.parameters()) + list(module.buffers()):
            comm = t.data.to(self.device)
            tdist.broadcast(comm, 0)
            if comm is not t.data:
                t.data.copy_(comm)

    def gather_objects(self, obj) -> list:
        """Every rank's `obj`, in rank order, on every rank."""
        parts: list = [None] * self.world_size
        tdist.all_gather_object(parts, obj)
        return parts


def check_sync_bn(dist: DistContext | None) -> None:
    if dist is None:
        raise BadInput("--sync-bn only applies under torchrun with more than one rank")
    if dist.device.type != "cuda":
        raise BadInput("--sync-bn needs --device cuda (torch's SyncBatchNorm runs on GPUs only)")


def sync_batchnorm(model: nn.Module, dist: DistContext | None) -> nn.Module:
    """The model with SyncBatchNorm layers (in place below the top module): BatchNorm statistics over the whole
    batch instead of each rank's slice. Torch runs them on GPUs only. Not exercised here: no GPU on this machine."""
    check_sync_bn(dist)
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


# ----------------------------------------------------------------------------------------- process group


def world_size_from_env() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


@contextlib.contextmanager
def distributed(device: str | torch.device | None = "cpu", timeout_s: float = 1800.0
                ) -> Iterator[DistContext | None]:
    """The job's DistContext under torchrun (WORLD_SIZE > 1), else None; the process group lives in the block."""
    world = world_size_from_env()
    if world <= 1:
        yield None
        return
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    owned = not tdist.is_initialized()
    if owned:
        tdist.init_process_group("nccl" if dev.type == "cuda" else "gloo",
                                 timeout=datetime.timedelta(seconds=timeout_s))
    try:
        ctx = DistContext(rank, world, local_rank, dev)
        yield ctx
        if owned:
            # Every rank done before the group goes: a rank that tore it down while a peer was still in a collective
            # made gloo abort that peer at exit ("terminate called without an active exception") on a loaded machine.
            ctx.barrier()
    finally:
        if owned and tdist.is_initialized():
            tdist.destroy_process_group()
