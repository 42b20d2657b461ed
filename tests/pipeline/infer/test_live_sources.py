"""What `pipeline live SOURCE` takes: a camera index, a network stream URL, or a local file (path or file:// URL)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from models.contract.errors import BadInput
from pipeline.infer.live import MAX_CAMERA_INDEX, SourceSpec, open_source, parse_source


@pytest.mark.parametrize("source, spec", [
    ("0", SourceSpec("camera", index=0)),
    (str(MAX_CAMERA_INDEX), SourceSpec("camera", index=MAX_CAMERA_INDEX)),
    ("rtsp://cam.local/stream", SourceSpec("stream", url="rtsp://cam.local/stream")),
    ("HTTP://x/y.m3u8", SourceSpec("stream", url="HTTP://x/y.m3u8")),
    ("file:///tmp/a%20b.mp4", SourceSpec("file", path="/tmp/a b.mp4")),
    ("file://localhost/tmp/v.mp4", SourceSpec("file", path="/tmp/v.mp4")),
    ("clip.mp4", SourceSpec("file", path="clip.mp4")),
    ("²", SourceSpec("file", path="²")),  # str.isdigit() is true; not a camera index
])
def test_sources_are_classified(source: str, spec: SourceSpec):
    assert parse_source(source) == spec


@pytest.mark.parametrize("source, reason", [
    ("12345678901234567890", "camera index 12345678901234567890 is out of range"),
    (str(MAX_CAMERA_INDEX + 1), "is out of range"),
    ("file://otherhost/v.mp4", "must name a local file"),
    ("concat:a.mp4|b.mp4://x", "unsupported stream protocol"),
    ("pipe://0", "unsupported stream protocol 'pipe'"),
    ("crypto+file:///etc/passwd", "unsupported stream protocol"),
])
def test_what_is_none_of_them_is_refused(source: str, reason: str):
    with pytest.raises(BadInput, match=reason):
        parse_source(source)


def test_a_file_url_gets_the_checks_a_file_gets(tmp_path: Path):
    os.mkfifo(tmp_path / "pipe.mp4")
    with pytest.raises(BadInput, match="is a named pipe"):  # FFmpeg would have blocked on it
        open_source(f"file://{tmp_path}/pipe.mp4")
    with pytest.raises(BadInput, match="file not found"):
        open_source("²")
