"""`pipeline extract` end to end: real MediaPipe on short cuts of real clips, and every kind of bad file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from models.contract.errors import BadInput
from pipeline.extract.driver import ExtractOptions, extract
from tests.support.video_files import cut, read_frames, stick_figure_frames, truncate, write_video


def run_pipeline(*args: str | Path) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "pipeline"
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "pipeline"]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, env=env, timeout=300)


def summary_lines(proc: subprocess.CompletedProcess) -> dict[str, int]:
    counts = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] in ("done", "skipped", "failed"):
            counts[parts[0]] = int(parts[1])
    return counts


@pytest.fixture
def mixed_folder(shared_data: Path, tmp_path: Path) -> Path:
    d = tmp_path / "videos"
    (d / "sub").mkdir(parents=True)
    good = cut(shared_data / "videos" / "tai_chi.mp4", d / "good.mp4", 9)
    truncate(good, d / "corrupt.mp4", 0.5)                   # mp4 cut in half: its index (moov) is gone
    (d / "empty.mp4").write_bytes(b"")
    (d / "text.mp4").write_text("this is not a video\n")
    write_video(d / "single.mp4", read_frames(good, 1))
    write_video(d / "sub" / "stick.mp4", stick_figure_frames(8))  # a drawing: no person
    truncate(write_video(tmp_path / "long.avi", read_frames(shared_data / "videos" / "tai_chi.mp4", 20),
                         fourcc="MJPG"), d / "truncated.avi", 0.5)  # opens, then ends early
    (d / "notes.txt").write_text("not a video extension: ignored")
    return d


def test_folder_with_good_and_bad_files(mixed_folder: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    proc = run_pipeline("extract", mixed_folder, "--quality", "low", "--estimator", "mediapipe", "--cache",
                        cache, "--no-progress")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert summary_lines(proc) == {"done": 1, "skipped": 0, "failed": 6}
    reasons = {Path(line.strip().split(":")[0]).name: line for line in proc.stdout.splitlines()
               if line.startswith("  ")}
    assert "not a readable video" in reasons["corrupt.mp4"]
    assert "empty file" in reasons["empty.mp4"]
    assert "not a readable video" in reasons["text.mp4"]
    assert "only 1 frame" in reasons["single.mp4"]
    assert "no person found in 8 frames" in reasons["stick.mp4"]
    assert "truncated or corrupt: decoded" in reasons["truncated.avi"]
    assert proc.stderr.strip().splitlines()[-1] == "Error: 6 of 7 videos failed (listed above)"
    files = [p for p in cache.rglob("*") if p.is_file() and p.suffix != ".lock"]
    assert len(files) == 1 and files[0].suffix == ".npz"  # one entry, no partial or temp file
    # A re-run serves the good video from the cache and reports the bad ones again.
    again = run_pipeline("extract", mixed_folder, "--quality", "low", "--estimator", "mediapipe", "--cache",
                         cache, "--no-progress")
    assert again.returncode == 2 and summary_lines(again) == {"done": 0, "skipped": 1, "failed": 6}


def test_high_and_low_then_dataset_build(shared_data: Path, tmp_path: Path):
    vids = tmp_path / "v"
    vids.mkdir()
    cut(shared_data / "videos" / "tai_chi.mp4", vids / "a.mp4", 6)
    cut(shared_data / "videos" / "skateboarding.mp4", vids / "b.mp4", 6, start=110)  # BlazePose misses him in 100-105
    cache = tmp_path / "cache"
    for q in ("high", "low"):
        proc = run_pipeline("extract", vids, "--quality", q, "--estimator", "mediapipe", "--cache",
                            cache)  # progress bar on
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert summary_lines(proc) == {"done": 2, "skipped": 0, "failed": 0}
        assert "frame/s" in proc.stderr  # the progress bar reports frames per second
    labels = tmp_path / "labels.csv"
    labels.write_text("video,label,split\nv/a.mp4,tai_chi,train\nv/b.mp4,skate,test\n")
    proc = run_pipeline("dataset", "build", "--cache", cache, "--labels", labels, "--out-hq", tmp_path / "hq.pkl",
                        "--out-lq", tmp_path / "lq.pkl", "--layout", "coco17", "--estimator", "mediapipe")
    assert proc.returncode == 0, proc.stderr
    from pipeline.data.pyskl_io import load_dataset, safe_load

    hq, lq = load_dataset(tmp_path / "hq.pkl"), load_dataset(tmp_path / "lq.pkl")
    assert [c.frame_dir for c in hq.clips] == [c.frame_dir for c in lq.clips] == ["a", "b"]
    assert [c.total_frames for c in hq.clips] == [c.total_frames for c in lq.clips] == [6, 6]
    assert hq.layout.name == "coco17" and hq.classes == ["skate", "tai_chi"] and hq.split["test"] == ["b"]
    raw = safe_load(tmp_path / "hq.pkl")
    assert raw["annotations"][0]["keypoint"].shape[1:] == (6, 17, 2)


def test_workers_process_pool(shared_data: Path, tmp_path: Path):
    vids = tmp_path / "v"
    vids.mkdir()
    cut(shared_data / "videos" / "tai_chi.mp4", vids / "a.mp4", 5)
    cut(shared_data / "videos" / "basketball.mp4", vids / "b.mp4", 5)
    (vids / "bad.mp4").write_text("nope")
    s = extract([vids, tmp_path / "missing.mp4"], ExtractOptions(quality="low", estimator="mediapipe",
                                                                 cache_dir=tmp_path / "c",
                                                                 workers=2), show_progress=False)
    assert sorted(o.status for o in s.outcomes) == ["done", "done", "failed", "failed"]
    assert any("file not found" in o.reason for o in s.by("failed"))
    assert len(list((tmp_path / "c").rglob("*.npz"))) == 2


def test_bad_options(tmp_path: Path):
    with pytest.raises(BadInput):
        ExtractOptions(quality="medium")
    with pytest.raises(BadInput):
        ExtractOptions(workers=0)
    with pytest.raises(BadInput, match="no videos found"):
        (tmp_path / "empty_dir").mkdir()
        extract([tmp_path / "empty_dir"], ExtractOptions(cache_dir=tmp_path / "c"), show_progress=False)
    proc = run_pipeline("extract", tmp_path, "--quality", "high", "--estimator", "mmpose")
    assert proc.returncode == 2 and "needs --mmpose-checkpoint" in proc.stderr
