"""Training loop: it really learns (overfits a tiny set), resumes exactly, skips non-finite steps, writes its run."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint
from models.contract.errors import BadInput
from models.net.transforms import InputConfig
from models.training.classifier import train_model
from models.training.config import TrainConfig, lr_factor, make_optimizer, make_scheduler, test_loader
from models.training.evaluation import evaluate
from pipeline.data.clips import ClipDataset
from pipeline.stages.training import ModelOptions, build_model
from tests.conftest import make_dataset

NO_AUG = dict(aug_scale=0.0, aug_rotation=0.0, aug_flip=False)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _setup(icfg: InputConfig, seed: int = 0, width: float = 0.25, depth: int = 4, dropout: float = 0.0):
    ds = make_dataset(n_per_class=4, num_classes=3, t=24)
    torch.manual_seed(seed)
    model, mcfg = build_model(ds.layout, ds.num_classes, ds.num_channels, icfg,
                              ModelOptions(width=width, depth=depth, dropout=dropout))
    train = ClipDataset(ds.subset("train"), ds.layout, icfg, train=True, seed=seed)
    test = ClipDataset(ds.subset("test"), ds.layout, icfg, train=False)
    return ds, model, mcfg, train, test


def _run(model, mcfg, icfg, ds, train, test, cfg, out, **kw):
    return train_model(model, train, test, cfg, out, layout=ds.layout, classes=ds.classes, model_config=mcfg,
                       input_config=icfg, progress=False, **kw)


def test_overfits_a_tiny_dataset(tmp_path) -> None:
    icfg = InputConfig(length=16, max_persons=1, **NO_AUG)
    ds, model, mcfg, train, test = _setup(icfg)
    cfg = TrainConfig(epochs=20, batch_size=3, lr=0.1, warmup_epochs=1, weight_decay=0.0, plot_every=0)
    metrics = _run(model, mcfg, icfg, ds, train, test, cfg, tmp_path)
    as_test = ClipDataset(ds.subset("train"), ds.layout, icfg, train=False)
    ev = evaluate(model, test_loader(as_test, cfg))
    assert ev["top1"] == 1.0, ev  # every training clip right, in eval mode (running BN statistics)
    assert ev["loss"] < 0.3
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert len(rows) == 20 and float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    # The run folder the CLI contract names.
    for name in ("model.pt", "metrics.json", "metrics.csv", "curves.png", "confusion.png", "last.pt"):
        assert (tmp_path / name).stat().st_size > 0, name
    mj = json.loads((tmp_path / "metrics.json").read_text())
    assert mj["classes"] == ds.classes and mj["epochs"] == 20 and 0 <= mj["test_top1"] <= 1
    assert mj["test_top1"] == metrics["test_top1"] and mj["train_seconds"] > 0
    loaded, meta = load_checkpoint(tmp_path / "model.pt", expect_layout=ds.layout, expect_classes=3,
                                   expect_channels=2)
    assert meta["extra"]["metrics"]["test_top1"] == mj["test_top1"]
    x = torch.stack([as_test[i][0] for i in range(len(as_test))])
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5)


def test_resume_continues_exactly(tmp_path) -> None:
    """Stopped after epoch 2 of 4 and resumed = an uninterrupted 4-epoch run, weight for weight."""
    icfg = InputConfig(length=8, max_persons=1, features=("joint", "bone"))  # augmentation on: RNG matters
    cfg = TrainConfig(epochs=4, batch_size=4, lr=0.05, warmup_epochs=1, plot_every=0, seed=3)
    # Dropout makes the torch RNG state part of what must be restored.
    ds, model, mcfg, train, test = _setup(icfg, seed=3, width=0.125, dropout=0.3)
    full = _run(model, mcfg, icfg, ds, train, test, cfg, tmp_path / "full")
    ds, model2, _, train2, test2 = _setup(icfg, seed=3, width=0.125, dropout=0.3)
    stopped = _run(model2, mcfg, icfg, ds, train2, test2, cfg, tmp_path / "part", stop_after_epoch=2)
    assert stopped == {"stopped_after_epoch": 2}
    assert not (tmp_path / "part" / "model.pt").exists()
    ds, _, _, train3, test3 = _setup(icfg, seed=3, width=0.125, dropout=0.3)
    torch.manual_seed(99)
    model3, _ = build_model(ds.layout, 3, 2, icfg, ModelOptions(width=0.125, depth=4, dropout=0.3))  # replaced
    torch.manual_seed(12345)  # a disturbed RNG: restored
    resumed = _run(model3, mcfg, icfg, ds, train3, test3, cfg, tmp_path / "part", resume=True)
    for (k, a), b in zip(model.state_dict().items(), model3.state_dict().values()):
        assert torch.equal(a, b), k
    assert resumed["test_top1"] == full["test_top1"]
    cols = ("epoch", "lr", "train_loss", "train_top1", "test_top1")
    part = [{c: r[c] for c in cols} for r in csv.DictReader(open(tmp_path / "part" / "metrics.csv"))]
    whole = [{c: r[c] for c in cols} for r in csv.DictReader(open(tmp_path / "full" / "metrics.csv"))]
    assert len(part) == 4 and part == whole


def test_resume_without_state_refused(tmp_path) -> None:
    icfg = InputConfig(length=8, max_persons=1)
    ds, model, mcfg, train, test = _setup(icfg, width=0.125)
    with pytest.raises(BadInput, match="nothing to resume"):
        _run(model, mcfg, icfg, ds, train, test, TrainConfig(epochs=1), tmp_path, resume=True)


class _NaNOnce(torch.nn.Module):
    """Wraps a model; its second training forward returns NaN logits (a diverged step)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.calls = 0

    def forward(self, x, return_features=False):
        if return_features:  # (the open-set calibration after training asks for the features too)
            return self.model(x, return_features=True)
        out = self.model(x)
        if self.training:
            self.calls += 1
            if self.calls == 2:
                return out * float("nan")
        return out


