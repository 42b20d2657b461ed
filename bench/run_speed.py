"""`pipeline run` speed: fast estimator + student on real clips, and the student alone in PyTorch vs ONNX Runtime.

    python bench/run_speed.py                      # the videos in ../shared/data/videos, the bundled model
    python bench/run_speed.py --videos DIR_OR_FILES... --model CKPT --json-out results.json

1. Each clip in its own `pipeline run --json` process (what a user runs): the run's own seconds for pose, model
   and total (from the JSON), the process wall time including start-up (imports, model load), and the
   process's peak RSS (`os.wait4`). Speed = clip duration / seconds (>1 = faster than real time).
2. All clips in one process (start-up paid once), once with the PyTorch model and once with `--onnx`.
3. The model alone, one window (batch 1), PyTorch vs ONNX Runtime, 1 and 2 threads: median and p90 latency,
   and CPU time per call (user + system of this process; robust to other jobs sharing the cores).

CPU seconds of each `pipeline run` process (user + system) are reported beside the wall times for the same
reason: on a shared machine, wall time measures the neighbours too.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from models.contract.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VIDEOS = ROOT.parent / "shared" / "data" / "videos"


def pipeline_cmd() -> list[str]:
    script = Path(sys.executable).parent / "pipeline"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "pipeline"]


def run_process(args: list[str]) -> tuple[str, float, float, int, float]:
    """stdout, wall seconds, peak RSS in MB of the child, return code, CPU seconds (user + system) of the child."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.DEVNULL, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    return text, wall, usage.ru_maxrss / 1024, proc.returncode, usage.ru_utime + usage.ru_stime


def clip_info(path: Path) -> tuple[int, float]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    n, fps = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), float(cap.get(cv2.CAP_PROP_FPS))
    cap.release()
    return n, fps


def latency(fn, x, repeats: int, warmup: int = 10) -> dict:
    """Wall latency (median, p90) and the process CPU time per call (robust to other jobs on the machine)."""
    for _ in range(warmup):
        fn(x)
    ts = []
    c0 = time.process_time()
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        ts.append((time.perf_counter() - t0) * 1000)
    cpu = (time.process_time() - c0) * 1000 / repeats
    return {"median_ms": round(float(np.median(ts)), 3), "p90_ms": round(float(np.percentile(ts, 90)), 3),
            "cpu_ms_per_call": round(cpu, 3)}


def model_latency(model_path: Path, onnx_path: Path, repeats: int) -> tuple[list[dict], list[int]]:
    import torch

    from models.checkpoint import load_checkpoint
    from pipeline.infer.onnx_export import input_shape, load_onnx

    model, meta = load_checkpoint(model_path)
    x = np.random.default_rng(0).normal(size=input_shape(meta, 1)).astype(np.float32)
    xt = torch.from_numpy(x)
    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)

        def torch_fn(v):
            with torch.inference_mode():
                return model(v)

        session, _ = load_onnx(onnx_path, threads=threads)
        name = session.get_inputs()[0].name
        rows.append({"runtime": "pytorch", "threads": threads, **latency(torch_fn, xt, repeats)})
        rows.append({"runtime": "onnxruntime", "threads": threads,
                     **latency(lambda v, s=session, n=name: s.run(None, {n: v}), x, repeats)})
    return rows, list(x.shape)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", nargs="+", type=Path, default=[DEFAULT_VIDEOS])
    ap.add_argument("--model", type=Path, default=None, help="checkpoint [the bundled model]")
    ap.add_argument("--repeats", type=int, default=300, help="timed model calls per runtime and thread count")
    ap.add_argument("--json-out", type=Path, default=None)
    args = ap.parse_args()

    from pipeline.extract.video import find_videos
    from pipeline.infer.onnx_export import export_onnx
    from pipeline.infer.prediction import BUNDLED_MODEL

    model = args.model or BUNDLED_MODEL
    videos = find_videos(args.videos)
    if not videos:
        sys.exit(f"no videos in {args.videos}")
    tmp = Path(tempfile.mkdtemp(prefix="run_speed_"))
    onnx_path = tmp / "model.onnx"
    export = export_onnx(model, onnx_path)
    load = os.getloadavg()

    per_clip = []
    for v in videos:
        frames, fps = clip_info(v)
        out, wall, rss, rc, cpu = run_process([*pipeline_cmd(), "run", str(v), "--model", str(model), "--json"])
        row = {"video": v.name, "frames": frames, "duration_s": round(frames / fps, 2), "rc": rc,
               "process_wall_s": round(wall, 2), "process_cpu_s": round(cpu, 2), "peak_rss_mb": round(rss)}
        if rc == 0:
            r = json.loads(out.splitlines()[-1])
            row.update({"pose_s": r["seconds"]["pose"], "model_s": r["seconds"]["model"],
                        "total_s": r["seconds"]["total"], "windows": len(r.get("windows", [])) or 1,
                        "top1": r["labels"][0]["label"]})
            row["x_realtime"] = round(row["duration_s"] / r["seconds"]["total"], 1)
            row["x_realtime_process"] = round(row["duration_s"] / wall, 1)
            row["model_ms_per_window"] = round(1000 * r["seconds"]["model"] / row["windows"], 2)
        per_clip.append(row)
        print(json.dumps(row), flush=True)

    together = {}
    for name, flag in (("pytorch", ["--model", str(model)]), ("onnx", ["--onnx", str(onnx_path)])):
        out, wall, rss, rc, cpu = run_process([*pipeline_cmd(), "run", *map(str, videos), *flag, "--json"])
        recs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        dur = sum(r["duration_s"] for r in per_clip if r["rc"] == 0)
        together[name] = {"rc": rc, "clips": len(recs), "process_wall_s": round(wall, 2),
                          "process_cpu_s": round(cpu, 2),
                          "peak_rss_mb": round(rss), "sum_total_s": round(sum(r["seconds"]["total"] for r in recs), 2),
                          "sum_model_s": round(sum(r["seconds"]["model"] for r in recs), 3),
                          "x_realtime_process": round(dur / wall, 1), "x_realtime_process_cpu": round(dur / cpu, 1)}
        print(name, json.dumps(together[name]), flush=True)

    lat, shape = model_latency(model, onnx_path, args.repeats)
    for row in lat:
        print(json.dumps(row), flush=True)
    result = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "load_average_at_start": [round(x, 2) for x in load], "model": str(model),
        "model_bytes": model.stat().st_size, "onnx_export": export, "window_input_shape": shape,
        "per_clip": per_clip, "one_process": together, "model_latency": lat,
    }
    if args.json_out:
        atomic_write_text(args.json_out, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
