"""Small video files the extraction tests write themselves: cuts of real clips, synthetic and broken files."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np


def write_video(path: Path, frames: list[np.ndarray], fps: float = 25.0, fourcc: str = "mp4v") -> Path:
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert vw.isOpened(), f"OpenCV cannot write {path}"
    for f in frames:
        vw.write(f)
    vw.release()
    return path


def read_frames(src: Path, n: int, start: int = 0) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(src))
    try:
        frames = [f for ok, f in itertools.islice((cap.read() for _ in itertools.count()), start + n) if ok]
    finally:
        cap.release()
    return frames[start:]


def cut(src: Path, dst: Path, n: int, start: int = 0, fourcc: str = "mp4v") -> Path:
    """The first `n` frames (from `start`) of a real clip, re-encoded."""
    return write_video(dst, read_frames(src, n, start), fourcc=fourcc)


def stick_figure_frames(n: int = 8, w: int = 320, h: int = 240) -> list[np.ndarray]:
    """A drawn stick figure: a skeleton to the eye, not a person to a pose estimator."""
    out = []
    for t in range(n):
        img = np.full((h, w, 3), 255, np.uint8)
        cx = w // 2 + int(20 * np.sin(t / 3))
        cv2.circle(img, (cx, 60), 15, (0, 0, 0), 2)
        for a, b in (((cx, 75), (cx, 150)), ((cx, 95), (cx - 40, 120)), ((cx, 95), (cx + 40, 120)),
                     ((cx, 150), (cx - 30, 220)), ((cx, 150), (cx + 30, 220))):
            cv2.line(img, a, b, (0, 0, 0), 3)
        out.append(img)
    return out


def truncate(src: Path, dst: Path, fraction: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst
