"""The `blazepose` estimator's tiers (heavy for high, lite for low), `--pose-model`, and `pipeline run`'s fallback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from estimators import DEFAULT, ESTIMATORS
from estimators.blazepose import BlazePoseConfig
from estimators.mediapipe_pose import MediaPipeConfig, MediaPipePose
from models.contract.errors import BadInput
from pipeline.extract.driver import ExtractOptions, make_estimator
from pipeline.infer.pose_choice import fast_estimator
from pipeline.infer.prediction import RunOptions
from pipeline.infer.runner import run_videos
from tests.support.cli_support import invoke, one_error_line, run_pipeline, visible_lines
from tests.support.model_files import openpose_models_dir
from tests.support.run_files import tiny_checkpoint
from tests.support.video_files import stick_figure_frames, write_video


@pytest.fixture
def no_blazepose(tmp_path: Path, monkeypatch) -> Path:
    """lite/heavy looked for in an empty folder: a fresh install as far as the checks are concerned."""
    folder = tmp_path / "bp"
    monkeypatch.setenv("SKD_BLAZEPOSE_DIR", str(folder))
    return folder


def test_tiers_are_heavy_detection_and_lite_tracking():
    assert DEFAULT == "blazepose" and ESTIMATORS[DEFAULT] is BlazePoseConfig
    high, low = BlazePoseConfig.tier("high"), BlazePoseConfig.tier("low")
    assert (high.model, high.model_complexity, high.static_image_mode, high.stride) == ("heavy", 2, True, 1)
    assert (low.model, low.model_complexity, low.static_image_mode, low.stride, low.max_side) == \
        ("lite", 0, False, 4, 1280)
    full = BlazePoseConfig.tier("low", model="full", max_persons=2)
    assert (full.model_complexity, full.stride, full.max_persons) == (1, 4, 2)
    with pytest.raises(BadInput, match="unknown BlazePose model 'huge' \\(lite, full, heavy\\)"):
        BlazePoseConfig.tier("high", model="huge")
    # the other BlazePose name keeps the wheel's full model in both tiers
    assert MediaPipeConfig.tier("high").model == MediaPipeConfig.tier("low").model == "full"


def test_extract_options_reach_the_model():
    assert make_estimator(ExtractOptions(quality="high")).cfg.model == "heavy"
    assert make_estimator(ExtractOptions(quality="low")).cfg.model == "lite"
    est = make_estimator(ExtractOptions(quality="high", options={"model": "full"}, stride=2))
    assert isinstance(est, MediaPipePose) and (est.cfg.model_complexity, est.cfg.stride) == (1, 2)
    assert est.name == "blazepose" and est.model == "BlazePose full"
    with pytest.raises(BadInput, match="unknown BlazePose model 'huge' \\(lite, full, heavy\\)"):
        make_estimator(ExtractOptions(options={"model": "huge"}))
    for name in ("mediapipe", "openpose-lite"):
        with pytest.raises(BadInput, match=f"'model' is not an option of --estimator {name}"):
            make_estimator(ExtractOptions(estimator=name, options={"model": "lite"}))


def test_settings_hold_the_weights_sha256():
    """The cache key tells the models apart (full is always there; heavy when installed)."""
    full = make_estimator(ExtractOptions(quality="high", options={"model": "full"})).settings()
    assert full["model"] == "full" and len(full["weights_sha256"]) == 64


def test_fast_estimator_falls_back_to_full_with_a_note(no_blazepose: Path):
    est, note = fast_estimator()
    assert est.cfg.model == "full" and est.cfg.stride == 4 and not est.cfg.static_image_mode
    assert est.name == "blazepose"
    assert "blazepose-lite" in note and "pipeline models install" in note and "Using BlazePose full" in note
    for model in ("lite", "heavy"):  # asked for explicitly: refused, never swapped
        with pytest.raises(BadInput, match=f"blazepose-{model}: .*pipeline models install"):
            fast_estimator(options={"model": model})
    assert fast_estimator(options={"model": "full"})[1] is None
    with pytest.raises(BadInput, match="'model' is not an option of --estimator openpose-lite"):
        fast_estimator("openpose-lite", {"model": "lite"})
    with pytest.raises(BadInput, match="--estimator mmpose needs --mmpose-checkpoint"):
        invoke("run", "x.mp4", "--estimator", "mmpose")
    with pytest.raises(BadInput, match="--pose-model is an option of --estimator blazepose, not openpose-lite"):
        invoke("run", "x.mp4", "--estimator", "openpose-lite", "--pose-model", "lite")


def test_extract_without_heavy_is_one_line_naming_the_install(no_blazepose: Path, tmp_path: Path,
                                                               shared_data: Path):
    video = shared_data / "videos" / "mmpose_demo_5frames.mp4"
    line = one_error_line(run_pipeline("extract", video, "--quality", "high", "--cache", tmp_path / "c"))
    assert line.startswith("Error: blazepose-heavy: ") and "pipeline models install" in line
    proc = run_pipeline("extract", video, "--quality", "low", "--estimator", "openpose-lite", "--pose-model", "lite",
                        "--cache", tmp_path / "c")
    assert "--pose-model is an option of --estimator blazepose, not openpose-lite" in one_error_line(proc)


def test_run_on_a_fresh_install_says_so_once(no_blazepose: Path, shared_data: Path):
    videos = shared_data / "videos"
    proc = run_pipeline("run", videos / "mmpose_demo_5frames.mp4", videos / "tai_chi.mp4", "--json",
                        "--no-progress", timeout=600)
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in visible_lines(proc.stderr) if "Using BlazePose full" in line]
    assert len(notes) == 1 and "blazepose-lite" in notes[0], proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(records) == 2 and all(r["labels"] for r in records)
    line = one_error_line(run_pipeline("run", videos / "mmpose_demo_5frames.mp4", "--pose-model", "lite"))
    assert line.startswith("Error: blazepose-lite: ")


def test_run_with_openpose_lite_end_to_end(tmp_path: Path, shared_data: Path, monkeypatch):
    monkeypatch.setenv("SKD_MODELS_DIR", str(tmp_path / "models"))  # restored after the test
    openpose_models_dir(tmp_path / "models")
    proc = run_pipeline("run", shared_data / "videos" / "tai_chi.mp4", "--estimator", "openpose-lite", "--json",
                        "--no-progress", timeout=600)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)
    assert rec["frames"] > 0 and rec["persons"] >= 1 and len(rec["labels"]) == 5
    assert "Using BlazePose" not in proc.stderr


def test_a_run_that_fails_says_one_line_even_after_a_fallback(no_blazepose: Path, tmp_path: Path):
    """The fallback note comes with the first result: a failed clip's error stays the only line (the CLI
    contract), as on a fresh clone where lite is not installed."""
    video = write_video(tmp_path / "nobody.mp4", stick_figure_frames(12))  # drawn lines: no person to BlazePose
    ckpt = tiny_checkpoint(tmp_path / "m.pt", layout="blazepose33")
    line = one_error_line(run_pipeline("run", video, "--model", ckpt, "--no-progress"))
    assert "no person found" in line and "note" not in line
    notes: list[str] = []
    done, failed = run_videos([video], RunOptions(model=ckpt, progress=False, threads=1), note=notes.append)
    assert not done and len(failed) == 1 and notes == []
