"""The training stage's choices for the user: the budget (steps unless --epochs), a warm-up that fits the run,
ground truth's constant score channel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.checkpoint import load_checkpoint
from models.contract.errors import BadInput
from models.training.policy import DEFAULT_STEPS
from pipeline.data.pyskl_io import save_dataset
from pipeline.stages.training import request_from_options
from tests.conftest import make_dataset
from tests.support.cli_support import run_pipeline

SMALL = ["--epochs", "1", "--width", "0.125", "--depth", "2", "--length", "8", "--batch-size", "4", "--quiet"]


def test_budget_is_steps_unless_epochs_and_the_warm_up_must_fit(tmp_path: Path):
    req, _ = request_from_options({})
    assert (req.train.steps, req.train.epochs, req.train.warmup_epochs) == (DEFAULT_STEPS, None, None)
    req, explicit = request_from_options({"epochs": 10, "warmup": 3})
    assert (req.train.epochs, req.train.steps, req.train.warmup_epochs) == (10, None, 3)
    assert "epochs" in explicit and "steps" not in explicit
    with pytest.raises(BadInput, match="not both"):
        request_from_options({"epochs": 2, "steps": 5})
    data = tmp_path / "d.pkl"
    save_dataset(make_dataset(n_per_class=4, num_classes=2), data)  # 4 train clips: 1 step per epoch at batch 4
    proc = run_pipeline("train", "--data", data, "--out", tmp_path / "run", *SMALL, "--warmup", "5")
    assert proc.returncode == 2 and "--warmup 5 epochs (5 steps) is not shorter than the run" in proc.stderr
    assert not (tmp_path / "run").exists()  # refused before anything is written
    proc = run_pipeline("train", "--data", data, "--out", tmp_path / "s", *SMALL[2:], "--steps", "3")
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "s" / "metrics.json").read_text())
    assert m["steps"] == 3 and m["epochs"] == 3


def test_ground_truth_trains_without_the_score_channel_and_says_so(tmp_path: Path):
    data = tmp_path / "gt.pkl"
    save_dataset(make_dataset(n_per_class=3, num_classes=2), data)  # every score 1.0, as annotations have
    proc = run_pipeline("train", "--data", data, "--out", tmp_path / "run", *SMALL)
    assert proc.returncode == 0, proc.stderr
    assert "note: every keypoint score in the training split is 1.0" in proc.stderr
    _, meta = load_checkpoint(tmp_path / "run" / "model.pt")
    assert meta["input_config"].use_score is False
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["input_config"]["use_score"] is False
    # Resuming the finished run says it only re-evaluates.
    proc = run_pipeline("train", "--data", data, "--out", tmp_path / "run", "--resume", "--quiet")
    assert proc.returncode == 0 and "already finished its 1 steps" in proc.stderr


def test_config_file_sets_the_issue23_input_levers(tmp_path) -> None:
    cfg = tmp_path / "levers.toml"
    for name in ("window", "window_framing", "window_framing_torso"):  # the ablation's own files parse
        request_from_options({}, Path(__file__).parents[3] / "bench" / "recipe23" / f"{name}.toml")
    cfg.write_text('norm = "torso"\naug_window = 0.5\naug_idle = 0.25\naug_crop = 0.5\naug_shear = 0.2\n')
    req, explicit = request_from_options({"epochs": 2}, cfg)
    i = req.input
    assert (i.norm, i.aug_window, i.aug_idle, i.aug_crop, i.aug_shear) == ("torso", 0.5, 0.25, 0.5, 0.2)
    assert {"norm", "aug_window", "aug_crop"} <= explicit
    cfg.write_text('norm = "hips"\n')
    with pytest.raises(BadInput, match="norm"):
        request_from_options({}, cfg)
