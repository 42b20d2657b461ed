"""`pipeline run --render`: the video with the skeleton (as the model saw it) and the running label drawn."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from models.contract.atomic import atomic_path
from models.contract.errors import BadInput
from models.contract.layouts import Layout
from pipeline.extract.video import VideoReader
from pipeline.infer.prediction import Classification, ModelInfo, VideoRun, said, top_labels

# ---------------------------------------------------------------------------------------------------- render

def frame_windows(bounds: list[tuple[int, int]], total: int) -> np.ndarray:
    """For each frame, the window that labels it: of the windows holding the frame, the one centred nearest."""
    best = np.full(total, -1, np.int64)
    dist = np.full(total, np.inf)
    for i, (s, e) in enumerate(bounds):
        t = np.arange(s, min(e, total))
        d = np.abs(t - (s + e - 1) / 2)
        closer = d < dist[t]
        best[t[closer]], dist[t[closer]] = i, d[closer]
    return best


def render_video(src: Path, out: Path, run: VideoRun, info: ModelInfo) -> None:
    """Write `src` with the skeleton (the model's layout, as the model saw it) and the running label drawn.

    Atomic: frames go to a temporary file beside `out`, renamed onto it only when the whole video is written;
    on any error the temporary file is removed and `out` is untouched.
    """
    import cv2

    out = Path(out)
    which = frame_windows(run.result.bounds, run.keypoint.shape[1])
    captions = window_captions(run.result, info.classes)
    with VideoReader(src) as reader, atomic_path(out) as tmp:
        # atomic_path's temporary name ends in ".tmp"; OpenCV picks the container from the extension, so the
        # frames go to a sibling ending in ".mp4" that is moved onto the temporary file once complete.
        video_tmp = tmp.with_name(tmp.name[: -len(".tmp")])
        writer = cv2.VideoWriter(str(video_tmp), cv2.VideoWriter_fourcc(*"mp4v"), reader.fps,
                                 (reader.width, reader.height))
        try:
            if not writer.isOpened():
                raise BadInput("OpenCV cannot write an mp4v video here", out)
            for t, frame in enumerate(reader.frames()):
                if t < run.keypoint.shape[1]:
                    draw_skeleton(frame, run.keypoint[:, t], run.score[:, t], info.layout)
                    if which[t] >= 0:
                        draw_caption(frame, captions[which[t]])
                writer.write(frame)
            writer.release()
            os.replace(video_tmp, tmp)
        finally:
            writer.release()
            if video_tmp.exists():
                video_tmp.unlink()


def window_captions(result: Classification, classes: list[str]) -> list[str]:
    """The banner of each window: its top label, or the open-set verdict when the rule rejects the window."""
    known = result.window_known
    return [said(top_labels(p, classes, 1), None if known is None else bool(known[w])) if has else "no person"
            for w, (p, has) in enumerate(zip(result.probs, result.has_person))]


_BONE = (80, 220, 80)
_JOINT = (40, 40, 230)


def draw_skeleton(frame: np.ndarray, kp: np.ndarray, score: np.ndarray, layout: Layout) -> None:
    """Draw `[M, V, 2]` keypoints (joints with score 0 are missing) onto a BGR frame, in place."""
    import cv2

    h, w = frame.shape[:2]
    thick = max(1, round(max(h, w) / 300))
    for m in range(kp.shape[0]):
        ok = (score[m] > 0) & np.isfinite(kp[m]).all(-1)
        pts = np.round(kp[m, :, :2]).astype(np.int64)
        for i, j in layout.edges:
            if ok[i] and ok[j]:
                cv2.line(frame, tuple(map(int, pts[i])), tuple(map(int, pts[j])), _BONE, thick, cv2.LINE_AA)
        for v in np.flatnonzero(ok):
            cv2.circle(frame, tuple(map(int, pts[v])), thick + 1, _JOINT, -1, cv2.LINE_AA)


def draw_caption(frame: np.ndarray, text: str) -> None:
    import cv2

    h, w = frame.shape[:2]
    scale = max(0.4, min(h, w) / 500)
    thick = max(1, round(scale * 2))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = max(3, th // 3)
    cv2.rectangle(frame, (0, 0), (tw + 2 * pad, th + base + 2 * pad), (0, 0, 0), -1)
    cv2.putText(frame, text, (pad, th + pad), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)


