"""The pose-estimator interface: a stream of frames in, one `PoseResult` (`[M, T, V, C]` keypoints) out.

Estimators consume frames one at a time, so memory grows only with the output arrays, never with the video.
A frame source may yield `None` for frames the estimator said it does not need (`needs_frame`): the decoder
then only advances past them (`cv2.VideoCapture.grab()`), which is how the LQ tier skips frames cheaply.

What every backend shares lives here, once: the quality tiers (`QUALITIES`, checked by `check_quality`), the
estimate loop (`PoseEstimator.estimate`: detect on the needed frames, track, fill the skipped ones), the
tracker's memory (`tracker_memory`) and the declaration a backend's config makes (`EstimatorConfig`: its tiers,
its own options, the weights it needs, its fallback). A backend implements `detect()` and `settings()`.
"""

from __future__ import annotations

import abc
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar, TextIO

import numpy as np

from estimators.tracking import PersonTracker, TrackerConfig
from models.contract.errors import BadInput
from models.contract.layouts import get_layout

QUALITIES = ("high", "low")


def check_quality(quality: str) -> str:
    """`quality` when it is a tier name; any other string is an error, never silently one of them."""
    if quality not in QUALITIES:
        raise BadInput(f"unknown quality {quality!r} ({', '.join(QUALITIES)})")
    return quality


def tracker_memory(stride: int) -> int:
    """Frames a track may go unseen and still be continued: 60, or 4 processed frames when the stride is long
    (a person missed on a few processed frames in a row is still the same person)."""
    return max(60, 4 * stride)


@dataclass(frozen=True)
class Option:
    """One option of a backend's own, offered by `extract`, `run` and `live` as `flag` (default
    `--<estimator>-<field>`, underscores as dashes) and handed to its config's field of that name."""

    help: str
    choices: tuple[str, ...] | None = None
    flag: str | None = None
    required: bool = False     # the estimator cannot run without it (it is then refused, naming the flag)


class EstimatorConfig:
    """Base of every backend's config (a frozen dataclass): the one place a backend declares its tiers, its own
    options, the weights it needs and how it builds. The registry (`estimators.ESTIMATORS`) names it.

    `TIERS` maps each quality to the field values that make that tier (`tier()` checks the quality once).
    `OPTIONS` maps field -> `Option` for the CLI. `HELP` is one phrase for `--estimator`'s help.
    """

    TIERS: ClassVar[dict[str, dict]] = {"high": {}, "low": {"stride": 4}}
    OPTIONS: ClassVar[dict[str, Option]] = {}
    HELP: ClassVar[str] = ""

    @classmethod
    def tier(cls, quality: str, **overrides) -> EstimatorConfig:
        """The settings of tier `quality`, then `overrides` (config field -> value) on top."""
        return cls(**{**cls.TIERS[check_quality(quality)], **overrides})

    def build(self) -> PoseEstimator:
        raise NotImplementedError

    def weights(self) -> tuple[str, ...]:
        """Names (in `estimators.weights.CATALOGUE`) of the installed weights this configuration needs."""
        return ()

    def fallback(self) -> tuple[EstimatorConfig, str] | None:
        """A configuration that needs nothing installed, and what it is, for `run`/`live` when this one's
        weights are missing and the user chose none of its options; None: no such thing (refuse instead)."""
        return None


@dataclass
class PoseResult:
    """Skeletons of one video. Missing joints (not found, or filtered out) have coordinates 0 and score 0."""

    keypoint: np.ndarray          # [M, T, V, C] float32, pixel coordinates of the original frame
    keypoint_score: np.ndarray    # [M, T, V] float32 in [0, 1]
    layout: str                   # a built-in layout name (models.contract.layouts)
    img_shape: tuple[int, int]    # (h, w) of the original frames
    fps: float
    timing: dict = field(default_factory=dict)  # seconds and counts: decode_s, pose_s, frames, processed, ...

    @property
    def total_frames(self) -> int:
        return int(self.keypoint.shape[1])

    def found_frames(self) -> int:
        """Frames in which at least one joint of any person was found."""
        return int((self.keypoint_score > 0).any(axis=(0, 2)).sum())


