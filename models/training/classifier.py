"""Training a skeleton classifier: the cross-entropy step, and `train_model` (the loop plus the run's final files).

`train_model` writes into its run folder, each epoch: `metrics.csv` (all epochs so far), `curves.png`, and
`last.pt` (model, optimizer, scheduler, RNG state, epoch; atomic) so an interrupted run resumes exactly where it
stopped; at the end: `model.pt` (a self-describing checkpoint), `metrics.json` and `confusion.png`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.checkpoint import save_checkpoint
from models.contract.atomic import atomic_write_text
from models.contract.layouts import Layout
from models.net.stgcn import STGCN, STGCNConfig, count_params
from models.net.transforms import InputConfig
from models.training.calibration import rule_for
from models.training.config import TrainConfig
from models.training.distributed import DistContext, sync_batchnorm
from models.training.fit import RunFiles, Step, StepOut, fit
from models.training.history import (
    CSV_FIELDS,
    classifier_line,
    plot_classifier_curves,
    plot_confusion,
)
from models.training.runtime import forward_precision
from models.training.state import CLASSIFIER_STATE


def ce_step(model: nn.Module, cfg: TrainConfig, params: list[Tensor], dist: DistContext | None = None) -> Step:
    """The plain step: cross-entropy on the labels (forward in `cfg.precision`, loss in fp32)."""
    device = torch.device(cfg.device)

    def step(batch: tuple[Tensor, ...]) -> StepOut:
        x, y = (t.to(device) for t in batch)
        with forward_precision(device, cfg.amp, cfg.precision):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
        finite = bool(torch.isfinite(loss))
        if dist is not None:
            finite = dist.all_true(finite)  # skipped by every rank or none (no rank left waiting)
        if not finite:
            return StepOut({"ce": loss.detach()}, logits.detach(), y, {"skipped": 1.0})
        loss.backward()
        if dist is not None:
            dist.average_gradients(params, len(y))
        return StepOut({"ce": loss.detach()}, logits.detach(), y)

    return step


def _row(r: dict, ev: dict | None) -> dict:
    return {"epoch": r["epoch"], "lr": r["lr"], "train_loss": r.get("loss_ce", float("nan")),
            "train_top1": r["train_top1"],
            "test_loss": ev["loss"] if ev else "", "test_top1": ev["top1"] if ev else "",
            "test_top5": ev["top5"] if ev else "", "skipped_steps": r["skipped_steps"],
            "epoch_seconds": r["epoch_seconds"]}


def train_model(model: STGCN, train_set, test_set, cfg: TrainConfig, out_dir: str | os.PathLike, *,
                layout: Layout, classes: list[str], model_config: STGCNConfig, input_config: InputConfig,
                resume: bool = False, progress: bool = True, extra: dict | None = None,
                stop_after_epoch: int | None = None, dist: DistContext | None = None) -> dict:
    """Train `model` on `train_set`, evaluate on `test_set`, write the run folder; returns metrics.json's dict.

    `resume` continues from `out_dir/last.pt` (same batches, same random draws, same weights as an uninterrupted
    run). `stop_after_epoch` ends the call after that many epochs, as an interruption would (tests use it).
    `dist` (under torchrun, see models/training/distributed.py): each rank trains on its slice of every batch,
    gradients and epoch metrics are reduced across ranks, evaluation is sharded, and rank 0 alone writes files.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.to(torch.device(cfg.device))
    main = dist is None or dist.is_main
    if dist is not None:
        train_set = dist.shard(train_set)
    if cfg.sync_bn:
        model = sync_batchnorm(model, dist)
    params = [p for p in model.parameters() if p.requires_grad]
    files = RunFiles(state=out / "last.pt", state_format=CLASSIFIER_STATE, csv=out / "metrics.csv",
                     plot=out / "curves.png", plot_fn=plot_classifier_curves, line=classifier_line, row=_row,
                     csv_fields=CSV_FIELDS,
                     hint="a shorter --length (32), a smaller --width, or a GPU (--device cuda)",
                     config={"train_config": cfg.to_dict(), "model_config": model_config.to_dict(),
                             "input_config": input_config.to_dict()},
                     # the same model; the rest may change on resume (e.g. more epochs)
                     must_match={"model_config": model_config.to_dict()})
    hist, last_eval, finished = fit(ce_step(model, cfg, params, dist), {"model": model}, params, train_set,
                                    test_set, cfg, files, eval_model=model,
                                    num_classes=len(classes), resume=resume, progress=progress,
                                    desc=f"train {out.name}", dist=dist, stop_after_epoch=stop_after_epoch)
    if not finished:
        return {"stopped_after_epoch": len(hist.rows)}
    metrics = {
        "classes": list(classes),
        "test_top1": last_eval["top1"] if last_eval else None,
        "test_top5": last_eval["top5"] if last_eval else None,
        "n_test": last_eval["n"] if last_eval else 0,
        "epochs": len(hist.rows),  # run, the last one maybe cut short by a budget of steps
        "steps": hist.steps,
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
    open_set: dict = {}
    if main and last_eval is not None and hasattr(train_set, "clips") and hasattr(test_set, "clips"):
        rule = rule_for(model, train_set.clips, test_set.clips, layout, input_config, len(classes))
        open_set = {"open_set": rule.to_dict()}
        metrics["open_set"] = {"rule": rule.kind, "threshold": round(rule.threshold, 3), "keep": rule.keep,
                               "calibrated_on": "test split"}
    if main:
        if hist.rows:
            plot_classifier_curves(out / "curves.png", hist.rows)
        if last_eval is not None:
            plot_confusion(out / "confusion.png", last_eval["confusion"], classes)
        save_checkpoint(out / "model.pt", model, layout=layout, classes=classes, model_config=model_config,
                        input_config=input_config,
                        extra={"metrics": {k: metrics[k] for k in ("test_top1", "test_top5", "n_test", "epochs",
                                                                   "steps", "train_seconds", "seed")},
                               "train_config": cfg.to_dict(), **open_set, **(extra or {})})
        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    if dist is not None:
        dist.barrier()  # model.pt is on disk before any rank reads it
    return metrics
