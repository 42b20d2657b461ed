"""Scoring a classifier on a test set: top-1/top-5, loss, confusion; on one process or sharded over ranks."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset

from models.training.config import TrainConfig, test_loader
from models.training.distributed import DistContext


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


def evaluate_sharded(model: nn.Module, dataset, cfg: TrainConfig, device, num_classes: int | None,
                     dist: DistContext) -> dict:
    """`evaluate` over the whole of `dataset`, each rank scoring every N-th clip; the same numbers on every rank."""
    idx = list(range(dist.rank, len(dataset), dist.world_size))
    p = t = None
    if idx:
        res = evaluate(model, test_loader(Subset(dataset, idx), cfg), device, num_classes)
        p, t = res["probs"], res["labels"]
    parts = dist.gather_objects((idx, p, t))
    order = np.concatenate([np.asarray(i, dtype=np.int64) for i, _, _ in parts])
    probs = np.concatenate([q for _, q, _ in parts if q is not None])
    labels = np.concatenate([y for _, _, y in parts if y is not None])
    rank_of = np.argsort(order, kind="stable")
    return scores_from_probs(probs[rank_of], labels[rank_of], num_classes)


def evaluate_on(model: nn.Module, dataset, cfg: TrainConfig, device, num_classes: int | None,
                dist: DistContext | None) -> dict:
    """Evaluate on one process, or sharded over the ranks with the same result."""
    if dist is None:
        return evaluate(model, test_loader(dataset, cfg), device, num_classes)
    return evaluate_sharded(model, dataset, cfg, device, num_classes, dist)
