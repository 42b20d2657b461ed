"""`pipeline run`: video -> fast (LQ) pose estimator -> student -> action labels, optionally a rendered video.

Only the inference side of the method runs here: MediaPipe in its LQ default settings (tracking, every 4th
frame, gaps interpolated) and the distilled student. The estimator's blazepose33 joints are converted to the
model's layout by joint name (`models.layouts.convert`); a model whose layout the estimator cannot feed is
refused before any video is decoded.

Windows: a clip of at most `AUTO_WHOLE_S` seconds is classified whole (as the model was trained on whole
clips); a longer one, or any clip when `--window`/`--stride` is given, in sliding windows. Each window is
normalised and sampled on its own, exactly like one training clip, and the overall label is the mean of the
probabilities of the windows in which a person was found.

The model part runs in PyTorch from a checkpoint, or in onnxruntime from a file written by `pipeline export`
(whose metadata carries the layout, classes and input configuration, so no checkpoint is needed).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from estimators.base import PoseEstimator, PoseResult
from models.layouts import BLAZEPOSE33, Layout, convert, coverage, get_layout
from models.transforms import InputConfig, make_input, sample_indices
from pipeline.atomic import atomic_path
from pipeline.errors import BadInput
from pipeline.skeleton import Clip

BUNDLED_MODEL = Path(__file__).resolve().parents[1] / "models" / "zoo" / "student_penn13.pt"
AUTO_WHOLE_S = 10.0       # clips up to this long are classified whole
DEFAULT_WINDOW_S = 4.0
DEFAULT_STRIDE_S = 2.0
MIN_COVERAGE = 0.8        # fraction of the model's joints the estimator must supply
MAX_BATCH = 64            # windows per forward pass (bounds memory on hour-long videos)


@dataclass(frozen=True)
class RunOptions:
    model: Path | None = None      # checkpoint; None: the bundled model (unless onnx is given)
    onnx: Path | None = None       # run the model part in onnxruntime from this exported file
    topk: int = 5
    window: float | None = None    # seconds; None: whole clip up to AUTO_WHOLE_S, else DEFAULT_WINDOW_S
    stride: float | None = None    # seconds; None: DEFAULT_STRIDE_S, or window / 2 when window is given
    render: Path | None = None     # one video: the output file; several: a folder
    progress: bool = True
    threads: int | None = None     # CPU threads of the model part (None: leave the runtime's default). The CLI
                                   # passes 1: the student is small, and more threads fight MediaPipe and other
                                   # processes for the cores (see docs/RESULTS.md)
    device: str = "cpu"            # the PyTorch model's device (cpu, cuda, cuda:N); the pose estimator is CPU
    max_persons: int = 1           # > 1: track this many persons and classify each on its own ("persons" list)

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise BadInput("--threads must be >= 1")
        if self.topk < 1:
            raise BadInput("--topk must be >= 1")
        if self.window is not None and not (np.isfinite(self.window) and self.window > 0):
            raise BadInput("--window must be a positive number of seconds")
        if self.stride is not None and not (np.isfinite(self.stride) and self.stride > 0):
            raise BadInput("--stride must be a positive number of seconds")
        if self.max_persons < 1:
            raise BadInput("--max-persons must be >= 1")
        if self.model is not None and self.onnx is not None:
            raise BadInput("give --model or --onnx, not both (an exported file carries the model's metadata)")


# --------------------------------------------------------------------------------------------- the model part

@dataclass
class ModelInfo:
    """What the runner needs to know about a model, whichever runtime executes it."""

    layout: Layout
    classes: list[str]
    input_config: InputConfig
    coord_dims: int
    source: str


class TorchPredictor:
    """A checkpoint run in PyTorch (eval mode, no autograd)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None, device: str = "cpu"):
        import torch

        from models.checkpoint import load_checkpoint

        if threads:
            torch.set_num_threads(threads)  # process-wide: the CLI's choice, not the library's default
        self.model, meta = load_checkpoint(path)
        self.device = torch.device(device)
        self.model.to(self.device)
        self.info = ModelInfo(meta["layout"], list(meta["classes"]), meta["input_config"], meta["coord_dims"],
                              str(path))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities `[N, K]` for inputs `[N, M, T, V, C]`."""
        import torch

        with torch.inference_mode():
            return torch.softmax(self.model(torch.from_numpy(x).to(self.device)), dim=-1).float().cpu().numpy()


class OnnxPredictor:
    """A file written by `pipeline export`, run in onnxruntime; its metadata stands in for the checkpoint."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        from pipeline.onnx_export import load_onnx

        self.session, meta = load_onnx(path, threads)
        self.input_name = self.session.get_inputs()[0].name
        self.info = ModelInfo(meta["layout"], list(meta["classes"]), meta["input_config"], meta["coord_dims"],
                              str(path))

    def predict(self, x: np.ndarray) -> np.ndarray:
        logits = self.session.run(None, {self.input_name: np.ascontiguousarray(x, np.float32)})[0]
        z = logits - logits.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)


