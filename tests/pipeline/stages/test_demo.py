"""Procedural actions (pipeline/data/synthetic.py) and `pipeline demo` on a tiny configuration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.contract.layouts import PENN13
from pipeline.data.synthetic import ACTIONS, Pose, make_clip, make_dataset, render
from pipeline.stages.demo import DEMO_ACTIONS, DemoConfig, run_demo


def test_rest_pose_is_a_standing_person():
    j = render(Pose())
    idx = {n: i for i, n in enumerate(PENN13.joints)}
    assert j[idx["head"], 1] < j[idx["left_shoulder"], 1] < j[idx["left_hip"], 1] < j[idx["left_knee"], 1] \
        < j[idx["left_ankle"], 1]  # image y grows downwards
    assert j[idx["left_shoulder"], 0] > j[idx["right_shoulder"], 0]  # facing the camera: left is image-right


def test_dataset_shapes_splits_and_determinism():
    a = make_dataset(clips_per_class=5, test_fraction=0.4, seed=7)
    b = make_dataset(clips_per_class=5, test_fraction=0.4, seed=7)
    assert len(a.clips) == 5 * len(ACTIONS) and a.layout == PENN13
    assert len(a.split["test"]) == 2 * len(ACTIONS) and len(a.split["train"]) == 3 * len(ACTIONS)
    for c, d in zip(a.clips, b.clips):
        assert c.keypoint.shape == (1, c.total_frames, 13, 2) and 40 <= c.total_frames < 90
        assert np.isfinite(c.keypoint).all() and np.array_equal(c.keypoint, d.keypoint)


def test_actions_move_different_joints():
    rng = np.random.default_rng(0)
    # Which joint moves most (after removing the drift of the whole body) tells the actions apart.
    profiles = []
    for a in range(len(ACTIONS)):
        k = make_clip(a, rng).keypoint[0]
        k = k - k.mean(axis=1, keepdims=True)
        profiles.append(k.std(axis=0).sum(-1))
    profiles = np.array(profiles)
    corr = np.corrcoef(profiles)
    off_diag = corr[~np.eye(len(ACTIONS), dtype=bool)]
    assert off_diag.max() < 0.995  # no two actions move the body the same way


def test_demo_runs_and_reports(tmp_path: Path):
    lines: list[str] = []
    cfg = DemoConfig(clips_per_class=4, epochs=1, teacher_epochs=1, depth=1, length=8, width=0.1, student_width=0.1)
    s = run_demo(tmp_path, cfg, progress=False, echo=lines.append)
    assert set(s["students"]) == {"none", "skd"}
    assert (tmp_path / "demo.png").stat().st_size > 0
    assert json.loads((tmp_path / "demo.json").read_text())["students"] == s["students"]
    assert any(line.startswith("teacher") and "HQ" in line for line in lines)
    # The table's columns never run together: the longest name still has spaces before its input column.
    skd_row = next(line for line in lines if line.startswith("student, SKD"))
    assert "(graph matching + GR)  LQ" in skd_row
    assert any(line.startswith("student, labels only ") for line in lines)
    assert "wave_right" not in json.loads((tmp_path / "none" / "metrics.json").read_text())["classes"]
    assert len(DEMO_ACTIONS) == len(ACTIONS) - 1
