"""`pipeline extract`: videos -> pose estimator -> one cache entry per (video content, estimator settings).

Each video is decoded as a stream (memory does not grow with its length), failures are collected rather than
raised (a folder goes on past a bad file), and an entry is written only when the whole video succeeded, so a
killed run leaves no partial entry and the next run resumes with the videos not yet done.
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_mod
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from estimators import DEFAULT, check_quality, create, estimator_class
from estimators.base import EstimatorConfig, PoseEstimator, PoseResult
from models.contract.errors import BadInput, WriteFailed
from pipeline.extract.cache import DEFAULT_ROOT, PoseCache, hash_file
from pipeline.extract.shard import select_shard
from pipeline.extract.video import VideoReader, announced_frames, capture_fps, find_videos

# Options every command offers; a config gets each one it has a field for. Set to anything but its default for
# an estimator without that field, it is refused rather than ignored.
GENERIC = {"max_persons": "--max-persons", "flip_average": "--flip-average", "smooth": "--smooth",
           "stride": "--stride"}


@dataclass(frozen=True)
class ExtractOptions:
    quality: str = "high"                  # high: HQ tier, low: LQ tier (each estimator's config says what)
    estimator: str = DEFAULT               # a name in estimators.ESTIMATORS
    cache_dir: Path = DEFAULT_ROOT
    workers: int = 1
    max_persons: int = 1
    flip_average: bool = False             # HQ opt-in (MediaPipe)
    smooth: int = 0                        # HQ opt-in temporal smoothing half-window (MediaPipe)
    stride: int | None = None              # override the tier's frame stride
    threads: int | None = None             # threads of an estimator that runs torch (MMPose) or OpenVINO
    options: dict = field(default_factory=dict)  # the estimator's own options (its config's OPTIONS): field -> value

    def __post_init__(self) -> None:
        check_quality(self.quality)
        estimator_class(self.estimator)
        if self.workers < 1 or self.max_persons < 1 or (self.stride is not None and self.stride < 1):
            raise BadInput("--workers, --max-persons and --stride must be >= 1")
        if self.threads is not None and self.threads < 1:
            raise BadInput("--threads must be >= 1")
        if self.smooth < 0:
            raise BadInput("--smooth must be >= 0")


def estimator_config(opts: ExtractOptions) -> EstimatorConfig:
    """The estimator's config for the options: its quality tier, then the explicit overrides."""
    cls = estimator_class(opts.estimator)
    own = {f.name for f in fields(cls)}
    over = {}
    for name, flag in GENERIC.items():
        value = getattr(opts, name)
        if name in own:
            if value is not None:
                over[name] = value
        elif value is not None and value != getattr(ExtractOptions, name):
            raise BadInput(f"{flag} is not an option of --estimator {opts.estimator}")
    if opts.threads is not None and "threads" in own:
        over["threads"] = opts.threads
    for name in opts.options:
        if name not in cls.OPTIONS:
            raise BadInput(f"{name!r} is not an option of --estimator {opts.estimator} "
                           f"({', '.join(cls.OPTIONS) or 'it has none'})")
    return cls.tier(opts.quality, **over, **opts.options)


def make_estimator(opts: ExtractOptions) -> PoseEstimator:
    return create(opts.estimator, estimator_config(opts))


@dataclass
class Outcome:
    video: str
    status: str                 # done | skipped | failed
    reason: str = ""
    frames: int = 0
    seconds: float = 0.0
    entry: str | None = None
    internal: bool = False      # failed for a reason that is not the input's fault (a bug, a crash)


@dataclass
class Summary:
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    def by(self, status: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == status]


def check_result(res: PoseResult, path: Path) -> None:
    if not (np.isfinite(res.keypoint).all() and np.isfinite(res.keypoint_score).all()):
        raise BadInput("the estimator returned NaN or infinite keypoints", path)
    if res.found_frames() == 0:
        raise BadInput(f"no person found in {res.total_frames} frames", path)


def extract_one(path: Path, opts: ExtractOptions, estimator: PoseEstimator, cache: PoseCache,
                progress: Callable[[int], None] = lambda n: None, video_hash: str | None = None) -> Outcome:
    """Extract one video into the cache (or find it there). Bad input becomes a failed Outcome."""
    t0 = time.perf_counter()
    try:
        video_hash = video_hash or hash_file(path)
        entry = cache.entry_path(video_hash, estimator.name, estimator.settings())
        if entry.exists() and cache.damage(entry) is None:
            return Outcome(str(path), "skipped", "already in cache", entry=str(entry))
        note = ""
        with cache.lock(entry):
            if entry.exists():  # another process built it while we waited for the lock, or it is damaged
                damage = cache.damage(entry)
                if damage is None:
                    return Outcome(str(path), "skipped", "built by another process", entry=str(entry))
                entry.unlink()  # under the lock: nobody else reads or writes it now
                note = f"re-extracted: its cache entry {entry.name} was damaged ({damage})"
            with VideoReader(path) as reader:
                res = estimator.estimate(_counted(reader.frames(estimator.needs_frame), progress), reader.fps,
                                         reader.img_shape)
            check_result(res, path)
            cache.save(entry, res, {"video_hash": video_hash, "estimator": estimator.name,
                                    "model": estimator.model, "settings": estimator.settings(),
                                    "quality": opts.quality, "source": path.name})
        return Outcome(str(path), "done", note, frames=res.total_frames, seconds=time.perf_counter() - t0,
                       entry=str(entry))
    except BadInput as e:
        return Outcome(str(path), "failed", str(e), seconds=time.perf_counter() - t0)
    except WriteFailed:
        raise  # a full cache disk is not this video's fault, and every next video would hit it too: stop
    except Exception as e:  # one broken video must not stop a folder; reported as an internal error
        return Outcome(str(path), "failed", f"{path}: internal error ({type(e).__name__}: {e})",
                       seconds=time.perf_counter() - t0, internal=True)


