"""Scaling on one machine: distillation under torchrun (1 vs 2 ranks) and Ray extraction (1 vs 2 workers).

    python bench/scaling.py [--part distill|comm|extract|all] [--repeat N] [--json OUT.json]

Distillation: the real command, `torchrun --standalone --nproc_per_node K -m pipeline distill ...`, on a
procedural dataset (pipeline.data.synthetic, 8 classes) with a teacher trained once beforehand (`--teacher`), so that
only the student's loop is timed: samples/s = steps x batch / the loop's seconds (metrics.json, evaluation
excluded). The CPU seconds of all the run's processes (start-up, data loading and evaluation included) show
what distribution costs in work, whatever the load. Configurations: 1 rank with 1 thread, 1 rank with 2 threads
(one process using both cores), 2 ranks with 1 thread each (torchrun's OMP_NUM_THREADS=1). --batch-size is the
global batch in every case.

Communication: what the 2-rank step adds, timed apart from the machine's load as far as possible: the gradient
all-reduce (`DistContext.average_gradients`, gloo, 2 local processes, 1 thread each) of a student of the same
size, median of 50 calls.

Extraction: `pipeline.extract.ray_extract.extract_ray` (HQ MediaPipe, every frame) over the shared Kinetics clips, on a
local Ray with 2 CPUs started once, with 1 and then 2 tasks in flight; frames/s = video frames / wall seconds of
the call (a fresh cache each time; worker start-up and MediaPipe graph construction included). `concurrency` is
the videos' own extraction seconds (measured inside the workers) over the wall seconds: how many ran at once on
average; `seconds_per_video` shows how much each slowed down when they did. The local process pool
(`--workers 1|2`) is measured on the same clips for reference.

Every configuration runs `--repeat` times and the best counts (other work on the machine only slows a run down);
the load average before each part is printed, as this 2-core machine is shared with other jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from models.contract.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DISTILL = ["--corrupt", "drop=0.3,jitter=0.01", "--epochs", "3", "--student-width", "0.5", "--teacher-width", "0.5",
           "--depth", "6", "--length", "32", "--batch-size", "16", "--quiet"]


def _env(threads: int) -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore", RAY_AUTH_MODE="disabled")


def bench_distill(work: Path, repeat: int) -> list[dict]:
    from pipeline.data.pyskl_io import save_dataset
    from pipeline.data.synthetic import make_dataset

    data = work / "hq.pkl"
    save_dataset(make_dataset(clips_per_class=24, seed=0), data)
    # The teacher once (1 epoch is enough to have one); every timed run reuses it.
    subprocess.run([sys.executable, "-m", "pipeline", "distill", "--hq", str(data), *DISTILL, "--epochs", "1",
                    "--out", str(work / "teacher")], check=True, env=_env(2), capture_output=True)
    teacher = work / "teacher" / "teacher.pt"
    rows = []
    for ranks, threads in ((1, 1), (1, 2), (2, 1)):
        best = None
        for r in range(repeat):
            out = work / f"run_{ranks}x{threads}_{r}"
            cmd = ["torchrun", "--standalone", f"--nproc_per_node={ranks}", "-m", "pipeline", "distill",
                   "--hq", str(data), *DISTILL, "--teacher", str(teacher), "--out", str(out)]
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run(cmd, check=True, env=_env(threads), capture_output=True)
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
            m = json.loads((out / "metrics.json").read_text())
            steps = m["epochs"] * max(1, m["n_train"] // 16)  # the loader drops the last partial batch
            rate = steps * 16 / m["train_seconds"]
            if best is None or rate > best["samples_per_s"]:
                best = {"ranks": ranks, "threads_per_rank": threads, "steps": steps,
                        "train_seconds": m["train_seconds"], "samples_per_s": round(rate, 2),
                        "cpu_seconds_all_processes": round(cpu, 1),
                        "student_lq_top1": m["student"]["lq_top1"]}
        rows.append(best)
        print(json.dumps(best), flush=True)
    return rows


def _comm_rank(rank: int, init: str, out: str) -> None:
    import statistics

    import torch
    import torch.distributed as tdist

    from models.contract.layouts import PENN13
    from models.net.transforms import InputConfig
    from models.training.distributed import DistContext
    from pipeline.stages.training import ModelOptions, build_model

    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=2)
    try:
        ctx = DistContext(rank, 2, rank, torch.device("cpu"))
        model, _ = build_model(PENN13, 8, 2, InputConfig(length=32, max_persons=1), ModelOptions(width=0.5, depth=6))
        params = list(model.parameters())
        times = []
        for _ in range(55):
            for p in params:
                p.grad = torch.randn_like(p)
            ctx.barrier()
            t0 = time.perf_counter()
            ctx.average_gradients(params, 8)
            times.append(time.perf_counter() - t0)
        if rank == 0:
            Path(out).write_text(json.dumps({"params": sum(p.numel() for p in params),
                                             "allreduce_ms_median": round(1000 * statistics.median(times[5:]), 2)}))
    finally:
        tdist.destroy_process_group()


def bench_comm(work: Path) -> dict:
    import torch.multiprocessing as tmp_mp

    os.environ["OMP_NUM_THREADS"] = "1"
    tmp_mp.spawn(_comm_rank, args=(str(work / "init"), str(work / "comm.json")), nprocs=2, join=True)
    row = json.loads((work / "comm.json").read_text())
    print(json.dumps(row), flush=True)
    return row


def _clips() -> list[str]:
    return [str(SHARED / "videos" / f) for f in ("tai_chi.mp4", "skateboarding.mp4", "basketball.mp4",
                                                  "arm_wrestling.mp4")]


def bench_extract(work: Path, repeat: int) -> list[dict]:
    os.environ.update(RAY_AUTH_MODE="disabled")
    import ray

    from pipeline.extract.driver import ExtractOptions, extract
    from pipeline.extract.ray_extract import extract_ray

    clips = _clips()
    rows = []
    ray.init(num_cpus=2, logging_level="ERROR", log_to_driver=False, include_dashboard=False)
    try:
        for backend, workers in (("ray", 1), ("ray", 2), ("local", 1), ("local", 2)):
            best = None
            for r in range(repeat):
                opts = ExtractOptions(quality="high", cache_dir=work / f"cache_{backend}{workers}_{r}",
                                      workers=workers if backend == "local" else 1)
                t0 = time.perf_counter()
                if backend == "ray":
                    s = extract_ray(clips, opts, max_in_flight=workers, show_progress=False)
                else:
                    s = extract(clips, opts, show_progress=False)
                wall = time.perf_counter() - t0
                assert not s.by("failed"), [o.reason for o in s.by("failed")]
                frames = sum(o.frames for o in s.by("done"))
                if best is None or frames / wall > best["frames_per_s"]:
                    busy = sum(o.seconds for o in s.by("done"))  # each video's own time, inside its worker
                    best = {"backend": backend, "workers": workers, "videos": len(clips), "frames": frames,
                            "seconds": round(wall, 2), "frames_per_s": round(frames / wall, 1),
                            "concurrency": round(busy / wall, 2), "seconds_per_video": round(busy / len(clips), 2)}
            rows.append(best)
            print(json.dumps(best), flush=True)
    finally:
        ray.shutdown()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["distill", "comm", "extract", "all"], default="all")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    report: dict = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                    "python": platform.python_version()}
    with tempfile.TemporaryDirectory(prefix="scaling_") as tmp:
        work = Path(tmp)
        if args.part in ("distill", "all"):
            report["load_before_distill"] = os.getloadavg()
            print(f"distill (load average {os.getloadavg()})", flush=True)
            report["distill"] = bench_distill(work, args.repeat)
        if args.part in ("comm", "all"):
            report["comm"] = bench_comm(work)
        if args.part in ("extract", "all"):
            if not SHARED.is_dir():
                sys.exit(f"{SHARED} is absent: the extraction part needs the shared videos")
            report["load_before_extract"] = os.getloadavg()
            print(f"extract (load average {os.getloadavg()})", flush=True)
            report["extract"] = bench_extract(work, args.repeat)
    for part, key, unit in (("distill", "samples_per_s", "samples/s"), ("extract", "frames_per_s", "frames/s")):
        rows = report.get(part)
        if rows:
            base = rows[0][key]
            for row in rows:
                row["speedup_vs_first"] = round(row[key] / base, 2) if base else None
            print(f"\n{part} ({unit}):")
            for row in rows:
                print("  " + ", ".join(f"{k}={v}" for k, v in row.items()))
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