Predictor = TorchPredictor | OnnxPredictor


def load_predictor(opts: RunOptions) -> Predictor:
    if opts.onnx is not None:
        pred: Predictor = OnnxPredictor(opts.onnx, opts.threads)
    else:
        path = opts.model if opts.model is not None else BUNDLED_MODEL
        if opts.model is None and not path.is_file():
            raise BadInput("the bundled model is missing from this install; pass --model CKPT", path)
        pred = TorchPredictor(path, opts.threads, opts.device)
    check_feedable(pred.info)
    return pred


def check_feedable(info: ModelInfo, estimator_layout: Layout = BLAZEPOSE33) -> None:
    """Refuse a model whose input the fast estimator cannot supply (its joints, 2D coordinates)."""
    cov = coverage(estimator_layout, info.layout)
    if cov < MIN_COVERAGE:
        have = round(cov * info.layout.num_joints)
        raise BadInput(f"the model is for layout {info.layout.name}: the fast estimator ({estimator_layout.name}) "
                       f"supplies only {have} of its {info.layout.num_joints} joints", info.source)
    if info.coord_dims != 2:
        raise BadInput(f"the model takes {info.coord_dims}D coordinates; the fast estimator gives 2D", info.source)


# --------------------------------------------------------------------------------------------------- windows

def window_bounds(total: int, fps: float, window: float | None = None, stride: float | None = None
                  ) -> list[tuple[int, int]]:
    """Frame ranges `[start, end)` to classify.

    No window/stride given: the whole clip when it lasts at most AUTO_WHOLE_S, else DEFAULT_WINDOW_S windows
    every DEFAULT_STRIDE_S. Windows start every stride; one more window ends at the last frame when the
    stride does not reach it, so the tail is always covered. A clip no longer than one window is one window.
    """
    if total < 1:
        raise ValueError("total must be >= 1")
    fps = fps if fps > 0 else 30.0
    if window is None and stride is None and total / fps <= AUTO_WHOLE_S:
        return [(0, total)]
    win_s = window if window is not None else DEFAULT_WINDOW_S
    str_s = stride if stride is not None else (win_s / 2 if window is not None else DEFAULT_STRIDE_S)
    wf = max(2, int(round(win_s * fps)))
    sf = max(1, int(round(str_s * fps)))
    if total <= wf:
        return [(0, total)]
    bounds = [(s, s + wf) for s in range(0, total - wf + 1, sf)]
    if bounds[-1][1] < total:
        bounds.append((total - wf, total))
    return bounds


@dataclass
class Classification:
    bounds: list[tuple[int, int]]
    probs: np.ndarray            # [W, K] per window
    has_person: np.ndarray       # [W] bool: a person was found in some frame of the window
    overall: np.ndarray          # [K] mean over windows with a person
    seconds: float = 0.0


def classify(kp: np.ndarray, score: np.ndarray, fps: float, predictor: Predictor, window: float | None = None,
             stride: float | None = None) -> Classification:
    """Classify `[M, T, V, C]` keypoints (already in the model's layout) window by window."""
    t0 = time.perf_counter()
    info = predictor.info
    total = kp.shape[1]
    bounds = window_bounds(total, fps, window, stride)
    found = (score > 0).any(axis=(0, 2))  # [T]
    xs = []
    for s, e in bounds:
        clip = Clip("window", 0, kp[:, s:e], score[:, s:e])
        idx = sample_indices(e - s, info.input_config.length, train=False)[0]
        xs.append(make_input(clip, info.layout, info.input_config, idx))
    x = np.stack(xs)
    probs = np.concatenate([predictor.predict(x[i:i + MAX_BATCH]) for i in range(0, len(x), MAX_BATCH)])
    has = np.array([bool(found[s:e].any()) for s, e in bounds])
    overall = probs[has].mean(0) if has.any() else probs.mean(0)
    return Classification(bounds, probs, has, overall, time.perf_counter() - t0)


