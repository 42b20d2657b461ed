"""Edit-listed MP4s (a phone's trim) play only part of their samples: that is not truncation, a cut file still is."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import cv2
import pytest

from models.contract.errors import BadInput
from pipeline.extract.mp4_edits import edited_seconds
from pipeline.extract.video import VideoReader
from tests.support.cli_support import one_error_line, run_pipeline
from tests.support.run_files import tiny_checkpoint
from tests.support.video_files import stick_figure_frames, truncate, write_video

FPS, SAMPLES, START_S = 30, 150, 3.5  # 150 samples, of which the edit plays the last 1.5 s: 45 frames
PLAYED = round((SAMPLES / FPS - START_S) * FPS)


def ffmpeg(*args: str | Path) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def trimmed(tmp_path_factory) -> dict[str, Path]:
    """The shape of the phone files that failed: H.264 with a long GOP, the index (moov) after the data, and one
    edit that starts deep into the media, so the track holds about 3x the samples it plays. Also a copy with the
    index first (`faststart`), which still opens when its data is cut short."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed: it is needed to write an MP4 with an edit list")
    d = tmp_path_factory.mktemp("editlist")
    full = d / "full.mp4"
    try:
        ffmpeg("-f", "lavfi", "-i", f"testsrc=size=160x120:rate={FPS}", "-frames:v", SAMPLES, "-c:v", "libx264",
               "-g", SAMPLES * 2, "-pix_fmt", "yuv420p", full)
    except subprocess.CalledProcessError as e:
        pytest.skip(f"this ffmpeg cannot encode H.264 (libx264): {e.stderr.strip()[-200:]}")
    # -ss before -i with stream copy keeps every sample from the keyframe on and writes an edit list that skips
    # to 3.5 s, as a phone's trim does
    ffmpeg("-ss", START_S, "-i", full, "-c", "copy", d / "trim.mp4")
    ffmpeg("-ss", START_S, "-i", full, "-c", "copy", "-movflags", "+faststart", d / "trim_faststart.mp4")
    return {"moov_last": d / "trim.mp4", "faststart": d / "trim_faststart.mp4"}


def sample_count(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()


@pytest.mark.parametrize("kind", ["moov_last", "faststart"])
def test_edit_list_plays_all_its_frames(trimmed: dict[str, Path], kind: str):
    path = trimmed[kind]
    assert sample_count(path) == SAMPLES  # OpenCV counts every sample: the old check saw 45 of 150
    assert edited_seconds(path) == pytest.approx(SAMPLES / FPS - START_S, abs=1e-3)
    with VideoReader(path) as reader:
        frames = [f for f in reader.frames() if f is not None]
    assert reader.decoded == len(frames) == PLAYED
    assert reader.reported_frames == PLAYED


def test_truncated_edit_listed_file_is_still_refused(trimmed: dict[str, Path], tmp_path: Path):
    cut = truncate(trimmed["faststart"], tmp_path / "cut.mp4", 0.95)  # the index survives, the last frames do not
    with pytest.raises(BadInput, match=r"truncated or corrupt: decoded \d+ of the 45 frames the file announces"):
        with VideoReader(cut) as reader:
            for _ in reader.frames(lambda t: False):
                pass
    assert reader.decoded < 0.9 * PLAYED
    # the index at the end, as phones write it: a cut file loses it and does not open at all
    with pytest.raises(BadInput, match="not a readable video"):
        VideoReader(truncate(trimmed["moov_last"], tmp_path / "cut_moov.mp4", 0.95))


def test_cli_refuses_the_truncated_copy_in_one_line(trimmed: dict[str, Path], tmp_path: Path):
    cut = truncate(trimmed["faststart"], tmp_path / "cut.mp4", 0.95)
    ckpt = tiny_checkpoint(tmp_path / "tiny.pt")
    line = one_error_line(run_pipeline("run", cut, "--model", ckpt))
    assert line.startswith(f"Error: {cut}: truncated or corrupt: decoded "), line


def test_files_without_an_edit_list(tmp_path: Path):
    avi = write_video(tmp_path / "a.avi", stick_figure_frames(4), fourcc="MJPG")
    assert edited_seconds(avi) is None  # not an MP4: OpenCV's frame count stands
    (tmp_path / "junk.mp4").write_bytes(b"\x00\x00\x00\x01moov" + b"\xff" * 40)  # 64-bit size past the end
    assert edited_seconds(tmp_path / "junk.mp4") is None


# --- issue 24: an edit list may not play more than its track holds (FFmpeg plays every edit, repeats included)

@pytest.mark.parametrize("entries, seconds_each, reason", [
    (100_000, 1.0, "its edit list has 100000 entries (at most 1000)"),
    (3, 100.0, "its edit list plays 300 s but the video track holds 1.6 s"),
    (2, 1.0, "its edit list plays 2 s but the video track holds 1.6 s"),
])
def test_edit_lists_that_replay_the_video_are_refused(tmp_path: Path, entries: int, seconds_each: float,
                                                      reason: str):
    from tests.support.mp4_boxes import with_edit_list

    src = write_video(tmp_path / "v.mp4", stick_figure_frames(40))  # 1.6 s at 25 fps
    bad = with_edit_list(src, tmp_path / "bad.mp4", entries, seconds_each)
    with pytest.raises(BadInput, match=re.escape(reason)) as e:
        VideoReader(bad)
    assert str(e.value).startswith(f"{bad}: ")


def test_an_edit_list_within_the_media_still_plays(tmp_path: Path):
    from tests.support.mp4_boxes import with_edit_list

    src = write_video(tmp_path / "v.mp4", stick_figure_frames(40))
    one = with_edit_list(src, tmp_path / "one.mp4", 1, 1.0)  # plays the first second: 25 of 40 frames
    assert edited_seconds(one) == pytest.approx(1.0)
    with VideoReader(one) as reader:
        n = sum(1 for _ in reader.frames(lambda t: False))
    assert n == reader.reported_frames == 25
