"""`pipeline extract --backend ray`: one Ray task per video, run by a Ray cluster, into a shared cache.

Ray is an optional extra (`pip install "skd-pipeline[ray]"`). The driver (this process) lists the videos, takes
its `--shard` if any, and submits one task per video, keeping a bounded number in flight; Ray places them on the
cluster's CPUs. Each worker process builds its estimator once and reuses it for every task it runs. A task does
what a local extraction does for one video (`pipeline.extract.driver.extract_one`: hash, skip if cached, extract under
the entry's lock, atomic write), so Ray and local runs, shards and re-runs can all share one cache.

Paths are sent absolute: every node must see the videos and the cache at the same paths (a shared filesystem),
and have this package installed. Failures: a bad video is a failed outcome at once (it would fail again). An
internal error (an exception in the estimator, a worker process that died) is retried by Ray up to `retries`
times; if it still fails it is reported as failed with its reason, and the other videos go on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from models.contract.errors import BadInput
from pipeline.extract.cache import PoseCache
from pipeline.extract.driver import ExtractOptions, Outcome, Summary, extract_one, make_estimator
from pipeline.extract.shard import select_shard
from pipeline.extract.video import find_videos

INSTALL_HINT = 'pip install "skd-pipeline[ray]" (or "ray>=2.9")'


class InternalFailure(Exception):
    """A task's internal error: raised so that Ray retries the task (bad input is not retried)."""


# Per worker process: the estimator of the last options seen (Ray reuses worker processes across tasks).
_WORKER: dict = {}


def _worker_state(opts: ExtractOptions):
    if _WORKER.get("opts") != opts:
        old = _WORKER.pop("estimator", None)
        if old is not None:
            old.close()
        _WORKER.update(opts=opts, estimator=make_estimator(opts), cache=PoseCache(opts.cache_dir))
    return _WORKER["estimator"], _WORKER["cache"]


def extract_task(path: str, opts: ExtractOptions) -> Outcome:
    """One video, inside a Ray worker."""
    estimator, cache = _worker_state(opts)
    outcome = extract_one(Path(path), opts, estimator, cache)
    if outcome.status == "failed" and outcome.internal:
        _WORKER.clear()  # the estimator may be in a broken state: the retry builds a fresh one
        raise InternalFailure(outcome.reason)
    return outcome


def import_ray():
    try:
        import ray
    except ImportError:
        raise BadInput(f"--backend ray needs Ray: {INSTALL_HINT}") from None
    return ray


def _failure_reason(err: BaseException) -> str:
    cause = getattr(err, "cause", None)  # RayTaskError wraps the task's own exception
    if isinstance(cause, InternalFailure):
        return str(cause)
    text = " ".join(str(cause if cause is not None else err).split())
    return f"{type(err).__name__}: {text[:300]}"


def extract_ray(inputs: list[str | Path], opts: ExtractOptions, *, address: str | None = None,
                shard: tuple[int, int] | None = None, retries: int = 2, max_in_flight: int | None = None,
                num_cpus: int | None = None, show_progress: bool = True,
                task: Callable[[str, ExtractOptions], Outcome] = extract_task) -> Summary:
    """Extract the videos in `inputs` (or shard `shard` of them) as Ray tasks; returns the same Summary as
    `pipeline.extract.driver.extract`.

    `address`: a running cluster (`ray start --head` prints it; "auto" finds a local one); None connects to
    RAY_ADDRESS when set, else starts a local Ray with `num_cpus` CPUs (default: all). If Ray is already
    initialised in this process, that session is used and left running. `max_in_flight`: tasks submitted at
    once (default twice the cluster's CPUs). `retries`: Ray retries of a task after an internal error.
    """
    if retries < 0:
        raise BadInput("--retries must be >= 0")
    if max_in_flight is not None and max_in_flight < 1:
        raise BadInput("--workers must be >= 1")
    ray = import_ray()
    start = time.perf_counter()
    videos = find_videos(inputs)
    if not videos:
        raise BadInput("no videos found in " + ", ".join(str(i) for i in inputs))
    videos = select_shard(videos, shard)
    opts = replace(opts, cache_dir=Path(opts.cache_dir).absolute())
    PoseCache(opts.cache_dir)  # a cache path that is a file: one clear error here, not one per task
    owned = not ray.is_initialized()
    if owned:
        kwargs: dict = {"logging_level": "ERROR", "log_to_driver": False}
        if address is None and num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise BadInput(f"cannot reach the Ray cluster at {address or 'RAY_ADDRESS/local'} "
                           f"({' '.join(str(e).split())[:200]})") from None
    summary = Summary()
    try:
        limit = max_in_flight or max(1, 2 * int(ray.cluster_resources().get("CPU", 1)))
        remote = ray.remote(task).options(num_cpus=1, max_retries=retries, retry_exceptions=[InternalFailure])
        summary.outcomes = _run(ray, remote, videos, opts, limit, retries, show_progress)
    finally:
        if owned:
            ray.shutdown()
    order = {str(v): i for i, v in enumerate(videos)}
    summary.outcomes.sort(key=lambda o: order.get(o.video, 0))
    summary.seconds = time.perf_counter() - start
    return summary


def _run(ray, remote, videos: list[Path], opts: ExtractOptions, limit: int, retries: int,
         show_progress: bool) -> list[Outcome]:
    from tqdm import tqdm

    out: list[Outcome] = []
    todo = iter(videos)
    pending: dict = {}
    frames = 0
    with tqdm(total=len(videos), unit="video", desc=f"extract {len(videos)} video(s) on Ray",
              disable=not show_progress, dynamic_ncols=True) as bar:
        while True:
            while len(pending) < limit:
                v = next(todo, None)
                if v is None:
                    break
                pending[remote.remote(str(Path(v).absolute()), opts)] = v
            if not pending:
                break
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                v = pending.pop(ref)
                try:
                    o = ray.get(ref)
                    # Named as the user gave it, like the local backend (the task saw the absolute path).
                    o.reason = o.reason.replace(str(Path(v).absolute()), str(v))
                    o.video = str(v)
                except Exception as e:  # retried by Ray `retries` times already; reported, never fatal
                    o = Outcome(str(v), "failed", f"{v}: failed after {retries + 1} attempt(s) "
                                                  f"({_failure_reason(e)})", internal=True)
                out.append(o)
                frames += o.frames
                bar.update(1)
                bar.set_postfix_str(f"{frames} frames, {sum(x.status == 'failed' for x in out)} failed")
    return out