def top_labels(probs: np.ndarray, classes: list[str], k: int) -> list[dict]:
    order = np.argsort(-probs, kind="stable")[:k]
    return [{"label": classes[i], "score": round(float(probs[i]), 4)} for i in order]


# ------------------------------------------------------------------------------------------------ one video

@dataclass
class VideoRun:
    """Everything `run_video` found, plus the JSON-ready summary (`record`)."""

    record: dict
    pose: PoseResult
    keypoint: np.ndarray         # [M, T, V, C] in the model's layout
    score: np.ndarray
    result: Classification
    fps: float
    extra: dict = field(default_factory=dict)


def default_estimator(max_persons: int = 1) -> PoseEstimator:
    """The fast (LQ) tier in its default settings: the estimator the student was distilled for."""
    from estimators.mediapipe_pose import MediaPipeConfig, MediaPipePose

    return MediaPipePose(MediaPipeConfig.low(max_persons=max_persons))


def run_video(path: str | os.PathLike, estimator: PoseEstimator, predictor: Predictor, opts: RunOptions,
              render_to: Path | None = None) -> VideoRun:
    """Pose, labels and (optionally) the rendered video of one file. BadInput for an unusable video."""
    from pipeline.extract import check_result
    from pipeline.video import VideoReader

    path = Path(path)
    t0 = time.perf_counter()
    with VideoReader(path) as reader, native_stderr_quiet() as console:
        frames = _progress(reader.frames(estimator.needs_frame), reader.reported_frames, path.name,
                           opts.progress, console)
        tp = time.perf_counter()
        pose = estimator.estimate(frames, reader.fps, reader.img_shape)
        pose_s = time.perf_counter() - tp
        fps = reader.fps
    check_result(pose, path)  # NaN keypoints or "no person found in N frames"
    tm = time.perf_counter()
    kp, sc = convert(pose.keypoint, pose.keypoint_score, get_layout(pose.layout), predictor.info.layout)
    result = classify(kp, sc, fps, predictor, opts.window, opts.stride)
    per_person = person_records(kp, sc, fps, predictor, opts) if opts.max_persons > 1 else None
    model_s = time.perf_counter() - tm
    info = predictor.info
    persons = int((pose.keypoint_score > 0).any(axis=(1, 2)).sum())
    run = VideoRun({}, pose, kp, sc, result, fps)
    if render_to is not None:
        render_video(path, render_to, run, info)
    # The design's schema; "windows" only when the clip was classified in more than one window.
    run.record = {"video": str(path), "frames": pose.total_frames, "persons": persons,
                  "labels": top_labels(result.overall, info.classes, opts.topk),
                  "seconds": {"pose": round(pose_s, 3), "model": round(model_s, 3),
                              "total": round(time.perf_counter() - t0, 3)}}
    if per_person is not None:
        run.record["persons"] = per_person
    if len(result.bounds) > 1:
        run.record["windows"] = [
            {"start": round(s / fps, 3), "end": round(e / fps, 3),
             "labels": top_labels(p, info.classes, opts.topk) if has else []}
            for (s, e), p, has in zip(result.bounds, result.probs, result.has_person)]
    return run


def person_records(kp: np.ndarray, score: np.ndarray, fps: float, predictor: Predictor, opts: RunOptions
                   ) -> list[dict]:
    """Each tracked person (best-ranked first) classified on its own over the frames it covers."""
    out = []
    for m in range(kp.shape[0]):
        seen = np.flatnonzero((score[m] > 0).any(axis=-1))
        if not len(seen):
            continue
        res = classify(kp[m:m + 1], score[m:m + 1], fps, predictor, opts.window, opts.stride)
        rec = {"id": m, "frames": [int(seen[0]), int(seen[-1])],
               "labels": top_labels(res.overall, predictor.info.classes, opts.topk)}
        if len(res.bounds) > 1:
            rec["windows"] = [{"start": round(s / fps, 3), "end": round(e / fps, 3),
                               "labels": top_labels(p, predictor.info.classes, opts.topk) if has else []}
                              for (s, e), p, has in zip(res.bounds, res.probs, res.has_person)]
        out.append(rec)
    return out


