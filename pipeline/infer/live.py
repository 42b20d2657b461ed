"""`pipeline live`: a camera, stream or file -> pose per frame -> tracked persons -> a label per person per window.

Threads: a reader thread decodes the source and puts frames into a small bounded queue; the main thread runs
the pose estimator's per-frame `detect()`, the person tracker and the student. When pose falls behind, the
queue drops frames (the oldest by default, so what is shown stays current; or the newest) and counts them:
memory never grows with the stream. A file is played at its own frame rate (`realtime`, the default), so a
slow consumer drops frames as it would on a camera; with `realtime=False` the reader waits for the consumer
and every frame is processed (what `pipeline run` sees).

Windows are causal: frames `[k * stride, k * stride + window)`, labelled once the pose of their last frame is
final, i.e. as soon as a processed frame at or after that last frame exists (frames the estimator skips are
interpolated between processed ones, exactly as `pipeline run` does; a skipped last frame waits for the next
processed frame, at most stride - 1 frames). At the end of a file one more window ends at the last frame when
the stride does not reach it, as in `pipeline run`: with `realtime=False` and the same window and stride, the
labels are those of `pipeline run --window W --stride S`. Each tracked person seen in a window (up to
`max_persons`, most confident first) is classified on its own; ids are kept while a track is continued.

Latency of a label: from the moment the window's last frame was read from the source to the label's output.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import resource
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from estimators.base import PoseEstimator, tracker_memory
from estimators.tracking import PersonTracker, TrackerConfig, keypoint_box
from models.contract.errors import BadInput
from models.contract.layouts import Layout, convert, get_layout
from pipeline.extract.video import VideoReader
from pipeline.infer.prediction import Classification, Predictor, classify, said, top_labels, window_frames
from pipeline.infer.rendering import VideoOut, draw_skeleton
from pipeline.infer.runner import open_set_record

DEFAULT_LIVE_STRIDE_S = 1.0    # a label per person every second: live output should not lag by whole windows
ARRIVAL_RING = 1 << 16         # frames whose read time is remembered (for latency); windows are far shorter


# --------------------------------------------------------------------------------------------------- sources

@dataclass
class Source:
    """An opened source: `frames(needs)` yields BGR frames (None where `needs(t)` is False: only grabbed)."""

    name: str
    kind: str                    # "camera", "stream" or "file"
    fps: float
    frames: Callable[[Callable[[int], bool]], Iterator[np.ndarray | None]]
    close: Callable[[], None]


def _capture_frames(cap, needs: Callable[[int], bool]) -> Iterator[np.ndarray | None]:
    t = 0
    while True:
        if needs(t):
            ok, f = cap.read()
        else:
            ok, f = cap.grab(), None
        if not ok:
            return
        yield f
        t += 1


# Network protocols a stream source may use. Anything else with "://" is refused: FFmpeg would open `file://`
# (or `pipe:`, `concat:`...) itself, past the input checks a local file gets (a FIFO would hang it).
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "rtp", "srt")
MAX_CAMERA_INDEX = 999


@dataclass(frozen=True)
class SourceSpec:
    """What a live SOURCE argument names: a camera (`index`), a network stream (`url`) or a local file (`path`)."""

    kind: str                    # "camera", "stream" or "file"
    index: int = 0
    url: str = ""
    path: str = ""


def parse_source(source: str) -> SourceSpec:
    """Classify SOURCE without opening anything; BadInput for what can be none of the three."""
    scheme = source.split("://", 1)[0].lower() if "://" in source else None
    if scheme == "file":
        parsed = urllib.parse.urlparse(source)
        if parsed.netloc not in ("", "localhost"):
            raise BadInput("a file:// URL must name a local file (file:///path/to/video.mp4)", source)
        return SourceSpec("file", path=urllib.request.url2pathname(parsed.path))
    if scheme is not None:
        if scheme not in STREAM_SCHEMES:
            raise BadInput(f"unsupported stream protocol {scheme[:24]!r} (a camera index, a video file, or one of "
                           f"{', '.join(STREAM_SCHEMES)})", source)
        return SourceSpec("stream", url=source)
    if source.isascii() and source.isdigit():  # ASCII only: "²".isdigit() is true, and int() refuses it
        if len(source) > len(str(MAX_CAMERA_INDEX)) or int(source) > MAX_CAMERA_INDEX:
            raise BadInput(f"camera index {source[:24]} is out of range (0 to {MAX_CAMERA_INDEX})")
        return SourceSpec("camera", index=int(source))
    return SourceSpec("file", path=source)


def open_source(source: str, open_timeout_s: float = 10.0) -> Source:
    """A camera index ("0"), a URL OpenCV's FFmpeg backend opens (rtsp://, http://, udp://...), or a video file
    (a path or a `file://` URL, read like `pipeline run` reads a file)."""
    import cv2

    spec = parse_source(source)
    if spec.kind == "camera":
        index = spec.index
        cap = cv2.VideoCapture(index)
        if not cap.isOpened():
            cap.release()
            raise BadInput("cannot open this camera (no such device, or it is busy)", f"camera {index}")
        kind, name = "camera", f"camera {index}"
    elif spec.kind == "stream":
        ms = int(open_timeout_s * 1000)
        # Timeouts: an unreachable RTSP/HTTP server, or a UDP address nobody sends to, must not hang forever.
        cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG,
                               [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
        if not cap.isOpened():
            cap.release()
            raise BadInput(f"cannot open the stream (OpenCV's FFmpeg backend gave up within {open_timeout_s:g} s: "
                           "nothing serves it, or the protocol/format is not supported)", source)
        kind, name = "stream", source
    else:
        reader = VideoReader(spec.path)  # the same one-line errors as `pipeline run` for a bad file
        return Source(spec.path, "file", reader.fps, reader.frames, reader.close)
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    fps = fps if math.isfinite(fps) and 0 < fps < 1000 else 30.0
    return Source(name, kind, fps, lambda needs: _capture_frames(cap, needs), cap.release)


class DropQueue:
    """A bounded FIFO. Full: `block` waits for room; "oldest" drops the oldest item; "newest" the incoming one.

    Items put with `keep=False` (frames only drawn, not posed) are dropped first, whatever the policy: losing
    one costs a rendered frame, losing a posed one costs the labels information.
    """

    def __init__(self, size: int, policy: str):
        if size < 1:
            raise BadInput("--queue must be >= 1")
        if policy not in ("oldest", "newest", "block"):
            raise BadInput(f"unknown drop policy {policy!r} (oldest, newest)")
        self.size, self.policy = size, policy
        self.items: deque = deque()
        self.cond = threading.Condition()
        self.dropped = 0
        self.closed = False

    def put(self, item: Any, stop: threading.Event, keep: bool = True) -> None:
        with self.cond:
            if len(self.items) >= self.size and self.policy != "block":
                spare = next((i for i, (_, k) in enumerate(self.items) if not k), None)
                if spare is not None:
                    del self.items[spare]
                    self.dropped += 1
                elif not keep:
                    self.dropped += 1
                    return
            if len(self.items) >= self.size:
                if self.policy == "block":
                    while len(self.items) >= self.size and not stop.is_set():
                        self.cond.wait(0.1)
                elif self.policy == "oldest":
                    self.items.popleft()
                    self.dropped += 1
                else:
                    self.dropped += 1
                    return
            self.items.append((item, keep))
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def get(self, timeout: float) -> tuple[bool, Any]:
        """(True, item), or (False, None) when nothing came within `timeout` or the queue is closed and empty."""
        with self.cond:
            if not self.items and not self.closed:
                self.cond.wait(timeout)
            if self.items:
                item = self.items.popleft()[0]
                self.cond.notify_all()
                return True, item
            return False, None


class Reader(threading.Thread):
    """Reads the source into the queue, paced at the source's fps for a realtime file; records read times."""

    def __init__(self, source: Source, q: DropQueue, needs: Callable[[int], bool], realtime: bool,
                 stop: threading.Event, posed: Callable[[int], bool] = lambda t: True):
        super().__init__(name="live-reader", daemon=True)  # daemon: a blocked camera read must not hang exit
        self.source, self.q, self.needs, self.realtime, self.stop = source, q, needs, realtime, stop
        self.posed = posed
        self.arrival = np.zeros(ARRIVAL_RING)
        self.read = 0            # frames taken from the source (skipped and dropped ones included)
        self.skipped = 0         # frames the estimator does not need and nothing draws: grabbed, not decoded
        self.error: BaseException | None = None
        self.ended = False       # the source ran out (not stopped)

    def run(self) -> None:
        try:
            start = time.perf_counter()
            for t, frame in enumerate(self.source.frames(self.needs)):
                if self.stop.is_set():
                    return
                if self.realtime:
                    delay = start + t / self.source.fps - time.perf_counter()
                    if delay > 0 and self.stop.wait(delay):
                        return
                self.arrival[t % ARRIVAL_RING] = time.perf_counter()
                self.read = t + 1
                if frame is None:
                    self.skipped += 1
                    continue
                self.q.put((t, frame), self.stop, keep=self.posed(t))
            self.ended = True
        except BaseException as e:  # handed to the main thread (e.g. BadInput for a file truncated part-way)
            self.error = e
        finally:
            self.q.close()


