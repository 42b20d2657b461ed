"""A run's per-epoch record: the rows, their CSV and their plots (training curves, confusion matrix)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.contract.atomic import atomic_savefig, atomic_write_text

# The classifier's metrics.csv columns; a student's columns depend on its method's loss terms.
CSV_FIELDS = ["epoch", "lr", "train_loss", "train_top1", "test_loss", "test_top1", "test_top5", "skipped_steps",
              "epoch_seconds"]


@dataclass
class History:
    rows: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    skipped_steps: int = 0
    steps: int = 0


def write_csv(path: Path, rows: list[dict], fields: list[str] | None = None) -> None:
    """Per-epoch rows as CSV, atomically; a missing value is an empty cell. `fields` None: every key, in the order
    the rows first show them."""
    if fields is None:
        fields = []
        for r in rows:
            fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in fields})
    atomic_write_text(path, buf.getvalue())


def _pyplot():
    import matplotlib  # heavy, and only the plots need it
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_classifier_curves(path: Path, rows: list[dict]) -> None:
    """Cross-entropy and top-1 per epoch, train and test."""
    plt = _pyplot()
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


def plot_student_curves(path: Path, rows: list[dict]) -> None:
    """Each weighted loss term (log scale) and the LQ top-1 per epoch."""
    plt = _pyplot()
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


def plot_confusion(path: Path, conf: np.ndarray, classes: list[str], rows: list[str] | None = None,
                   title: str | None = None) -> None:
    """Counts `[true, predicted]`, each row shaded by its share. `rows`: the true labels when they are not
    `classes` (e.g. only the classes present, plus "other"); `title` replaces the top-1 one."""
    plt = _pyplot()
    square = rows is None
    rows = classes if rows is None else rows
    k, r = len(classes), len(rows)
    norm = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    size = min(4 + 0.35 * k, 30)
    fig, ax = plt.subplots(figsize=(size, size if square else min(2.5 + 0.35 * r, 30)))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if max(k, r) <= 60:
        ax.set_xticks(range(k))
        ax.set_yticks(range(r))
        ax.set_xticklabels(classes, rotation=90, fontsize=8)
        ax.set_yticklabels(rows, fontsize=8)
    if max(k, r) <= 30:
        for i in range(r):
            for j in range(k):
                if conf[i, j]:
                    ax.text(j, i, str(conf[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    if title is None:
        title = f"confusion (rows: true, columns: predicted), top-1 {np.trace(conf) / max(conf.sum(), 1):.3f}"
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    atomic_savefig(fig, path)


def classifier_line(row: dict) -> str:
    s = f"epoch {row['epoch']}: loss {row['train_loss']:.4f} train {row['train_top1']:.3f}"
    if row["test_top1"] != "":
        s += f" test top1 {row['test_top1']:.4f} top5 {row['test_top5']:.4f}"
    return s + f" ({row['epoch_seconds']:.1f}s)"


def student_line(row: dict) -> str:
    s = f"student epoch {row['epoch']}: ce {row.get('loss_ce', float('nan')):.4f} train {row['train_top1']:.3f}"
    if "test_top1" in row:
        s += f" LQ test top1 {row['test_top1']:.4f}"
    conflicts = [f"{k.split('/')[1]} {v:.0%}" for k, v in row.items() if k.startswith("conflict/")]
    if conflicts:
        s += " | revised: " + ", ".join(conflicts)
    return s + f" ({row['epoch_seconds']:.1f}s)"
