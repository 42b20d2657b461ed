"""The loop's budget (whole epochs, or optimizer steps with the last epoch cut short), its estimate of a run's
length said after the first steps, and its progress report off a terminal."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from models.contract.errors import BadInput
from models.training.config import TrainConfig, iters_per_epoch, lr_factor, run_plan, warmup_problem, warmup_steps
from models.training.fit import LONG_RUN_S, PLAIN_REPORTS, RunFiles, StepOut, fit
from models.training.policy import DEFAULT_STEPS
from models.training.state import CLASSIFIER_STATE


def test_estimate_line_says_what_the_budget_costs_and_hints_only_for_long_runs():
    from models.training.fit import estimate_line

    line = estimate_line("student (skd)", step_s=0.5, iters=20, steps_left=60, budget="--steps 60", hint="a GPU")
    assert line == ("student (skd): ~0.50 s/step on this machine: ~10 s per epoch of 20 steps, ~30 s for the 60 "
                    "steps left (--steps 60)")
    long = estimate_line("train", step_s=2.0, iters=100, steps_left=1000, budget="--epochs 10", hint="a GPU")
    assert 2.0 * 1000 > LONG_RUN_S
    # The cheaper budget fits the long-run limit and its cost is said.
    assert long.endswith("~33 min for the 1000 steps left (--epochs 10); for a quicker run: fewer steps "
                         "(--steps 400: ~13 min), a GPU")
    # Steps so slow that few fit: the number is not rounded to 0; none worth running: no --steps hint.
    assert "(--steps 30: ~15 min)" in estimate_line("x", 30.0, 300, 600, "--steps 600")
    slow = estimate_line("x", 100.0, 30, 600, "--steps 600", "a GPU")
    assert slow.endswith("(--steps 600); for a quicker run: a GPU")
    assert "per epoch" in estimate_line("x", 30.0, 300, 600, "--steps 600")
    assert "h for" in estimate_line("x", 30.0, 300, 600, "--steps 600")


def test_the_budget_is_epochs_or_steps():
    assert TrainConfig().steps == DEFAULT_STEPS and TrainConfig().epochs is None
    assert TrainConfig(epochs=3).steps is None
    with pytest.raises(ValueError, match="not both"):
        TrainConfig(epochs=3, steps=10)
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)
    assert run_plan(TrainConfig(epochs=3), 7) == (3, 21)
    assert run_plan(TrainConfig(steps=15), 7) == (3, 15)  # two whole epochs and one of a single step
    assert run_plan(TrainConfig(steps=14), 7) == (2, 14)
    assert iters_per_epoch(TrainConfig(batch_size=4), 10) == 2 and iters_per_epoch(TrainConfig(batch_size=4), 3) == 1


def test_default_warm_up_scales_with_the_run_and_an_explicit_one_must_fit():
    assert warmup_steps(TrainConfig(steps=1500), 39) == 5 * 39  # 5 epochs of a long run
    assert warmup_steps(TrainConfig(steps=60), 39) == 10  # a sixth of a short one
    assert warmup_steps(TrainConfig(epochs=2, warmup_epochs=1), 5) == 5
    f = [lr_factor(s, TrainConfig(steps=60), 39) for s in range(60)]
    assert f[9] == pytest.approx(1.0) and f[-1] < 0.01  # the cosine ends with the budget, not an epoch count
    assert warmup_problem(TrainConfig(epochs=2, warmup_epochs=1), 5) is None
    problem = warmup_problem(TrainConfig(epochs=2, warmup_epochs=2), 5)
    assert "not shorter than the run (--epochs 2: 10 steps)" in problem


def _fit(tmp_path: Path, cfg: TrainConfig, n: int = 10, progress: bool = False):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    data = TensorDataset(torch.randn(n, 3), torch.randint(0, 2, (n,)))

    def step(batch):
        x, y = batch
        z = model(x)
        loss = F.cross_entropy(z, y)
        loss.backward()
        return StepOut({"ce": loss.detach()}, z.detach(), y)

    files = RunFiles(state=tmp_path / "last.pt", state_format=CLASSIFIER_STATE, csv=tmp_path / "m.csv",
                     plot=tmp_path / "p.png", plot_fn=lambda path, rows: None, line=lambda r: f"epoch {r['epoch']}",
                     row=lambda r, ev: r)
    return fit(step, {"model": model}, list(model.parameters()), data, None, cfg, files, eval_model=model,
               num_classes=2, progress=progress)


def test_a_budget_of_steps_cuts_the_last_epoch_short(tmp_path: Path):
    hist, _, finished = _fit(tmp_path, TrainConfig(steps=5, batch_size=4, plot_every=0))  # 2 steps per epoch
    assert finished and hist.steps == 5 and len(hist.rows) == 3
    hist, _, _ = _fit(tmp_path / "e", TrainConfig(epochs=2, batch_size=4, plot_every=0))
    assert hist.steps == 4 and len(hist.rows) == 2
    with pytest.raises(BadInput, match="never reach"):
        _fit(tmp_path / "w", TrainConfig(epochs=2, warmup_epochs=2, batch_size=4, plot_every=0))


def test_progress_off_a_terminal_is_a_few_plain_lines(tmp_path: Path, capsys):
    _fit(tmp_path, TrainConfig(steps=40, batch_size=2, plot_every=0), n=8, progress=True)  # stderr: not a TTY
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.strip().splitlines()
    assert len(lines) == PLAIN_REPORTS and lines[-1].startswith("train: step 40/40 (100%)"), err
