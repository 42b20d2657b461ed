"""bench/real_videos/materialise.py: the real-video set rebuilt from git mirrors (copies, re-encoded cuts, refusals)."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("materialise", ROOT / "bench" / "real_videos" / "materialise.py")
materialise = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(materialise)


def _video(path: Path, frames: int, fps: float = 10.0) -> bytes:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 48))
    for i in range(frames):
        w.write(np.full((48, 64, 3), i * 5 % 255, np.uint8))
    w.release()
    return path.read_bytes()


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def mirror(tmp_path: Path) -> tuple[Path, str, dict[str, bytes]]:
    """A mirror root holding owner+name/repo, a git repository with two videos committed."""
    repo = tmp_path / "mirrors" / "owner+name" / "repo"
    repo.mkdir(parents=True)
    _git("init", "-q", cwd=repo)
    data = {"a.mp4": _video(repo / "a.mp4", 30), "b.mp4": _video(repo / "b.mp4", 40)}
    _git("add", ".", cwd=repo)
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "clips", cwd=repo)
    return tmp_path / "mirrors", _git("rev-parse", "HEAD", cwd=repo), data


def _entry(file: str, path: str, commit: str, source: bytes, split: str, **kw) -> dict:
    sha = hashlib.sha256(source).hexdigest()
    return {"file": file, "label": kw.get("label", "squat"), "repo": "owner/name", "path": path, "commit": commit,
            "sha256": kw.get("sha256", sha), "source_sha256": kw.get("source_sha256", sha),
            "encode": kw.get("encode", "copy"), "cut": kw.get("cut"), "split": split}


def _run(tmp_path: Path, mirrors: Path, clips: list[dict], *extra: str) -> tuple[int, Path]:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"clips": clips}))
    out = tmp_path / "out"
    rc = materialise.main([str(out), "--mirror-root", str(mirrors), "--shared", str(tmp_path / "none"),
                           "--manifest", str(manifest), *extra])
    return rc, out


def test_copies_and_writes_the_label_files(tmp_path, mirror):
    mirrors, commit, data = mirror
    clips = [_entry("squat__a.mp4", "a.mp4", commit, data["a.mp4"], "dev"),
             _entry("other__b.mp4", "b.mp4", commit, data["b.mp4"], "val", label="other"),
             _entry("u__a.mp4", "a.mp4", commit, data["a.mp4"], "unlabeled", label="unlabeled")]
    rc, out = _run(tmp_path, mirrors, clips)
    assert rc == 0
    assert (out / "squat__a.mp4").read_bytes() == data["a.mp4"]
    rows = list(csv.reader((out / "labels.csv").open()))
    assert rows == [["video", "label", "split"], ["squat__a.mp4", "squat", "dev"], ["other__b.mp4", "other", "val"]]
    assert list(csv.reader((out / "unlabeled.csv").open()))[1] == ["u__a.mp4", "unlabeled", "unlabeled"]


def test_a_source_with_another_sha256_is_refused(tmp_path, mirror, capsys):
    mirrors, commit, data = mirror
    clips = [_entry("squat__a.mp4", "a.mp4", commit, data["a.mp4"], "dev", source_sha256="0" * 64)]
    rc, out = _run(tmp_path, mirrors, clips)
    assert rc == 1
    assert not (out / "squat__a.mp4").exists()
    assert "different sha256" in capsys.readouterr().err


def test_a_missing_mirror_names_the_fetch(tmp_path, mirror, capsys):
    _, commit, data = mirror
    rc, _ = _run(tmp_path, tmp_path / "empty", [_entry("s.mp4", "a.mp4", commit, data["a.mp4"], "dev")])
    assert rc == 1
    assert "fetch github:owner/name" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (Debian: apt-get install ffmpeg)")
def test_a_cut_is_re_encoded_to_its_span(tmp_path, mirror, capsys):
    mirrors, commit, data = mirror
    # 40 frames at 10 fps; keep [1, 3) s. The manifest's sha256 is of another build's bytes: kept with a note.
    clips = [_entry("squat__b.mp4", "b.mp4", commit, data["b.mp4"], "dev", encode="h264", cut=[1.0, 3.0],
                    sha256="f" * 64)]
    rc, out = _run(tmp_path, mirrors, clips)
    assert rc == 0
    cap = cv2.VideoCapture(str(out / "squat__b.mp4"))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    assert 18 <= n <= 22
    assert "re-encoded with a different sha256" in capsys.readouterr().out
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp file left behind
    rc, _ = _run(tmp_path, mirrors, clips, "--strict")
    assert rc == 1