def _counted(frames, progress: Callable[[int], None], every: int = 16):
    n = 0
    for f in frames:
        yield f
        n += 1
        if n % every == 0:
            progress(every)
    progress(n % every)


def extract(inputs: list[str | Path], opts: ExtractOptions, show_progress: bool = True,
            shard: tuple[int, int] | None = None) -> Summary:
    """Extract every video found in `inputs` (files, folders searched recursively); with `shard` (I, N) only
    that shard's share of them (see pipeline/extract/shard.py)."""
    start = time.perf_counter()
    videos = find_videos(inputs)
    if not videos:
        raise BadInput("no videos found in " + ", ".join(str(i) for i in inputs))
    videos = select_shard(videos, shard)
    cache = PoseCache(opts.cache_dir)
    estimator = make_estimator(opts)
    estimator.settings()  # missing or altered weights: one BadInput line naming the install command, not per video
    summary = Summary()
    todo: list[tuple[Path, str]] = []
    # Cheap pass first: hashing tells which videos are already cached, so the bar counts only real work.
    for v in videos:
        try:
            h = hash_file(v)
            entry = cache.entry_path(h, estimator.name, estimator.settings())
        except BadInput as e:
            summary.outcomes.append(Outcome(str(v), "failed", str(e)))
            continue
        if entry.exists() and cache.damage(entry) is None:
            summary.outcomes.append(Outcome(str(v), "skipped", "already in cache", entry=str(entry)))
        else:
            todo.append((v, h))
    try:
        if todo:
            total = sum(_reported_frames(v) for v, _ in todo) or None
            bar = _bar(total, len(todo), show_progress)
            try:
                if opts.workers <= 1 or len(todo) == 1:
                    for v, h in todo:
                        summary.outcomes.append(extract_one(v, opts, estimator, cache, bar.update, h))
                        bar.set_postfix_str(f"{sum(1 for x in summary.outcomes if x.status != 'skipped')}"
                                            f"/{len(videos)} videos")
                else:
                    summary.outcomes += _run_pool(todo, opts, bar)
            finally:
                bar.close()
    finally:
        estimator.close()
    order = {str(v): i for i, v in enumerate(videos)}
    summary.outcomes.sort(key=lambda o: order.get(o.video, 0))
    summary.seconds = time.perf_counter() - start
    return summary


def _reported_frames(path: Path) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return 0
        return announced_frames(path, cap, capture_fps(cap))
    finally:
        cap.release()


def _bar(total: int | None, videos: int, show: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", unit_scale=False, desc=f"extract {videos} video(s)", disable=not show,
                dynamic_ncols=True, smoothing=0.1)


# Worker processes: each builds its estimator once and reports frame counts through a queue.
_W: dict = {}


def _worker_init(opts: ExtractOptions, q) -> None:
    _W["opts"], _W["queue"] = opts, q
    _W["estimator"] = make_estimator(opts)
    _W["cache"] = PoseCache(opts.cache_dir)


def _worker_run(path: Path, video_hash: str) -> Outcome:
    q = _W["queue"]
    return extract_one(path, _W["opts"], _W["estimator"], _W["cache"], lambda n: q.put(n) if n else None,
                       video_hash)


def _run_pool(todo: list[tuple[Path, str]], opts: ExtractOptions, bar) -> list[Outcome]:
    # spawn, not fork: MediaPipe and torch hold threads that a forked child would inherit in a broken state.
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    out: list[Outcome] = []
    with ProcessPoolExecutor(max_workers=min(opts.workers, len(todo)), mp_context=ctx, initializer=_worker_init,
                             initargs=(replace(opts), q)) as pool:
        pending = {pool.submit(_worker_run, v, h): v for v, h in todo}
        while pending:
            done, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            _drain(q, bar)
            for f in done:
                v = pending.pop(f)
                try:
                    out.append(f.result())
                except WriteFailed:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
                except Exception as e:  # the worker process died (e.g. killed for memory)
                    out.append(Outcome(str(v), "failed", f"{v}: worker crashed ({type(e).__name__}: {e})",
                                       internal=True))
                bar.set_postfix_str(f"{len(out)}/{len(todo)} videos")
        _drain(q, bar)
    return out


def _drain(q, bar) -> None:
    while True:
        try:
            bar.update(q.get_nowait())
        except queue_mod.Empty:
            return