def test_non_finite_steps_are_skipped_and_counted(tmp_path) -> None:
    icfg = InputConfig(length=8, max_persons=1, **NO_AUG)
    ds, model, mcfg, train, test = _setup(icfg, width=0.125)
    wrapped = _NaNOnce(model)
    cfg = TrainConfig(epochs=2, batch_size=3, lr=0.05, warmup_epochs=0, plot_every=0)
    metrics = train_model(wrapped, train, test, cfg, tmp_path, layout=ds.layout, classes=ds.classes,
                          model_config=mcfg, input_config=icfg, progress=False)
    assert metrics["skipped_steps"] == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert rows[0]["skipped_steps"] == "1" and rows[1]["skipped_steps"] == "0"


def test_evaluate_averages_test_windows_and_counts() -> None:
    icfg = InputConfig(length=8, max_persons=1)
    ds, model, _, _, _ = _setup(icfg, width=0.125)
    clips = ds.subset("test") + ds.subset("train")
    multi = ClipDataset(clips, ds.layout, icfg, train=False, num_test_clips=3)
    ev = evaluate(model, test_loader(multi, TrainConfig(batch_size=5)), num_classes=3)
    assert ev["n"] == len(clips) and ev["probs"].shape == (len(clips), 3)
    assert np.allclose(ev["probs"].sum(1), 1, atol=1e-5)
    assert ev["confusion"].sum() == len(clips) and ev["confusion"].shape == (3, 3)
    assert ev["top5"] == 1.0 and ev["top1"] == pytest.approx(np.trace(ev["confusion"]) / len(clips))
    # the average over windows, by hand
    model.eval()
    x, _ = multi[0]
    with torch.no_grad():
        manual = torch.softmax(model(x), -1).mean(0)
    assert np.allclose(ev["probs"][0], manual.numpy(), atol=1e-5)


def test_schedules() -> None:
    cfg = TrainConfig(epochs=10, warmup_epochs=2, lr=0.1)
    f = [lr_factor(s, cfg, 5) for s in range(50)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)  # linear warm-up over 10 iterations
    assert all(a >= b for a, b in zip(f[10:], f[11:]))  # cosine decays
    assert f[-1] < 0.01
    step = TrainConfig(epochs=10, warmup_epochs=0, schedule="step", milestones=(4, 8), lr=0.1)
    g = [lr_factor(s, step, 5) for s in range(50)]
    assert g[19] == 1.0 and g[20] == pytest.approx(0.1) and g[40] == pytest.approx(0.01)
    model = torch.nn.Linear(2, 2)
    opt = make_optimizer(model.parameters(), cfg)
    assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
    sched = make_scheduler(opt, cfg, 5)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.01) and lrs[9] == pytest.approx(0.1) and lrs[11] < 0.1
    with pytest.raises(ValueError):
        TrainConfig(schedule="linear")
    assert math.isfinite(lr_factor(0, TrainConfig(epochs=1, warmup_epochs=0), 1))
