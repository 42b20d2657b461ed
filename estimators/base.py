"""The pose-estimator interface: a stream of frames in, one `PoseResult` (`[M, T, V, C]` keypoints) out.

Estimators consume frames one at a time, so memory grows only with the output arrays, never with the video.
A frame source may yield `None` for frames the estimator said it does not need (`needs_frame`): the decoder
then only advances past them (`cv2.VideoCapture.grab()`), which is how the LQ tier skips frames cheaply.
"""

from __future__ import annotations

import abc
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TextIO

import numpy as np


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
    """A pose backend. Subclasses are configured by a typed dataclass and hold their model(s)."""

    name: str = "base"
    layout: str = ""

    @abc.abstractmethod
    def settings(self) -> dict:
        """Everything that changes the output (model, mode, stride, thresholds...), JSON-serialisable.

        The cache keys entries on this, so two runs with equal settings must give the same result.
        """

    @property
    def stride(self) -> int:
        """Every `stride`-th frame is posed and the others interpolated (1: every frame). Callers that drive
        `detect()` frame by frame (`pipeline live`) size the tracker's memory and drawing from it."""
        return 1

    def load(self) -> None:
        """Load the models now instead of on the first frame: a live source streams from the start, and a first
        frame that waits for loading makes the frame queue drop frames (`pipeline live` calls this first)."""
        return None

    def needs_frame(self, t: int) -> bool:
        """Whether frame `t` must be decoded. Frames answered False may arrive as `None`."""
        return True

    @abc.abstractmethod
    def estimate(self, frames: Iterable[np.ndarray | None], fps: float, img_shape: tuple[int, int]) -> PoseResult:
        """Run on a stream of BGR uint8 frames `[h, w, 3]` (`None` where `needs_frame` said False)."""

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
