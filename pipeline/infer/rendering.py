"""`pipeline run --render`: the video with the skeleton (as the model saw it) and the running label drawn."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np

from models.contract.atomic import AtomicFile, no_room
from models.contract.errors import BadInput, WriteFailed
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
    out = Path(out)
    which = frame_windows(run.result.bounds, run.keypoint.shape[1])
    captions = window_captions(run.result, info.classes)
    with VideoReader(src) as reader:
        video = VideoOut(out, reader.fps)
        try:
            for t, frame in enumerate(reader.frames()):
                if t < run.keypoint.shape[1]:
                    draw_skeleton(frame, run.keypoint[:, t], run.score[:, t], info.layout)
                    if which[t] >= 0:
                        draw_caption(frame, captions[which[t]])
                video.write(frame)
            video.commit()
        finally:
            video.discard()  # (after a commit there is nothing left to discard)


class VideoOut:
    """The one video writer (`run --render`, `live --render`, the clips of `eval --report`): frames go to a new
    temp file beside OUT (the atomic writer's, made exclusively), and `commit()` renames it onto OUT only after
    checking what was written.

    OpenCV's writer reports no write error: on a full disk it goes on "writing" and leaves a file without its
    index that decodes 0 frames. So `commit()` closes the writer, opens the file again and checks that it holds
    every frame written and that the last one decodes; otherwise it raises `WriteFailed` (one line) and removes
    the temp file. `discard()` removes it too. OUT is never touched until a verified commit.
    """

    def __init__(self, out: str | os.PathLike, fps: float, codec: str = "mp4v"):
        self.out, self.fps, self.codec = Path(out), fps, codec  # codec: a FourCC (VP80 for a WebM OUT)
        self.file: AtomicFile | None = None  # made at the first frame, whose size the writer needs
        self.writer = None
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        import cv2

        if self.file is None:
            h, w = frame.shape[:2]
            self.size = (w, h)
            self.file = AtomicFile(self.out, ext_last=True)  # OpenCV picks the container from the extension
            self.writer = cv2.VideoWriter(str(self.file.tmp), cv2.VideoWriter_fourcc(*self.codec), self.fps, (w, h))
            if not self.writer.isOpened():
                full = _no_room(self.out)  # (FFmpeg writes the header at once: a full disk fails here)
                self.discard()
                if full is not None:
                    raise WriteFailed(f"cannot write the video ({full.strerror}); nothing was written", self.out)
                raise BadInput(f"OpenCV cannot write a {self.codec} video here", self.out)
        self.writer.write(frame)
        self.frames += 1

    def commit(self) -> bool:
        """Verify and commit; False (nothing written) when no frame came."""
        if self.file is None:
            return False
        self.writer.release()
        self.writer = None
        problem = self._check()
        if problem is not None:
            self.discard()
            raise WriteFailed(f"cannot write the video: {problem}; nothing was written", self.out)
        self.file.commit()
        self.file = None
        return True

    def discard(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        if self.file is not None:
            self.file.discard()
            self.file = None

    def _check(self) -> str | None:
        """None when the closed temp file holds all `frames` frames and its last frame decodes."""
        import cv2

        space = _free_bytes(self.file.tmp.parent)
        why = "no space left on device" if space is not None and space < (1 << 20) else "a write error"
        cap = cv2.VideoCapture(str(self.file.tmp))
        try:
            if not cap.isOpened():
                return f"the file written does not open ({why})"
            held = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            if held != self.frames:
                return f"it holds {held} of the {self.frames} frames written ({why})"
            cap.set(cv2.CAP_PROP_POS_FRAMES, self.frames - 1)
            ok, last = cap.read()
            if not ok or last is None or (last.shape[1], last.shape[0]) != self.size:
                return f"its last frame does not decode ({why})"
        finally:
            cap.release()
        return None


def _no_room(out: Path) -> OSError | None:
    """The error a 64 KiB write beside `out` meets when the disk or a limit has no room (None: it had room). In
    a new temp file of its own: FFmpeg removes the file it failed to open."""
    probe = None
    try:
        probe = AtomicFile(out)
        with open(probe.tmp, "r+b") as fh:
            fh.write(b"\0" * (64 << 10))
            fh.flush()
            os.fsync(fh.fileno())
    except (OSError, WriteFailed) as e:
        err = e if isinstance(e, OSError) else OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return err if no_room(err) else None
    finally:
        if probe is not None:
            probe.discard()
    return None


def _free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


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


