"""Streaming video decoding with OpenCV, with one clear BadInput per kind of unusable file."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

# FFmpeg's own messages ("moov atom not found") would interleave with the progress bar; we report each bad
# file in one line of our own instead. Must be set before OpenCV opens its first video.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from models.contract.errors import BadInput  # noqa: E402
from models.contract.paths import vet_input  # noqa: E402
from pipeline.extract.mp4_edits import check_edits, edit_list  # noqa: E402

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp")
MIN_FRAMES = 2


class VideoReader:
    """Open a video and check it can be decoded: the first two frames are read up front.

    `frames(needs)` then streams frames in order; for a frame with `needs(t)` False only `grab()` runs (the
    decoder advances, no colour conversion or copy) and `None` is yielded. After the stream ends, `decoded`
    holds the frame count, and a stream far shorter than the container announced raises BadInput.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = vet_input(path, "video")
        if self.path.stat().st_size == 0:
            raise BadInput("empty file (0 bytes)", self.path)
        check_edits(self.path)  # before decoding: a hostile edit list makes FFmpeg play the file endlessly
        self.cap = cv2.VideoCapture(str(self.path))
        if not self.cap.isOpened():
            self.cap.release()
            raise BadInput("not a readable video (OpenCV/FFmpeg cannot open it: corrupt, truncated or not a "
                           "video)", self.path)
        ok0, f0 = self.cap.read()
        ok1, f1 = self.cap.read() if ok0 else (False, None)
        if not ok0:
            self.close()
            raise BadInput("no decodable frame (corrupt or not a video)", self.path)
        if not ok1:
            self.close()
            raise BadInput(f"only 1 frame; a video needs at least {MIN_FRAMES}", self.path)
        self._head: list[np.ndarray] = [f0, f1]
        self.height, self.width = f0.shape[:2]
        self.fps = capture_fps(self.cap)
        self.reported_frames = announced_frames(self.path, self.cap, self.fps)
        self.decoded = 0

    @property
    def img_shape(self) -> tuple[int, int]:
        return self.height, self.width

    def frames(self, needs: Callable[[int], bool] = lambda t: True) -> Iterator[np.ndarray | None]:
        t = 0
        for f in self._head:
            yield f if needs(t) else None
            t += 1
        self._head = []
        while True:
            if needs(t):
                ok, f = self.cap.read()
            else:
                ok, f = self.cap.grab(), None
            if not ok:
                break
            yield f
            t += 1
        self.decoded = t
        self.check_complete()

    def check_complete(self) -> None:
        """A container that announced many more frames than decode is truncated or corrupt part-way."""
        short = self.reported_frames - self.decoded
        if self.reported_frames and short > 2 and self.decoded < 0.9 * self.reported_frames:
            raise BadInput(f"truncated or corrupt: decoded {self.decoded} of the {self.reported_frames} frames "
                           f"the file announces", self.path)

    def close(self) -> None:
        self.cap.release()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def capture_fps(cap: cv2.VideoCapture) -> float:
    """The container's frame rate, or 30 when it gives none or a nonsensical one."""
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    return fps if np.isfinite(fps) and 0 < fps < 1000 else 30.0


def announced_frames(path: Path, cap: cv2.VideoCapture, fps: float) -> int:
    """Frames the file says it plays (0: unknown). OpenCV counts every sample in the track, but an MP4 whose
    edit list plays only part of them (a phone's trim) decodes just that part, as any player shows it."""
    n = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    samples = int(n) if np.isfinite(n) and 0 < n < 1e9 else 0
    edits = edit_list(path)
    played = round(edits.played_s * fps) if edits is not None and edits.plausible() else 0
    return played if samples and 0 < played < samples else samples


def find_videos(inputs: list[str | os.PathLike]) -> list[Path]:
    """Files as given, folders searched recursively for video extensions; sorted, duplicates removed.

    A path that does not exist is kept, so it is reported as failed with the others.
    """
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS)
        else:
            out.append(p)
    seen: set[Path] = set()
    unique = []
    for p in out:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique
