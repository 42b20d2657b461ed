"""`pipeline run` as a user calls it (the console script): output formats, several clips, every bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.contract.layouts import Layout
from models.openset import ENERGY
from pipeline.infer.prediction import RunOptions
from pipeline.infer.runner import run_videos
from tests.support.cli_support import without_fallback_note
from tests.support.run_files import CLASSES, tiny_checkpoint, with_rule
from tests.support.video_files import cut, stick_figure_frames, truncate, write_video


def run_pipeline(*args: str | Path) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "pipeline"
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "pipeline"]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env.pop("SKD_VERBOSE", None)
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, env=env, timeout=300)


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    lines = [line.rsplit("\r", 1)[-1].strip() for line in proc.stderr.split("\n")]
    return without_fallback_note([line for line in lines if line])


def assert_bad_input(proc: subprocess.CompletedProcess, path: Path | str, reason: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = error_lines(proc)
    assert len(lines) == 1, proc.stderr  # nothing but the error: no traceback, no native-library chatter
    assert lines[0].startswith(f"Error: {path}: ") and reason in lines[0], lines[0]
    assert proc.stdout == ""


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture
def five(shared_data: Path) -> Path:
    return shared_data / "videos" / "mmpose_demo_5frames.mp4"


def test_json_one_object_per_clip(five: Path, shared_data: Path, ckpt: Path, tmp_path: Path):
    second = cut(shared_data / "videos" / "basketball.mp4", tmp_path / "basket.mp4", 12)
    proc = run_pipeline("run", five, second, "--model", ckpt, "--json", "--topk", "2")
    assert proc.returncode == 0, proc.stderr
    assert error_lines(proc) == [], proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2
    for line, video, frames in zip(lines, (five, second), (5, 12)):
        r = json.loads(line)
        assert set(r) == {"video", "frames", "persons", "labels", "seconds"}
        assert r["video"] == str(video) and r["frames"] == frames and r["persons"] == 1
        assert len(r["labels"]) == 2 and all(set(x) == {"label", "score"} for x in r["labels"])
        assert all(x["label"] in CLASSES and 0 <= x["score"] <= 1 for x in r["labels"])
        assert set(r["seconds"]) == {"pose", "model", "total"}


def test_text_output_and_render(five: Path, ckpt: Path, tmp_path: Path):
    out = tmp_path / "r.mp4"
    proc = run_pipeline("run", five, "--model", ckpt, "--topk", "3", "--render", out, "--window", "0.1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"{five}: 5 frames") and "1 person(s)" in lines[0]
    assert len([ln for ln in lines if ln.startswith("  0.")]) == 3  # top-3 "  score  label" lines
    assert "windows:" in proc.stdout
    assert out.is_file() and out.stat().st_size > 0


def test_several_clips_go_on_past_a_bad_one(five: Path, ckpt: Path, tmp_path: Path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("hello")
    proc = run_pipeline("run", bad, five, "--model", ckpt, "--json")
    assert proc.returncode == 2
    assert [json.loads(line)["video"] for line in proc.stdout.splitlines()] == [str(five)]
    assert error_lines(proc) == [f"Error: {bad}: not a readable video (OpenCV/FFmpeg cannot open it: corrupt, "
                                 f"truncated or not a video)", "Error: 1 of 2 clips failed (listed above)"]


@pytest.mark.parametrize("kind", ["missing", "text", "truncated", "folder"])
def test_bad_files(kind: str, shared_data: Path, ckpt: Path, tmp_path: Path):
    path = tmp_path / f"{kind}.mp4"
    reason = {"missing": "file not found", "text": "not a readable video",
              "truncated": "not a readable video", "folder": "no videos found in"}[kind]
    if kind == "text":
        path.write_text("this is not a video\n")
    elif kind == "truncated":
        truncate(cut(shared_data / "videos" / "tai_chi.mp4", tmp_path / "good.mp4", 9), path, 0.5)
    elif kind == "folder":
        path.mkdir()
    proc = run_pipeline("run", path, "--model", ckpt)
    if kind == "folder":  # a folder is searched for videos; this one holds none
        assert proc.returncode == 2 and error_lines(proc) == [f"Error: no videos found in {path}"]
    else:
        assert_bad_input(proc, path, reason)


def test_no_person(ckpt: Path, tmp_path: Path):
    video = write_video(tmp_path / "stick.mp4", stick_figure_frames(8))  # a drawing, no person to MediaPipe
    out = tmp_path / "never.mp4"
    assert_bad_input(run_pipeline("run", video, "--model", ckpt, "--render", out), video,
                     "no person found in 8 frames")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stick.mp4"]


def test_models_the_estimator_cannot_feed(five: Path, tmp_path: Path):
    hand = Layout("hand5", ("thumb_tip", "index_tip", "middle_tip", "ring_tip", "wrist"),
                  ((0, 4), (1, 4), (2, 4), (3, 4)), 4)
    m = tiny_checkpoint(tmp_path / "hand.pt", layout=hand)
    assert_bad_input(run_pipeline("run", five, "--model", m), m,
                     "the model is for layout hand5: the fast estimator (blazepose33) supplies only 0 of its 5")
    m3 = tiny_checkpoint(tmp_path / "ntu3d.pt", layout="ntu25", coord_dims=3)
    assert_bad_input(run_pipeline("run", five, "--model", m3), m3, "takes 3D coordinates")


def test_model_and_onnx_together_is_a_usage_error(five: Path, ckpt: Path, tmp_path: Path):
    proc = run_pipeline("run", five, "--model", ckpt, "--onnx", tmp_path / "m.onnx")
    assert proc.returncode == 2 and error_lines(proc) == [
        "Error: give --model or --onnx, not both (an exported file carries the model's metadata)"]


def test_open_set_flags_clips_the_model_does_not_know(shared_data: Path, ckpt: Path, tmp_path: Path):
    video = cut(shared_data / "videos" / "tai_chi.mp4", tmp_path / "tai_chi.mp4", 40)
    strict = with_rule(ckpt, tmp_path / "strict.pt", threshold=-1.0)  # no distance is below: nothing is known
    lax = with_rule(ckpt, tmp_path / "lax.pt", threshold=1e12)        # every distance is below: all known
    proc = run_pipeline("run", video, "--model", strict)
    assert proc.returncode == 0, proc.stderr
    assert f"  not a known action; closest of the {len(CLASSES)} this model knows" in proc.stdout
    r = json.loads(run_pipeline("run", video, "--model", strict, "--json").stdout)
    assert r["open_set"]["known"] is False and r["open_set"]["distance"] > -1.0
    assert r["labels"][0]["label"] in CLASSES  # the scores are kept
    r = json.loads(run_pipeline("run", video, "--model", lax, "--json").stdout)
    assert r["open_set"]["known"] is True
    proc = run_pipeline("run", video, "--model", lax)
    assert "not a known action" not in proc.stdout and any(c in proc.stdout for c in CLASSES)


def test_an_energy_rule_reports_the_energy_as_the_distance(shared_data: Path, ckpt: Path, tmp_path: Path):
    """Same keys as a Mahalanobis rule; "distance" is the clip's median window energy, and the threshold on it
    decides the verdict."""
    video = cut(shared_data / "videos" / "tai_chi.mp4", tmp_path / "tai_chi.mp4", 40)
    probe = with_rule(ckpt, tmp_path / "probe.pt", threshold=0.0, kind=ENERGY)
    (run,), _ = run_videos([video], RunOptions(model=probe, progress=False, threads=1))
    e = float(np.median(run.result.distance))
    for shift, known in ((-0.5, False), (0.5, True)):
        model = with_rule(ckpt, tmp_path / f"e{shift}.pt", threshold=e + shift, kind=ENERGY)
        proc = run_pipeline("run", video, "--model", model, "--json")
        assert proc.returncode == 0, proc.stderr
        r = json.loads(proc.stdout)["open_set"]
        assert r == {"known": known, "threshold": round(e + shift, 2), "distance": round(e, 2)}


def test_a_glimpse_is_never_called_known(five: Path, ckpt: Path, tmp_path: Path):
    lax = with_rule(ckpt, tmp_path / "lax.pt", threshold=1e12)
    r = json.loads(run_pipeline("run", five, "--model", lax, "--json").stdout)
    assert r["open_set"]["known"] is False and r["open_set"]["reason"].startswith("too short")


def test_classes_lists_the_vocabulary(ckpt: Path):
    proc = run_pipeline("run", "--classes", "--model", ckpt)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1:] == [f"  {c}" for c in CLASSES]
    proc = run_pipeline("run")
    assert proc.returncode == 2 and "--classes" in proc.stderr
