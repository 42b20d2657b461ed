"""The skeleton cache: content hashing, entry paths that stay inside the cache, atomic entries, skip, lock."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
import pytest

from estimators.base import PoseEstimator, PoseResult
from models.contract.errors import BadInput
from pipeline.extract.cache import PoseCache, hash_file
from pipeline.extract.driver import ExtractOptions, extract_one
from tests.support.video_files import stick_figure_frames, write_video


class FakeEstimator(PoseEstimator):
    """Counts frames, optionally sleeps or fails part-way; returns one 'person' standing still."""

    name = "fake"
    layout = "coco17"

    def __init__(self, fail_at: int | None = None, sleep: float = 0.0, calls: Path | None = None):
        self.fail_at, self.sleep, self.calls = fail_at, sleep, calls

    def settings(self) -> dict:
        return {"version": 1}

    def estimate(self, frames, fps, img_shape) -> PoseResult:
        if self.calls is not None:
            with open(self.calls, "a") as fh:
                fh.write("x")
        n = 0
        for _ in frames:
            n += 1
            if self.fail_at is not None and n == self.fail_at:
                raise RuntimeError("estimator crashed part-way")
            time.sleep(self.sleep)
        kp = np.tile(np.arange(17, dtype=np.float32)[None, None, :, None], (1, n, 1, 2))
        return PoseResult(kp, np.ones((1, n, 17), np.float32), self.layout, img_shape, fps, {"frames": n})


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "v.mp4", stick_figure_frames(6))


def test_hash_is_streamed_blake2b_of_the_bytes(tmp_path: Path):
    p = tmp_path / "f.bin"
    data = np.random.default_rng(0).bytes(3 * 1024 + 17)
    p.write_bytes(data)
    assert hash_file(p) == hashlib.blake2b(data, digest_size=20).hexdigest()
    assert hash_file(p, chunk=100) == hash_file(p)
    q = tmp_path / "g.bin"
    q.write_bytes(data[:-1] + b"!")
    assert hash_file(q) != hash_file(p)
    with pytest.raises(BadInput, match="not found"):
        hash_file(tmp_path / "missing.mp4")


def test_entry_paths_stay_inside_the_cache(tmp_path: Path):
    cache = PoseCache(tmp_path / "c")
    h = "ab" * 20
    a = cache.entry_path(h, "mediapipe", {"stride": 1})
    assert a.resolve().is_relative_to((tmp_path / "c").resolve()) and a.suffix == ".npz"
    assert a != cache.entry_path(h, "mediapipe", {"stride": 4}) != cache.entry_path(h, "mmpose", {"stride": 1})
    for bad_hash in ("../../etc/passwd", "ab/../../x" + "0" * 20, "AB" * 20, ""):
        with pytest.raises(ValueError):
            cache.entry_path(bad_hash, "mediapipe", {})
    for bad_name in ("../x", "a/b", "", ".hidden"):
        with pytest.raises(ValueError):
            cache.entry_path(h, bad_name, {})
    (tmp_path / "file").write_text("x")
    with pytest.raises(BadInput, match="not a folder"):
        PoseCache(tmp_path / "file")


def test_round_trip_and_skip_on_rerun(tmp_path: Path, video: Path):
    cache = PoseCache(tmp_path / "c")
    calls = tmp_path / "calls"
    est = FakeEstimator(calls=calls)
    first = extract_one(video, ExtractOptions(), est, cache)
    assert first.status == "done" and first.frames == 6
    entry = cache.load(Path(first.entry))
    assert entry.meta["estimator"] == "fake" and entry.meta["source"] == "v.mp4"
    assert entry.meta["video_hash"] == hash_file(video) and entry.meta["settings"] == {"version": 1}
    assert entry.result.keypoint.shape == (1, 6, 17, 2) and entry.result.img_shape == (240, 320)
    np.testing.assert_array_equal(entry.result.keypoint[0, 3, :, 0], np.arange(17))
    again = extract_one(video, ExtractOptions(), est, cache)
    assert again.status == "skipped" and again.entry == first.entry
    assert calls.read_text() == "x"  # the estimator did not run the second time
    # A renamed copy has the same content: same entry.
    copy = tmp_path / "renamed.mp4"
    copy.write_bytes(video.read_bytes())
    assert extract_one(copy, ExtractOptions(), est, cache).status == "skipped"


def test_no_partial_entry_when_the_estimator_fails(tmp_path: Path, video: Path):
    cache = PoseCache(tmp_path / "c")
    out = extract_one(video, ExtractOptions(), FakeEstimator(fail_at=3), cache)
    assert out.status == "failed" and out.internal and "crashed part-way" in out.reason
    files = [p for p in (tmp_path / "c").rglob("*") if p.is_file()]
    assert all(p.suffix == ".lock" for p in files), files  # no .npz, no temp file
    # The next run resumes: the video is extracted then.
    assert extract_one(video, ExtractOptions(), FakeEstimator(), cache).status == "done"


def test_stale_temp_file_of_a_killed_writer_is_removed(tmp_path: Path, video: Path):
    cache = PoseCache(tmp_path / "c")
    entry = cache.entry_path(hash_file(video), "fake", FakeEstimator().settings())
    entry.parent.mkdir(parents=True)
    stale = entry.parent / f".{entry.name}.abc123.npz.tmp"  # what atomic_path leaves when killed (SIGKILL)
    stale.write_bytes(b"half an entry")
    assert extract_one(video, ExtractOptions(), FakeEstimator(), cache).status == "done"
    assert not stale.exists() and entry.is_file()


def test_unreadable_entry_is_bad_input(tmp_path: Path):
    cache = PoseCache(tmp_path / "c")
    p = cache.entry_path("cd" * 20, "fake", {})
    p.parent.mkdir(parents=True)
    p.write_bytes(b"garbage")
    with pytest.raises(BadInput, match="unreadable cache entry"):
        cache.load(p)


def _extract_in_child(video: str, cache_dir: str, calls: str, q) -> None:
    out = extract_one(Path(video), ExtractOptions(), FakeEstimator(sleep=0.1, calls=Path(calls)),
                      PoseCache(cache_dir))
    q.put((out.status, out.reason))


def test_two_processes_into_one_cache(tmp_path: Path, video: Path):
    """The lock makes the second process wait, then find the entry: one builds it, the other skips."""
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    calls = tmp_path / "calls"
    procs = [ctx.Process(target=_extract_in_child, args=(str(video), str(tmp_path / "c"), str(calls), q))
             for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    results = sorted(q.get(timeout=5) for _ in procs)
    assert [r[0] for r in results] == ["done", "skipped"], results
    assert results[1][1] == "built by another process"
    assert calls.read_text() == "x"
    entries = list((tmp_path / "c").rglob("*.npz"))
    assert len(entries) == 1 and PoseCache(tmp_path / "c").load(entries[0]).result.total_frames == 6


def test_lock_blocks_a_second_holder(tmp_path: Path):
    import threading

    cache = PoseCache(tmp_path / "c")
    entry = cache.entry_path("ef" * 20, "fake", {})
    order = []

    def second():
        with cache.lock(entry):
            order.append("second")

    with cache.lock(entry):
        th = threading.Thread(target=second)
        th.start()
        time.sleep(0.2)
        order.append("first released")
    th.join(5)
    assert order == ["first released", "second"]