class PoseEstimator(abc.ABC):
    """A pose backend. Subclasses are configured by a typed dataclass (`cfg`) and hold their model(s).

    `name` is the registry's name for it (`estimators.create` sets it): the cache files entries under it and
    `dataset build` finds them by it. A backend implements `detect()` (one frame -> persons) and `settings()`;
    `estimate()` (the loop over a video) is the same for all.
    """

    name: str = ""
    layout: str = ""
    cfg: object = None

    def __init__(self, cfg: object = None):
        self.cfg = cfg

    @abc.abstractmethod
    def settings(self) -> dict:
        """Everything that changes the output (model, mode, stride, thresholds...), JSON-serialisable.

        The cache keys entries on this, so two runs with equal settings must give the same result.
        """

    @property
    def model(self) -> str:
        """The model that makes the keypoints, as a user names it (recorded in cache entries; `dataset build`
        refuses to mix two)."""
        return self.name

    @property
    def stride(self) -> int:
        """Every `stride`-th frame is posed and the others interpolated (1: every frame). Callers that drive
        `detect()` frame by frame (`pipeline live`) size the tracker's memory and drawing from it."""
        return int(getattr(self.cfg, "stride", 1))

    @property
    def max_persons(self) -> int:
        return int(getattr(self.cfg, "max_persons", 1))

    def tracker_config(self) -> TrackerConfig:
        """The tracker `estimate()` uses; `pipeline live` drives `detect()` itself and uses the same."""
        return TrackerConfig(max_persons=self.max_persons, max_age=tracker_memory(self.stride))

    def load(self) -> None:
        """Load the models now instead of on the first frame: a live source streams from the start, and a first
        frame that waits for loading makes the frame queue drop frames (`pipeline live` calls this first)."""
        return None

    def needs_frame(self, t: int) -> bool:
        """Whether frame `t` must be decoded (every `stride`-th). Frames answered False may arrive as `None`."""
        return t % self.stride == 0

    def detect(self, frame: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Persons in one BGR frame: `(keypoints [V, 2] in frame pixels, scores [V])` each, best first."""
        raise NotImplementedError(f"{type(self).__name__} has no detect()")

    def begin_video(self) -> None:
        """Forget what the last video left (tracking state inside the model); called before each video."""
        return None

    def finish(self, kp: np.ndarray, sc: np.ndarray) -> np.ndarray:
        """The tracked keypoints of a whole video, post-processed (e.g. smoothed); default unchanged."""
        return kp

    def estimate(self, frames: Iterable[np.ndarray | None], fps: float, img_shape: tuple[int, int]) -> PoseResult:
        """Run on a stream of BGR uint8 frames `[h, w, 3]` (`None` where `needs_frame` said False): detect on
        the needed frames, keep up to `max_persons` tracks, fill the skipped frames (estimators/tracking.py)."""
        self.begin_video()
        tracker = PersonTracker(self.tracker_config(), get_layout(self.layout).num_joints)
        timing = run_stream(frames, self.needs_frame, self.detect, tracker.update)
        kp, sc = tracker.finalize(timing["frames"])
        return PoseResult(self.finish(kp, sc), sc, self.layout, tuple(img_shape), float(fps), timing)

    def close(self) -> None:
        """Release model resources (graphs, sessions)."""
        return None

    def __enter__(self) -> PoseEstimator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_END = object()


def run_stream(frames: Iterable[np.ndarray | None], needs_frame: Callable[[int], bool],
               detect: Callable[[np.ndarray], list], update: Callable[[int, list], None]) -> dict:
    """Drive a detector over a frame stream: `update(t, detect(frame))` for each needed frame, in order.

    Returns timing: `frames` (all frames, skipped included), `processed`, `decode_s` (time spent waiting for
    the source, i.e. decoding), `pose_s` (time in `detect` and `update`).
    """
    decode_s = pose_s = 0.0
    t = processed = 0
    it = iter(frames)
    while True:
        t0 = time.perf_counter()
        frame = next(it, _END)
        t1 = time.perf_counter()
        decode_s += t1 - t0
        if frame is _END:
            break
        if needs_frame(t):
            if frame is None:
                raise ValueError(f"frame {t} is needed but the source did not decode it")
            update(t, detect(frame))
            processed += 1
            pose_s += time.perf_counter() - t1
        t += 1
    return {"frames": t, "processed": processed, "decode_s": decode_s, "pose_s": pose_s}


@contextlib.contextmanager
def native_stderr_quiet() -> Iterator[TextIO]:
    """Send file descriptor 2 to /dev/null while the estimator runs; yield a stream to the real stderr.

    MediaPipe's C++ side (TFLite, absl) prints start-up lines on stderr whenever a graph (re)starts, i.e. on
    each video; a bad video's error must stay the only line. The progress bar writes to the yielded stream.
    SKD_VERBOSE=1 keeps everything.
    """
    if os.environ.get("SKD_VERBOSE"):
        yield sys.stderr
        return
    sys.stderr.flush()
    saved = os.dup(2)
    console = os.fdopen(os.dup(saved), "w", buffering=1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield console
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        console.close()
