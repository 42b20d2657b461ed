"""`pipeline live` on real clips played at their own frame rate: label latency, frames dropped, CPU share.

    python bench/live.py                                   # ../shared/data/videos, bundled model, 1 and 2 persons
    nice -n 10 python bench/live.py --persons 1 2 --out live_bench.txt --json-out live.json

Each clip is played in real time (`--realtime`, the default of `pipeline live` for files) through the live engine
in this process, once per `--persons` value and tier: MediaPipe runs once per tracked person and processed frame,
so 2 persons cost about twice the pose time. Reported per run: frames read / processed / dropped / skipped
(the estimator's stride), labels, label latency mean and p95 (from the reading of a window's last frame to its
label), and CPU share (user + system seconds of this process, reader thread included, over the wall time; 1.0 =
one core busy). Clips shorter than one window give one label at their end. Single-threaded model (`--threads`).
Drops depend on what else runs on the machine: the table records the load average beside the numbers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import threading
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VIDEOS = ROOT.parent / "shared" / "data" / "videos"


def tier(estimator: str, model: str | None) -> Callable[[int], object]:
    """The fast tier `pipeline run`/`live` would use with --estimator/--pose-model, for `max_persons` persons."""
    def build(max_persons: int):
        from pipeline.infer.pose_choice import fast_estimator

        return fast_estimator(estimator, {} if model is None else {"model": model}, max_persons=max_persons)[0]
    return build


# The fast tiers `pipeline live` offers: BlazePose lite (tracking, every 4th frame), full, and openpose-lite.
TIERS: dict[str, Callable[[int], object]] = {"blazepose-lite": tier("blazepose", "lite"),
                                              "blazepose-full": tier("blazepose", "full"),
                                              "openpose-lite": tier("openpose-lite", None)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", nargs="+", type=Path, default=[DEFAULT_VIDEOS])
    ap.add_argument("--model", type=Path, help="student checkpoint [bundled]")
    ap.add_argument("--tiers", nargs="+", default=list(TIERS), choices=list(TIERS))
    ap.add_argument("--persons", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--window", type=float, default=None, help="seconds [pipeline live's default]")
    ap.add_argument("--stride", type=float, default=None, help="seconds [pipeline live's default]")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--min-frames", type=int, default=30, help="skip clips shorter than this")
    ap.add_argument("--out", type=Path, help="also write the table here")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()

    import cv2
    import torch

    from estimators.base import native_stderr_quiet
    from models.contract.atomic import atomic_write_bytes
    from pipeline.extract.video import find_videos
    from pipeline.infer.live import LiveOptions, open_source, run_live
    from pipeline.infer.prediction import RunOptions, load_predictor

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    predictor = load_predictor(RunOptions(model=args.model, threads=args.threads))
    videos = []
    for v in find_videos(args.videos):
        cap = cv2.VideoCapture(str(v))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.release()
        if n >= args.min_frames:
            videos.append(v)
    rows = []
    for tier in args.tiers:
        for persons in args.persons:
            for video in videos:
                opts = LiveOptions(window=args.window, stride=args.stride, max_persons=persons, realtime=True)
                est = TIERS[tier](persons)
                events: list[dict] = []
                load0 = os.getloadavg()[0]
                with native_stderr_quiet():
                    src = open_source(str(video))
                    stats = run_live(src, est, predictor, opts, events.append, threading.Event())
                    est.close()
                rec = stats.record()
                rec.update(tier=tier, persons_max=persons, video=video.name, fps=round(src.fps, 2),
                           ids=len({e["person"] for e in events}), load1=round(load0, 2))
                rows.append(rec)
                print(json.dumps(rec), file=sys.stderr, flush=True)

    head = (f"# pipeline live, real time, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, threads={args.threads}, "
            f"window={args.window or 'default'} stride={args.stride or 'default'}")
    cols = ("tier", "persons_max", "video", "fps", "frames_read", "processed", "dropped", "skipped", "labels",
            "ids", "lat_mean_ms", "lat_p95_ms", "cpu_share", "load1")
    lines = [head, " ".join(f"{c:>14}" for c in cols)]
    for r in rows:
        vals = {**r, "lat_mean_ms": r["latency_ms"]["mean"], "lat_p95_ms": r["latency_ms"]["p95"]}
        lines.append(" ".join(f"{str(vals[c]):>14}" for c in cols))
    table = "\n".join(lines)
    print(table)
    if args.out:
        atomic_write_bytes(args.out, (table + "\n").encode())
    if args.json_out:
        atomic_write_bytes(args.json_out, json.dumps(rows, indent=1).encode())


if __name__ == "__main__":
    main()