def _progress(frames: Iterable, total: int, name: str, show: bool, console: TextIO) -> Iterator:
    if not show:
        yield from frames
        return
    from tqdm import tqdm

    # disable=None: a bar on a terminal only, so piped --json output stays clean.
    with tqdm(frames, total=total or None, desc=name, unit="frame", disable=None, leave=False,
              dynamic_ncols=True, file=console) as bar:
        yield from bar


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

    from pipeline.video import VideoReader

    out = Path(out)
    which = frame_windows(run.result.bounds, run.keypoint.shape[1])
    captions = []
    for p, has in zip(run.result.probs, run.result.has_person):
        k = int(np.argmax(p))
        captions.append(f"{info.classes[k]} {p[k]:.2f}" if has else "no person")
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


# ------------------------------------------------------------------------------------------- several videos

@dataclass
class Failure:
    video: str
    reason: str


def render_targets(videos: list[Path], render: Path | None) -> list[Path | None]:
    """One video: `render` is the output file. Several: `render` is a folder, one `<stem>.mp4` per video."""
    if render is None:
        return [None] * len(videos)
    if len(videos) == 1:
        if render.suffix.lower() != ".mp4":
            raise BadInput("--render writes an .mp4 file (mp4v); name it OUT.mp4", render)
        if render.is_dir():
            raise BadInput("is a folder; --render for one video takes a file name", render)
        return [render]
    if render.suffix.lower() == ".mp4" or (render.exists() and not render.is_dir()):
        raise BadInput("with several videos, --render takes a folder (one <name>.mp4 per video)", render)
    stems = [v.stem for v in videos]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise BadInput(f"several videos are named {dupes[0]!r}; render them one call at a time", render)
    return [render / f"{s}.mp4" for s in stems]


def run_videos(videos: list[str | os.PathLike], opts: RunOptions,
               on_result: Callable[[VideoRun], None] = lambda r: None,
               on_failure: Callable[[Failure], None] = lambda f: None,
               estimator: PoseEstimator | None = None) -> tuple[list[VideoRun], list[Failure]]:
    """Run every video (folders are searched for video files); bad videos are collected as failures and the
    others go on.

    The model is loaded (and checked against the estimator) once, before any video is decoded.
    """
    from pipeline.video import find_videos

    paths = find_videos(list(videos))
    if not paths:
        raise BadInput("no videos found in " + ", ".join(str(v) for v in videos))
    predictor = load_predictor(opts)
    targets = render_targets(paths, opts.render)
    own = estimator is None
    est = estimator if estimator is not None else default_estimator(opts.max_persons)
    done: list[VideoRun] = []
    failed: list[Failure] = []
    try:
        for path, target in zip(paths, targets):
            try:
                r = run_video(path, est, predictor, opts, target)
            except BadInput as e:
                f = Failure(str(path), str(e))
                failed.append(f)
                on_failure(f)
                continue
            done.append(r)
            on_result(r)
    finally:
        if own:
            with native_stderr_quiet():
                est.close()
    return done, failed


def format_text(run: VideoRun) -> str:
    """The human-readable report of one video: top-k labels, and the top label of each window."""
    r = run.record
    secs = r["seconds"]
    dur = r["frames"] / run.fps
    per = r["persons"] if isinstance(r["persons"], list) else []
    lines = [f"{r['video']}: {r['frames']} frames ({dur:.1f} s), {len(per) or r['persons']} person(s); "
             f"pose {secs['pose']:.2f} s, model {secs['model']:.3f} s, total {secs['total']:.2f} s"]
    lines += [f"  {lab['score']:.3f}  {lab['label']}" for lab in r["labels"]]
    if "windows" in r:
        lines.append(f"  {len(r['windows'])} windows:")
        for w in r["windows"]:
            top = f"{w['labels'][0]['label']} ({w['labels'][0]['score']:.2f})" if w["labels"] else "no person"
            lines.append(f"    {w['start']:7.2f}-{w['end']:7.2f} s  {top}")
    for p in per:
        top = p["labels"][0]
        lines.append(f"  person {p['id']} (frames {p['frames'][0]}-{p['frames'][1]}): "
                     f"{top['label']} ({top['score']:.2f})")
    return "\n".join(lines)


def format_json(run: VideoRun) -> str:
    return json.dumps(run.record)
