"""`pipeline run`: video -> fast (LQ) pose estimator -> student -> action labels, optionally a rendered video.

Only the inference side of the method runs here: the fast estimator's LQ tier (default BlazePose lite, tracking,
every 4th frame, gaps interpolated; `pose_choice.py`) and the distilled student. The estimator's joints are
converted to the model's layout by joint name (`models.contract.layouts.convert`); a model whose layout the
estimator cannot feed is refused before any video is decoded.

The per-video driver. The model part (PyTorch or onnxruntime, windows, classification) is
pipeline/infer/prediction.py, the drawing pipeline/infer/rendering.py.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from estimators.base import PoseEstimator, native_stderr_quiet
from models.contract.errors import BadInput, notice
from models.contract.layouts import convert, get_layout
from models.contract.paths import vet_output
from pipeline.extract.driver import check_result
from pipeline.extract.video import VideoReader, find_videos
from pipeline.infer.pose_choice import fast_estimator
from pipeline.infer.prediction import (
    UNKNOWN_ACTION,
    Classification,
    ModelInfo,
    Predictor,
    RunOptions,
    VideoRun,
    check_feedable,
    classify,
    load_predictor,
    min_frames,
    said,
    top_labels,
)
from pipeline.infer.rendering import render_video

# ------------------------------------------------------------------------------------------------ one video

def default_estimator(opts: RunOptions | None = None) -> tuple[PoseEstimator, str | None]:
    """The fast (LQ) tier of the chosen estimator (default: BlazePose lite, else the bundled full model), and
    the note that says a fallback was taken (None when not)."""
    opts = opts or RunOptions()
    return fast_estimator(opts.estimator, opts.pose_options, max_persons=opts.max_persons)


def run_video(path: str | os.PathLike, estimator: PoseEstimator, predictor: Predictor, opts: RunOptions,
              render_to: Path | None = None) -> VideoRun:
    """Pose, labels and (optionally) the rendered video of one file. BadInput for an unusable video."""
    path = Path(path)
    t0 = time.perf_counter()
    # fd 2 quiet for FFmpeg's decoder warnings on a damaged file (an estimator silences its own native side);
    # the progress bar writes to the real stderr (`console`).
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
    tracks = track_records(kp, sc, fps, predictor, opts) if opts.max_persons > 1 else None
    model_s = time.perf_counter() - tm
    info = predictor.info
    persons = int((pose.keypoint_score > 0).any(axis=(1, 2)).sum())
    run = VideoRun({}, pose, kp, sc, result, fps, {"classes": list(info.classes)})
    if render_to is not None:
        render_video(path, render_to, run, info)
        run.extra["render"] = str(render_to)
    # The design's schema; "windows" only when the clip was classified in more than one window.
    run.record = {"video": str(path), "frames": pose.total_frames, "persons": persons,
                  "labels": top_labels(result.overall, info.classes, opts.topk),
                  "seconds": {"pose": round(pose_s, 3), "model": round(model_s, 3),
                              "total": round(time.perf_counter() - t0, 3)}}
    verdict = open_set_record(result, info, sc, fps)
    if verdict is not None:
        run.record["open_set"] = verdict
    if len(result.bounds) > 1:
        run.record["windows"] = window_records(result, fps, info.classes, opts.topk)
    if tracks is not None:
        run.record["tracks"] = tracks
    return run


def open_set_record(result: Classification, info: ModelInfo, score: np.ndarray, fps: float) -> dict | None:
    """The open-set verdict of one classification (`score`: the `[M, T, V]` it was made from), or None when the
    model has no rule. The one place `run` (clip and tracks) and `live` (each window) turn it into output.
    "distance" is the rule's score whatever its kind: for an energy rule, the energy of the logits."""
    if result.known is None or info.open_set is None:
        return None
    dist = result.distance if result.distance is not None else []
    seen = int((score > 0).any(axis=(0, 2)).sum())
    rec = {"known": result.known, "threshold": round(info.open_set.threshold, 2),
           "distance": round(float(np.median(dist)), 2) if len(dist) else None}
    if seen < min_frames(fps):
        rec["reason"] = f"too short: a person in {seen} frames"
    return rec


def window_records(result: Classification, fps: float, classes: list[str], topk: int) -> list[dict]:
    """Each window's labels; with an open-set rule, each window with a person also gets its own verdict
    ("open_set": {"known", "distance"}, judged as if the window were the whole clip)."""
    out = []
    for w, ((s, e), p, has) in enumerate(zip(result.bounds, result.probs, result.has_person)):
        rec = {"start": round(s / fps, 3), "end": round(e / fps, 3),
               "labels": top_labels(p, classes, topk) if has else []}
        if has and result.window_known is not None and result.distance is not None:
            rec["open_set"] = {"known": bool(result.window_known[w]), "distance": round(float(result.distance[w]), 2)}
        out.append(rec)
    return out


