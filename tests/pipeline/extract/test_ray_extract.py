"""`pipeline extract --backend ray` against a running Ray cluster (`ray start --head`, started here).

Skipped when Ray is not installed (`pip install "skd-pipeline[ray]"`). The cluster is this machine with 2 CPUs,
so 2 tasks (2 worker processes) run at once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.extract.driver import ExtractOptions, extract
from pipeline.extract.ray_extract import InternalFailure, extract_ray, extract_task
from tests.support.video_files import cut

ray = pytest.importorskip("ray", reason='Ray is not installed (pip install "skd-pipeline[ray]")')


# Explicit, for the head and every client: a local `ray.init()` turns Ray's token authentication on by default and
# leaves a token in ~/.ray, which later clusters and clients then disagree about.
RAY_ENV = {"RAY_AUTH_MODE": "disabled"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory) -> str:
    """A Ray head node with 2 CPUs for this module; its address. Stopped by its own process group only."""
    exe = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    if not Path(exe).is_file():
        pytest.skip("the `ray` command is not installed beside Python")
    port = _free_port()
    # A short private temp dir: Ray puts Unix sockets there (length-limited) and must not meet other sessions.
    temp = Path(f"/tmp/rt{port}")
    log = tmp_path_factory.mktemp("ray") / "head.log"
    with open(log, "w") as fh:
        head = subprocess.Popen([exe, "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                                 "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                                env=dict(os.environ, **RAY_ENV))
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text(errors="replace"):
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"could not start a Ray head node here: {log.read_text(errors='replace')[-500:]}")
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        _stop(head)
        shutil.rmtree(temp, ignore_errors=True)


def _stop(proc: subprocess.Popen) -> None:
    # The process group this fixture started (ray start and its GCS, raylet, workers): a polite SIGTERM, then
    # SIGKILL for whatever is left (`ray start --block` can spend half a minute in its exit handlers).
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            pass


@pytest.fixture
def clips(shared_data: Path, tmp_path: Path) -> Path:
    d = tmp_path / "videos"
    d.mkdir()
    shutil.copyfile(shared_data / "videos" / "mmpose_demo_5frames.mp4", d / "demo5.mp4")
    cut(shared_data / "videos" / "tai_chi.mp4", d / "tai_chi8.mp4", 8)
    (d / "broken.mp4").write_text("not a video")
    return d


def _entries(cache: Path) -> dict[str, Path]:
    return {p.relative_to(cache).as_posix(): p for p in cache.rglob("*.npz")}


def test_two_ray_workers_match_the_local_run(clips: Path, tmp_path: Path, ray_cluster: str):
    local = extract([clips], ExtractOptions(quality="low", estimator="mediapipe",
                                            cache_dir=tmp_path / "local"), show_progress=False)
    assert sorted(o.status for o in local.outcomes) == ["done", "done", "failed"]

    cmd = [sys.executable, "-m", "pipeline", "extract", str(clips), "--quality", "low", "--estimator",
           "mediapipe", "--cache",
           str(tmp_path / "ray"), "--backend", "ray", "--ray-address", ray_cluster, "--workers", "2", "--no-progress"]
    env = dict(os.environ, PYTHONWARNINGS="ignore", **RAY_ENV)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    # The broken file fails (exit 2, named in the summary as given); the two good videos are done.
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout.split()[:2] == ["done", "2"], proc.stderr[-2000:]
    assert f"{clips / 'broken.mp4'}: not a readable video" in proc.stdout

    a, b = _entries(tmp_path / "local"), _entries(tmp_path / "ray")
    assert len(a) == 2 and a.keys() == b.keys()  # same videos, same estimator settings
    for name in a:
        with np.load(a[name]) as za, np.load(b[name]) as zb:
            assert np.array_equal(za["keypoint"], zb["keypoint"])
            assert np.array_equal(za["keypoint_score"], zb["keypoint_score"])
            ma, mb = json.loads(str(za["meta"])), json.loads(str(zb["meta"]))
            ma.pop("timing"), mb.pop("timing")  # seconds measured in each run
            assert ma == mb

    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.stdout.split()[:2] == ["done", "0"] and "skipped     2" in again.stdout  # the cache serves


def flaky_task(path: str, opts: ExtractOptions):
    """First attempt of each video: the worker process dies. A video named 'always*': an internal error on
    every attempt. Attempts are counted in files beside the cache (the tasks run in other processes)."""
    marker = Path(opts.cache_dir).parent / f"{Path(path).name}.attempts"
    attempts = int(marker.read_text()) + 1 if marker.exists() else 1
    marker.write_text(str(attempts))
    if Path(path).name.startswith("always"):
        raise InternalFailure(f"{path}: internal error (simulated, attempt {attempts})")
    if attempts == 1:
        os._exit(1)
    return extract_task(path, opts)


def test_failed_tasks_are_retried_and_reported(clips: Path, tmp_path: Path, ray_cluster: str, monkeypatch):
    from ray import cloudpickle  # Ray ships functions with its own copy of cloudpickle

    for k, v in RAY_ENV.items():
        monkeypatch.setenv(k, v)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # ship flaky_task itself to the workers
    (clips / "broken.mp4").unlink()
    shutil.copyfile(clips / "demo5.mp4", clips / "always_fails.mp4")
    cache = tmp_path / "c"
    s = extract_ray([clips], ExtractOptions(quality="low", estimator="mediapipe", cache_dir=cache),
                    address=ray_cluster, retries=2,
                    show_progress=False, task=flaky_task)
    status = {Path(o.video).name: o for o in s.outcomes}
    for name in ("demo5.mp4", "tai_chi8.mp4"):
        assert status[name].status == "done", status[name].reason  # after a crash of the first attempt
    assert (tmp_path / "demo5.mp4.attempts").read_text() == "2"
    bad = status["always_fails.mp4"]
    assert bad.status == "failed" and bad.internal
    assert "failed after 3 attempt(s)" in bad.reason and "simulated, attempt 3" in bad.reason
    assert (tmp_path / "always_fails.mp4.attempts").read_text() == "3"  # 1 + 2 retries
    assert len(_entries(cache)) == 2
