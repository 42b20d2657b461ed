"""Numerical safety: NaN/inf keypoints never reach a model or a loss; a non-finite step is skipped, counted and
not applied, in the classifier's training loop and in the student's distillation loop.

(The readers' masking and the input transform are also property-tested in tests/test_properties.py; this file
follows the values through the data sets, the models and the optimiser.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.contract.skeleton import SkeletonDataset
from models.losses.distill import DistillConfig, build_distill_losses
from models.net.transforms import InputConfig
from models.training.classifier import train_model
from models.training.config import TrainConfig
from models.training.student import train_student
from pipeline.data.clips import ClipDataset
from pipeline.data.paired import PairedClipDataset
from pipeline.stages.training import ModelOptions, build_model
from tests.conftest import make_dataset

ICFG = InputConfig(length=8, max_persons=1, features=("joint", "bone", "motion"))


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def holey_dataset() -> SkeletonDataset:
    """A tiny dataset whose clips hold NaN and inf coordinates and scores in memory (no reader masked them)."""
    ds = make_dataset(n_per_class=3, num_classes=3, t=12)
    rng = np.random.default_rng(0)
    for c in ds.clips:
        kp, sc = c.keypoint, c.keypoint_score
        for _ in range(6):
            t, v = rng.integers(kp.shape[1]), rng.integers(kp.shape[2])
            kp[0, t, v, rng.integers(2)] = rng.choice([np.nan, np.inf, -np.inf])
        sc[0, rng.integers(kp.shape[1]), rng.integers(kp.shape[2])] = rng.choice([np.nan, np.inf])
    ds.clips[0].keypoint[0, 3] = np.nan  # a whole frame lost
    ds.clips[1].keypoint[:] = np.inf  # a clip without a single valid joint
    return ds


def tiny_model(ds: SkeletonDataset, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(ds.layout, ds.num_classes, ds.num_channels, ICFG, ModelOptions(width=0.125, depth=2))


class Watch:
    """Forward hooks on a model: checks every input is finite, snapshots the trained parameters (`params`, default
    the model's own) at each counted forward, and can poison the output of one of them (a diverged step).

    Counted are the training-mode forwards, or with `every_call` all of them (a frozen teacher runs in eval mode,
    exactly once per distillation step)."""

    def __init__(self, model: torch.nn.Module, poison_at: int | None = None, every_call: bool = False,
                 params: torch.nn.Module | None = None):
        self.poison_at, self.every_call = poison_at, every_call
        self.params = params if params is not None else model
        self.calls = 0
        self.snapshots: list[list[torch.Tensor]] = []
        self.inputs_finite = True
        model.register_forward_pre_hook(self._pre)
        model.register_forward_hook(self._post)

    def _pre(self, module, args):
        self.inputs_finite &= bool(torch.isfinite(args[0]).all())
        if module.training or self.every_call:
            self.calls += 1
            self.snapshots.append([p.detach().clone() for p in self.params.parameters()])

    def _post(self, module, args, out):
        if (module.training or self.every_call) and self.calls == self.poison_at:
            return tuple(o * float("nan") for o in out) if isinstance(out, tuple) else out * float("nan")
        return out

    def changed(self, i: int, j: int) -> bool:
        """Whether any parameter differs between training forwards i and j (1-based)."""
        return any(not torch.equal(a, b) for a, b in zip(self.snapshots[i - 1], self.snapshots[j - 1]))


def _train(ds, model, mcfg, out, cfg: TrainConfig) -> dict:
    train = ClipDataset(ds.subset("train"), ds.layout, ICFG, train=True)
    test = ClipDataset(ds.subset("test"), ds.layout, ICFG, train=False)
    return train_model(model, train, test, cfg, out, layout=ds.layout, classes=ds.classes, model_config=mcfg,
                       input_config=ICFG, progress=False)


CFG = TrainConfig(epochs=2, batch_size=3, lr=0.05, warmup_epochs=0, plot_every=0)  # 2 steps per epoch


def test_nan_and_inf_keypoints_never_reach_the_model(tmp_path):
    ds = holey_dataset()
    for c in ds.clips:
        x, _ = ClipDataset([c], ds.layout, ICFG, train=True)[0]
        assert torch.isfinite(x).all(), c.frame_dir
    assert (ClipDataset([ds.clips[1]], ds.layout, ICFG, train=False)[0][0] == 0).all()  # nothing valid: all zero
    model, mcfg = tiny_model(ds)
    watch = Watch(model)
    metrics = _train(ds, model, mcfg, tmp_path, CFG)
    assert watch.inputs_finite and watch.calls == 4
    assert metrics["skipped_steps"] == 0  # every loss was finite
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_non_finite_loss_is_skipped_counted_and_not_applied(tmp_path):
    ds = make_dataset(n_per_class=3, num_classes=3, t=12)
    model, mcfg = tiny_model(ds)
    watch = Watch(model, poison_at=2)
    metrics = _train(ds, model, mcfg, tmp_path, CFG)
    assert metrics["skipped_steps"] == 1
    assert watch.changed(1, 2)  # an ordinary step moves the weights (so the check below can see a step)
    assert not watch.changed(2, 3)  # the poisoned step moved nothing: no update, no momentum, no weight decay
    assert watch.changed(3, 4)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_non_finite_gradient_is_skipped_counted_and_not_applied(tmp_path):
    ds = make_dataset(n_per_class=3, num_classes=3, t=12)
    model, mcfg = tiny_model(ds)
    watch = Watch(model)
    first = next(p for p in model.parameters() if p.requires_grad)
    backward = {"n": 0}

    def inf_grad_once(grad):
        backward["n"] += 1
        return grad * float("inf") if backward["n"] == 3 else grad  # the loss is finite; its gradient is not

    first.register_hook(inf_grad_once)
    metrics = _train(ds, model, mcfg, tmp_path, CFG)
    assert metrics["skipped_steps"] == 1
    assert watch.changed(2, 3) and not watch.changed(3, 4)
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("revision", ["global", "none"])
def test_the_distillation_loop_skips_a_non_finite_step(tmp_path, revision: str):
    ds = holey_dataset()
    teacher, _ = tiny_model(ds, seed=1)
    student, _ = tiny_model(ds, seed=2)
    teacher.eval()
    # The teacher's logits and features go NaN in the 2nd step: every distillation term of that step is non-finite.
    watch = Watch(teacher, poison_at=2, every_call=True, params=student)
    watch_s = Watch(student)
    dcfg = DistillConfig(method="skd-authors", grad_revision=revision)
    losses = build_distill_losses(dcfg, student.feature_channels, teacher.feature_channels)
    hq = ds.subset("train")
    lq = [c for c in make_dataset(n_per_class=3, num_classes=3, t=12, seed=5).clips if c.frame_dir in
          {h.frame_dir for h in hq}]
    lq[0].keypoint[0, :4] = np.nan  # the student's side has holes too
    train = PairedClipDataset(hq, lq, ds.layout, ICFG, train=True)
    test = ClipDataset(lq, ds.layout, ICFG, train=False)
    hist, ev = train_student(teacher, student, losses, train, test, CFG, dcfg, tmp_path, progress=False,
                             num_classes=ds.num_classes)
    assert hist.skipped_steps == 1 and hist.steps == 4
    assert watch.inputs_finite and watch_s.inputs_finite and watch.calls == 4
    assert watch.changed(1, 2) and not watch.changed(2, 3) and watch.changed(3, 4)
    assert all(torch.isfinite(p).all() for p in list(student.parameters()) + list(losses.parameters()))
    assert np.isfinite(ev["loss"])
