"""Interruption: runs killed with SIGKILL part-way resume to the same final result, and shared caches stay sound.

- `pipeline extract` on a folder of real clips, killed as soon as its first cache entry appears, then run again:
  the second run skips what the first finished and the final cache equals an uninterrupted run's, entry for entry
  and array for array; nothing the kill left behind (a temp file of an unfinished write) shows up as an entry.
- Two `pipeline extract` processes started together on the same folder and cache: every video is extracted
  exactly once (the other process waits on the entry's lock and then skips it) and the cache equals a single run's.
- `pipeline train` killed after its first epoch, then `--resume`d: the final weights, metrics.json and per-epoch
  metrics equal an uninterrupted run's.
Every path here has spaces and non-ASCII characters, so these tests also prove good input in such paths works.
"""

from __future__ import annotations

import csv
import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.data.pyskl_io import save_dataset
from pipeline.extract.cache import PoseCache
from tests.conftest import make_dataset
from tests.support.cli_support import LANDED, popen_pipeline, run_pipeline, visible_lines
from tests.support.video_files import cut

VIDEOS = "vidéos à traiter"


def kill_when(proc, ready, timeout: float = 240.0, poll: float = 0.02) -> None:
    """SIGKILL `proc` as soon as `ready()` holds; fail if it ends first or never gets there."""
    t0 = time.monotonic()
    while not ready():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended (exit {proc.returncode}) before it could be killed part-way:\n{out}\n{err}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            pytest.fail("the run never reached the point where it should be killed")
        time.sleep(poll)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def summary(stdout: str) -> dict[str, int]:
    counts = {}
    for line in visible_lines(stdout):
        parts = line.split()
        if parts and parts[0] in ("done", "skipped", "failed"):
            counts[parts[0]] = int(parts[1])
    return counts


def cache_contents(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray, dict]]:
    """Every entry of a cache, loaded (so every one must be a complete, readable file), keyed by its path."""
    cache = PoseCache(root)
    out = {}
    for entry in cache.all_entries():
        e = cache.load(entry)
        meta = {k: v for k, v in e.meta.items() if k != "timing"}  # wall-clock timings differ run to run
        out[entry.relative_to(root).as_posix()] = (e.result.keypoint, e.result.keypoint_score, meta)
    return out


def assert_same_cache(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name][0], b[name][0], err_msg=name)
        np.testing.assert_array_equal(a[name][1], b[name][1], err_msg=name)
        assert a[name][2] == b[name][2], name


@pytest.fixture
def videos(shared_data: Path, tmp_path: Path) -> Path:
    """Four short clips cut from different moments of real videos (distinct bytes, so four cache entries)."""
    folder = tmp_path / VIDEOS
    folder.mkdir()
    src = shared_data / "videos"
    for k, (name, start) in enumerate([("tai_chi", 0), ("tai_chi", 120), ("skateboarding", 100), ("basketball", 40)]):
        cut(src / f"{name}.mp4", folder / f"clip {k} ü.mp4", 20, start=start)
    return folder


EXTRACT = ("--quality", "high", "--estimator", "mediapipe", "--no-progress")  # full: in the wheel


def test_killed_extraction_resumes_to_the_same_cache(videos: Path, tmp_path: Path):
    ref_dir, run_dir = tmp_path / "cache référence", tmp_path / "cache interrompu"
    ref = popen_pipeline("extract", videos, "--cache", ref_dir, *EXTRACT)
    killed = popen_pipeline("extract", videos, "--cache", run_dir, *EXTRACT)
    kill_when(killed, lambda: len(PoseCache(run_dir).all_entries()) >= 1)
    ref_out, ref_err = ref.communicate(timeout=600)
    assert ref.returncode == 0, ref_err
    assert summary(ref_out) == {"done": 4, "skipped": 0, "failed": 0}
    # Right after the kill: only complete entries are visible (the one being written is at most a temp file).
    after_kill = cache_contents(run_dir)
    n = len(after_kill)
    assert 1 <= n < 4, f"the kill should land part-way, it found {n} entries"
    leftovers = [p for p in run_dir.rglob("*") if p.is_file() and p.suffix not in (".npz", ".lock")]
    assert all(p.name.startswith(".") and p.name.endswith(".tmp") for p in leftovers), leftovers
    # The next run resumes: it skips the finished videos and extracts the rest.
    again = run_pipeline("extract", videos, "--cache", run_dir, *EXTRACT)
    assert again.returncode == 0, again.stderr
    assert summary(again.stdout) == {"done": 4 - n, "skipped": n, "failed": 0}
    assert_same_cache(cache_contents(run_dir), cache_contents(ref_dir))
    # The killed write's temp file, if the kill left one, went when the entry was rebuilt under its lock.
    assert not list(run_dir.rglob("*.tmp"))


def test_two_extractions_share_one_cache(videos: Path, tmp_path: Path):
    shared, alone = tmp_path / "cache partagé", tmp_path / "cache seul"
    procs = [popen_pipeline("extract", videos, "--cache", shared, *EXTRACT) for _ in range(2)]
    single = run_pipeline("extract", videos, "--cache", alone, *EXTRACT)
    assert single.returncode == 0, single.stderr
    counts = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        counts.append(summary(out))
    # Each video was extracted by exactly one of the two; the other skipped it (before or after its lock).
    assert sum(c["done"] for c in counts) == 4 and sum(c["skipped"] for c in counts) == 4, counts
    assert all(c["failed"] == 0 for c in counts)
    assert_same_cache(cache_contents(shared), cache_contents(alone))
    assert not [p for p in shared.rglob("*.tmp")]


TRAIN = ("--epochs", "5", "--width", "0.125", "--depth", "2", "--length", "8", "--batch-size", "4", "--seed", "3",
         "--threads", "1", "--quiet")


@pytest.mark.skipif("train" not in LANDED, reason="`pipeline train` has not landed yet")
def test_killed_training_resumes_to_the_same_weights(tmp_path: Path):
    import torch

    data = tmp_path / "dätä sét" / "tiny ü.pkl"
    data.parent.mkdir()
    save_dataset(make_dataset(n_per_class=6, num_classes=3, t=16), data)
    ref_run, run = tmp_path / "runs" / "référence", tmp_path / "runs" / "ëxpérience 1"
    ref = popen_pipeline("train", "--data", data, "--out", ref_run, *TRAIN)
    killed = popen_pipeline("train", "--data", data, "--out", run, *TRAIN)
    kill_when(killed, lambda: (run / "last.pt").exists())
    _, ref_err = ref.communicate(timeout=600)
    assert ref.returncode == 0, ref_err
    # Killed after its first epoch: the state file is complete, the final files were never written.
    state = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    assert 1 <= state["epoch"] < 5
    assert not (run / "model.pt").exists() and not (run / "metrics.json").exists()
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp") and not p.name.startswith(".")]
    resumed = run_pipeline("train", "--data", data, "--out", run, "--resume", "--quiet", "--threads", "1")
    assert resumed.returncode == 0, resumed.stderr
    a = torch.load(run / "model.pt", map_location="cpu", weights_only=True)
    b = torch.load(ref_run / "model.pt", map_location="cpu", weights_only=True)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (run, ref_run))
    for key in ("test_top1", "test_top5", "epochs", "skipped_steps", "classes"):
        assert ma[key] == mb[key], key
    rows = [list(csv.DictReader(open(r / "metrics.csv", encoding="utf-8"))) for r in (run, ref_run)]
    strip = [[{k: v for k, v in row.items() if k != "epoch_seconds"} for row in rs] for rs in rows]
    assert strip[0] == strip[1] and len(strip[0]) == 5