def track_records(kp: np.ndarray, score: np.ndarray, fps: float, predictor: Predictor, opts: RunOptions
                  ) -> list[dict]:
    """`--max-persons N > 1`: each tracked person (best-ranked first) classified on its own over its frames.

    "persons" stays the count the design's schema promises; the per-person results go under "tracks".
    """
    out = []
    for m in range(kp.shape[0]):
        seen = np.flatnonzero((score[m] > 0).any(axis=-1))
        if not len(seen):
            continue
        res = classify(kp[m:m + 1], score[m:m + 1], fps, predictor, opts.window, opts.stride)
        rec = {"id": m, "frames": [int(seen[0]), int(seen[-1])],
               "labels": top_labels(res.overall, predictor.info.classes, opts.topk)}
        verdict = open_set_record(res, predictor.info, score[m:m + 1], fps)
        if verdict is not None:
            rec["open_set"] = verdict
        if len(res.bounds) > 1:
            rec["windows"] = window_records(res, fps, predictor.info.classes, opts.topk)
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
        return [vet_output(render, inputs=videos)]
    if render.suffix.lower() == ".mp4" or (render.exists() and not render.is_dir()):
        raise BadInput("with several videos, --render takes a folder (one <name>.mp4 per video)", render)
    vet_output(render, folder=True, inputs=videos)
    stems = [v.stem for v in videos]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise BadInput(f"several videos are named {dupes[0]!r}; render them one call at a time", render)
    return [render / f"{s}.mp4" for s in stems]


@contextmanager
def run_session(opts: RunOptions, estimator: PoseEstimator | None = None
                ) -> Iterator[tuple[PoseEstimator, Predictor, str | None]]:
    """The estimator and the model `run` uses for `opts`, loaded and checked against each other once, before any
    video is decoded, and the note saying a fallback estimator was taken (None when not); an estimator made here
    is closed on exit (one passed in is the caller's)."""
    predictor = load_predictor(opts)
    own = estimator is None
    est, fallback_note = (estimator, None) if estimator is not None else default_estimator(opts)
    try:
        check_feedable(predictor.info, get_layout(est.layout))
        yield est, predictor, fallback_note
    finally:
        if own:
            with native_stderr_quiet():
                est.close()


def run_videos(videos: list[str | os.PathLike], opts: RunOptions,
               on_result: Callable[[VideoRun], None] = lambda r: None,
               on_failure: Callable[[Failure], None] = lambda f: None,
               estimator: PoseEstimator | None = None,
               note: Callable[[str], None] = notice) -> tuple[list[VideoRun], list[Failure]]:
    """Run every video (folders are searched for video files); bad videos are collected as failures and the
    others go on.

    The model is loaded (and checked against the estimator) once, before any video is decoded. A fallback
    estimator's note goes to `note` just before the first result: a run whose clips all fail prints only their
    errors (one line for one clip, as the CLI contract says).
    """
    paths = find_videos(list(videos))
    if not paths:
        raise BadInput("no videos found in " + ", ".join(str(v) for v in videos))
    targets = render_targets(paths, opts.render)
    done: list[VideoRun] = []
    failed: list[Failure] = []
    with run_session(opts, estimator) as (est, predictor, fallback_note):
        for path, target in zip(paths, targets):
            try:
                r = run_video(path, est, predictor, opts, target)
            except BadInput as e:
                f = Failure(str(path), str(e))
                failed.append(f)
                on_failure(f)
                continue
            done.append(r)
            if fallback_note is not None:
                note(fallback_note)
                fallback_note = None
            on_result(r)
    return done, failed


def format_text(run: VideoRun) -> str:
    """The human-readable report of one video: top-k labels, and the top label of each window."""
    r = run.record
    secs = r["seconds"]
    dur = r["frames"] / run.fps
    lines = [f"{r['video']}: {r['frames']} frames ({dur:.1f} s), {r['persons']} person(s); "
             f"pose {secs['pose']:.2f} s, model {secs['model']:.3f} s, total {secs['total']:.2f} s"]
    if r.get("open_set", {}).get("known") is False:
        why = r["open_set"].get("reason")
        lines.append(f"  {UNKNOWN_ACTION}" + (f" ({why})" if why else "")
                     + f"; closest of the {len(run_classes(run))} this model knows (`pipeline run --classes`):")
    lines += [f"  {lab['score']:.3f}  {lab['label']}" for lab in r["labels"]]
    if "windows" in r:
        lines.append(f"  {len(r['windows'])} windows:")
        for w in r["windows"]:
            top = said(w["labels"], w.get("open_set", {}).get("known")) if w["labels"] else "no person"
            lines.append(f"    {w['start']:7.2f}-{w['end']:7.2f} s  {top}")
    for tr in r.get("tracks", []):
        lines.append(f"  person {tr['id']} (frames {tr['frames'][0]}-{tr['frames'][1]}): "
                     f"{said(tr['labels'], tr.get('open_set', {}).get('known'))}")
    return "\n".join(lines)


def run_classes(run: VideoRun) -> list[str]:
    return list(run.extra.get("classes", []))


def format_json(run: VideoRun) -> str:
    return json.dumps(run.record)
