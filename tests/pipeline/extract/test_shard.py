"""`pipeline extract --shard I/N`: a deterministic split of the sorted video list, shards sharing one cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.contract.errors import BadInput
from pipeline.extract.driver import ExtractOptions, extract
from pipeline.extract.shard import parse_shard, select_shard
from tests.support.video_files import cut


def test_parse_shard():
    assert parse_shard(None) is None
    assert parse_shard("0/1") == (0, 1)
    assert parse_shard(" 3 / 4 ") == (3, 4)
    for bad in ("4/4", "1/0", "-1/2", "1", "a/b", "1/2/3", ""):
        with pytest.raises(BadInput, match="--shard"):
            parse_shard(bad)


@given(st.lists(st.text(alphabet="abc/_.", min_size=1, max_size=6), max_size=30),
       st.integers(1, 7), st.randoms(use_true_random=False))
def test_shards_partition_the_list_whatever_its_order(names, n, rnd):
    videos = list(dict.fromkeys(Path(x) for x in names))  # distinct paths, as find_videos gives them
    shuffled = list(videos)
    rnd.shuffle(shuffled)
    shards = [select_shard(videos, (i, n)) for i in range(n)]
    assert shards == [select_shard(shuffled, (i, n)) for i in range(n)]  # the order given does not matter
    flat = [v for s in shards for v in s]
    assert sorted(flat, key=str) == sorted(videos, key=str) and len(flat) == len(set(flat))  # each exactly once
    assert max(map(len, shards)) - min(map(len, shards)) <= 1  # balanced
    assert select_shard(shuffled, None) == shuffled


@pytest.fixture
def three_clips(shared_data: Path, tmp_path: Path) -> Path:
    d = tmp_path / "v"
    d.mkdir()
    cut(shared_data / "videos" / "tai_chi.mp4", d / "b.mp4", 5)
    cut(shared_data / "videos" / "basketball.mp4", d / "a.mp4", 5)
    cut(shared_data / "videos" / "skateboarding.mp4", d / "c.mp4", 5)
    return d


def test_shards_fill_one_cache_like_a_whole_run(three_clips: Path, tmp_path: Path):
    opts = ExtractOptions(quality="low", estimator="mediapipe", cache_dir=tmp_path / "whole")
    whole = extract([three_clips], opts, show_progress=False)
    shared = ExtractOptions(quality="low", estimator="mediapipe", cache_dir=tmp_path / "shared")
    parts = [extract([three_clips], shared, show_progress=False, shard=(i, 2)) for i in range(2)]
    # Sorted a, b, c: shard 0 takes a and c, shard 1 takes b.
    assert [[Path(o.video).name for o in p.outcomes] for p in parts] == [["a.mp4", "c.mp4"], ["b.mp4"]]
    assert all(o.status == "done" for p in parts for o in p.outcomes)
    names = sorted(p.name for p in (tmp_path / "whole").rglob("*.npz"))
    assert len(names) == 3 and names == sorted(p.name for p in (tmp_path / "shared").rglob("*.npz"))
    assert len(whole.by("done")) == 3
    # A shard with no video (more shards than videos) is nothing to do, not an error.
    assert extract([three_clips], shared, show_progress=False, shard=(5, 6)).outcomes == []


def test_cli_shard(three_clips: Path, tmp_path: Path):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "pipeline", "extract", str(three_clips), "--quality", "low", "--estimator",
           "mediapipe",
           "--cache", str(tmp_path / "c"), "--no-progress"]
    bad = subprocess.run([*cmd, "--shard", "2/2"], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "Error: --shard '2/2': need N >= 1 and 0 <= I < N (shards are numbered 0 to N-1)"]
    ok = subprocess.run([*cmd, "--shard", "1/3"], capture_output=True, text=True, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.split()[:2] == ["done", "1"]
    assert [p.name.split("_")[0] for p in (tmp_path / "c").rglob("*.npz")] == [
        _hash(three_clips / "b.mp4")]


def _hash(path: Path) -> str:
    from pipeline.extract.cache import hash_file

    return hash_file(path)