# ---------------------------------------------------------------------------------------------- the engine

@dataclass(frozen=True)
class LiveOptions:
    window: float | None = None   # seconds; None: DEFAULT_WINDOW_S
    stride: float | None = None   # seconds; None: window / 2 when window is given, else DEFAULT_LIVE_STRIDE_S
    max_persons: int = 1
    topk: int = 5
    realtime: bool = True         # files only: pace at the file's fps (cameras and streams pace themselves)
    queue: int = 2
    drop: str = "oldest"
    render: Path | None = None
    show: bool = False

    def __post_init__(self) -> None:
        for name in ("window", "stride"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise BadInput(f"--{name} must be a positive number of seconds")
        if self.max_persons < 1:
            raise BadInput("--max-persons must be >= 1")
        if self.render is not None and self.render.suffix.lower() != ".mp4":
            raise BadInput("--render writes an .mp4 file (mp4v); name it OUT.mp4", self.render)
        if self.render is not None and self.render.is_dir():
            raise BadInput("is a folder; --render takes a file name", self.render)


@dataclass
class Stats:
    read: int = 0
    processed: int = 0
    dropped: int = 0
    skipped: int = 0
    labels: int = 0
    persons: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    interrupted: bool = False
    render: str | None = None    # what happened to --render

    def record(self) -> dict:
        lat = np.asarray(self.latencies_ms, np.float64)
        return {"frames_read": self.read, "processed": self.processed, "dropped": self.dropped,
                "skipped": self.skipped, "labels": self.labels, "persons": self.persons,
                "latency_ms": {"mean": round(float(lat.mean()), 1) if lat.size else None,
                               "p95": round(float(np.percentile(lat, 95)), 1) if lat.size else None},
                "seconds": round(self.seconds, 3),
                "cpu_share": round(self.cpu_seconds / self.seconds, 3) if self.seconds > 0 else None,
                "interrupted": self.interrupted}

    def text(self, name: str) -> str:
        r = self.record()
        lat = r["latency_ms"]
        lat_s = f"latency mean {lat['mean']:.0f} ms, p95 {lat['p95']:.0f} ms" if lat["mean"] is not None \
            else "no label"
        cpu = f"{100 * r['cpu_share']:.0f}%" if r["cpu_share"] is not None else "-"
        end = "interrupted" if self.interrupted else "ended"
        line = (f"{name}: {end} after {self.seconds:.1f} s: {self.read} frames read, {self.processed} processed, "
                f"{self.dropped} dropped (pose fell behind), {self.skipped} skipped (estimator stride); "
                f"{self.labels} labels for {self.persons} tracked person(s), {lat_s}; CPU {cpu} of one core")
        return line + (f"\n{name}: {self.render}" if self.render else "")


def _cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def track_window(tracker: PersonTracker, track, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
    """`[end - start, V, C]` keypoints and `[end - start, V]` scores of one track, filled (interpolated, tail
    held) exactly as `PersonTracker.finalize` fills them, from the processed frames known so far.

    Runs `finalize` on a one-track tracker holding only the entries that bear on the window, shifted to start
    near 0, so the cost does not grow with the stream.
    """
    f = track.frames
    i0 = max(0, bisect.bisect_left(f, start) - 1)       # the last entry before the window (interpolation)
    i1 = min(len(f), bisect.bisect_left(f, end) + 1)    # the first entry at or after its end
    base = min(start, f[i0])
    sub = type(track)([x - base for x in f[i0:i1]], track.keypoints[i0:i1], track.scores[i0:i1])
    one = PersonTracker(replace(tracker.cfg, max_persons=1), tracker.num_joints, tracker.channels)
    one.tracks = [sub]
    p = tracker.processed
    one.processed = [x - base for x in p[bisect.bisect_left(p, base):]]
    kp, sc = one.finalize(max(end, f[i1 - 1] + 1) - base)
    return kp[0, start - base:end - base], sc[0, start - base:end - base]


class LiveEngine:
    """Consume frames, track persons, label windows. `on_event(dict)` gets each label event."""

    def __init__(self, estimator: PoseEstimator, predictor: Predictor, opts: LiveOptions, fps: float,
                 on_event: Callable[[dict], None], max_age: int | None = None):
        self.est, self.predictor, self.opts, self.fps = estimator, predictor, opts, fps
        self.on_event = on_event
        self.layout: Layout = get_layout(estimator.layout)
        self.info = predictor.info
        # The same tracker memory as the estimators' own `estimate()` (estimators.base.tracker_memory).
        self.tracker = PersonTracker(TrackerConfig(max_persons=opts.max_persons,
                                                   max_age=max_age or tracker_memory(estimator.stride)),
                                     self.layout.num_joints)
        self.wf, self.sf = window_frames(fps, opts.window, opts.stride, DEFAULT_LIVE_STRIDE_S)
        self.next_k = 0              # the next grid window [k * sf, k * sf + wf) to label
        self.last_end = 0            # end of the last window labelled
        self.ids: dict[int, int] = {}
        self.captions: dict[int, str] = {}
        self.arrival: Callable[[int], float] = lambda t: time.perf_counter()
        self.stats = Stats()

    # -- tracking
    def person_id(self, track) -> int:
        key = id(track)
        if key not in self.ids:
            self.ids[key] = self.stats.persons
            self.stats.persons += 1
        return self.ids[key]

    def process(self, t: int, frame: np.ndarray) -> None:
        self.tracker.update(t, self.est.detect(frame))
        self.stats.processed += 1
        for tr in self.tracker.tracks:
            self.person_id(tr)  # ids in order of first appearance
        while self.next_k * self.sf + self.wf - 1 <= t:
            s = self.next_k * self.sf
            self.label(s, s + self.wf)
            self.next_k += 1
        self._prune(t)

    def _prune(self, t: int) -> None:
        """Forget what no future window needs: old entries of each track, tracks that can no longer continue."""
        # Future windows start at the next grid window, or (the last one at the end of a file) at total - window.
        cutoff = min(self.next_k * self.sf, t + 1 - self.wf)
        keep = []
        for tr in self.tracker.tracks:
            if tr.frames[-1] < cutoff and t - tr.frames[-1] > self.tracker.cfg.max_age:
                self.ids.pop(id(tr), None)
                self.captions.pop(id(tr), None)
                continue
            i = max(0, min(bisect.bisect_left(tr.frames, cutoff) - 1, len(tr.frames) - 1))
            if i > 0:
                del tr.frames[:i], tr.keypoints[:i], tr.scores[:i]
            keep.append(tr)
        self.tracker.tracks = keep
        first = min([tr.frames[0] for tr in keep] + [cutoff])
        p = self.tracker.processed
        j = bisect.bisect_left(p, first) - 1
        if j > 0:
            del p[:j]

    def finish(self, total: int, complete: bool) -> None:
        """Label the windows the stream's end completes; `complete`: the source really ended (not stopped), so
        a last window ends at the last frame, as in `pipeline run`."""
        while self.next_k * self.sf + self.wf <= total:
            s = self.next_k * self.sf
            self.label(s, s + self.wf)
            self.next_k += 1
        if complete and total > 0 and self.last_end < total:
            self.label(max(0, total - self.wf), total)

    # -- classification
    def label(self, s: int, e: int) -> None:
        self.last_end = e
        seen = [tr for tr in self.tracker.tracks
                if bisect.bisect_left(tr.frames, s) < bisect.bisect_left(tr.frames, e)]
        seen.sort(key=lambda tr: (-tr.confidence(), tr.frames[0]))
        found = []
        for tr in seen[: self.opts.max_persons]:
            kp, sc = track_window(self.tracker, tr, s, e)
            kp_m, sc_m = convert(kp[None], sc[None], self.layout, self.info.layout)
            if not (sc_m > 0).any():
                continue
            i = min(bisect.bisect_left(tr.frames, e), len(tr.frames)) - 1
            found.append((tr, keypoint_box(tr.keypoints[i], tr.scores[i]), sc_m, self.classify(kp_m, sc_m)))
        if not found:
            return
        latency = (time.perf_counter() - self.arrival(e - 1)) * 1000
        for tr, box, sc_m, res in found:
            labels = top_labels(res.overall, self.info.classes, self.opts.topk)
            pid = self.person_id(tr)
            verdict = open_set_record(res, self.info, sc_m, self.fps)
            self.captions[id(tr)] = f"{pid}: {said(labels, None if verdict is None else verdict['known'])}"
            self.stats.labels += 1
            self.stats.latencies_ms.append(latency)
            event = {"t": round(e / self.fps, 3), "person": pid,
                     "box": [int(round(v)) for v in box] if box is not None else None,
                     "labels": labels, "latency_ms": round(latency, 1), "frames": [s, e - 1]}
            if verdict is not None:
                event["open_set"] = verdict  # as `pipeline run` reports it, for this person and window
            self.on_event(event)

    def classify(self, kp: np.ndarray, score: np.ndarray) -> Classification:
        """One person's window (`[1, T, V, C]`, the model's layout) through `classify`, as one window: the same
        sampling and normalisation as `pipeline run`, and whatever rules `classify` applies to its output."""
        fps = self.fps if self.fps > 0 else 30.0  # (as window_bounds falls back)
        return classify(kp, score, fps, self.predictor, window=kp.shape[1] / fps)

    # -- drawing
    def draw(self, frame: np.ndarray, t: int) -> None:
        import cv2

        recent = max(1, 2 * self.est.stride)
        for tr in self.tracker.tracks:
            if t - tr.frames[-1] > recent:
                continue
            draw_skeleton(frame, tr.keypoints[-1][None], tr.scores[-1][None], self.layout)
            box = keypoint_box(tr.keypoints[-1], tr.scores[-1])
            text = self.captions.get(id(tr), f"{self.person_id(tr)}: ...")
            if box is not None:
                org = (int(box[0]), max(12, int(box[1]) - 6))
                scale = max(0.4, min(frame.shape[:2]) / 600)
                cv2.putText(frame, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
                cv2.putText(frame, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


# ------------------------------------------------------------------------------------------------- outputs

def check_display() -> None:
    """BadInput where `--show` cannot work. Checked before OpenCV is asked: its Qt backend aborts the whole
    process when it finds no display."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise BadInput("--show needs a display (DISPLAY/WAYLAND_DISPLAY is not set); use --render OUT.mp4")


class Window:
    """`--show`: an OpenCV window; refused up front (one line) where there is no display."""

    def __init__(self, name: str):
        import cv2

        check_display()
        self.name = f"pipeline live: {name}"
        try:
            cv2.namedWindow(self.name, cv2.WINDOW_NORMAL)
        except cv2.error as e:
            raise BadInput(f"--show: this OpenCV cannot open a window ({str(e).strip().splitlines()[-1]})") from e

    def show(self, frame: np.ndarray) -> bool:
        """Show a frame; False when the user pressed q or Esc."""
        import cv2

        cv2.imshow(self.name, frame)
        return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)

    def close(self) -> None:
        import cv2

        cv2.destroyWindow(self.name)


def run_live(source: Source, estimator: PoseEstimator, predictor: Predictor, opts: LiveOptions,
             on_event: Callable[[dict], None], stop: threading.Event | None = None) -> Stats:
    """Run until the source ends or `stop` is set (SIGINT in the CLI). Returns the statistics.

    `--render`: committed when the source ends, and also when a camera or stream is stopped (stopping is how
    those end); a file stopped part-way is discarded: a render never covers less than its source says.
    """
    stop = stop or threading.Event()
    realtime = opts.realtime and source.kind == "file"
    drawing = opts.render is not None or opts.show
    needs = (lambda t: True) if drawing else estimator.needs_frame
    q = DropQueue(opts.queue, opts.drop if realtime or source.kind != "file" else "block")
    reader = Reader(source, q, needs, realtime, stop, estimator.needs_frame)
    engine = LiveEngine(estimator, predictor, opts, source.fps, on_event)
    engine.arrival = lambda t: float(reader.arrival[t % ARRIVAL_RING])
    window = Window(source.name) if opts.show else None
    render = VideoOut(opts.render, source.fps) if opts.render is not None else None
    ok = False
    try:
        estimator.load()  # before the source starts: graphs built on the first frame cost ~1 s of dropped frames
        cpu0, t0 = _cpu_seconds(), time.perf_counter()
        reader.start()
        while not stop.is_set():
            got, item = q.get(0.1)
            if not got:
                if q.closed and not q.items:
                    break
                continue
            t, frame = item
            if estimator.needs_frame(t):
                engine.process(t, frame)
            if drawing:
                engine.draw(frame, t)
                if render is not None:
                    render.write(frame)
                if window is not None and not window.show(frame):
                    stop.set()
        interrupted = stop.is_set() and not reader.ended
        stop.set()
        reader.join(timeout=5.0)
        if reader.error is not None:
            raise reader.error
        engine.finish(reader.read, complete=not interrupted)
        st = engine.stats
        st.read, st.dropped, st.skipped, st.interrupted = reader.read, q.dropped, reader.skipped, interrupted
        if render is not None:
            if interrupted and source.kind == "file":
                render.discard()
                st.render = f"render discarded: stopped before the end of the file ({opts.render} not written)"
            elif render.commit():
                st.render = f"wrote {opts.render}"
            else:
                st.render = f"no frame reached the renderer; {opts.render} not written"
        ok = True
    finally:
        stop.set()
        if render is not None and not ok:
            render.discard()
        if window is not None:
            window.close()
        if not reader.is_alive():
            source.close()  # (a reader blocked in a camera read keeps the capture: releasing it under it crashes)
    engine.stats.seconds = time.perf_counter() - t0
    engine.stats.cpu_seconds = _cpu_seconds() - cpu0
    return engine.stats


def json_line(stop: threading.Event, out: TextIO | None = None) -> Callable[[dict], None]:
    """Write each event as one JSON line, flushed; a reader that goes away (`| head -3`) stops the run."""
    def emit(ev: dict) -> None:
        stream = out or sys.stdout
        try:
            stream.write(json.dumps(ev) + "\n")
            stream.flush()  # a consumer reading the pipe sees each label when it is made
        except BrokenPipeError:
            # Python would report the broken pipe again when it flushes stdout at exit: point fd 1 at /dev/null.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            stop.set()
    return emit
