"""The loop's estimate of a run's length, said after the first steps."""

from __future__ import annotations

from models.training.fit import LONG_RUN_S, estimate_line


def test_estimate_line_counts_the_epochs_left_and_hints_only_for_long_runs():
    line = estimate_line("student (skd)", step_s=0.5, iters=20, epochs_left=3, hint="fewer --epochs")
    assert line == ("student (skd): ~0.50 s/step on this machine: ~10 s per epoch, ~30 s for the 3 epoch(s) left")
    long = estimate_line("train", step_s=2.0, iters=100, epochs_left=10, hint="fewer --epochs")
    assert 2.0 * 100 * 10 > LONG_RUN_S
    assert long.endswith("~33 min for the 10 epoch(s) left; for a quicker run: fewer --epochs")
    assert "per epoch" in estimate_line("x", 30.0, 300, 2) and "h for" in estimate_line("x", 30.0, 300, 2)
