"""`pipeline demo` wall and CPU time under the default thread policy against torch's own default (one thread per
core), on an idle machine and beside a competing CPU-bound process; one run each, back to back.

    python bench/threads.py [--compete both|no|yes] [--epochs N]

Each configuration runs the demo in a fresh process and a fresh folder (nothing reused). Prints a Markdown table
(wall s, CPU s of the demo process, ratio to the best wall time of the same load) for docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing as mp
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def burn(stop: mp.Event) -> None:
    """A competing job: one core busy with pure-Python arithmetic until told to stop."""
    x = 0
    while not stop.is_set():
        for i in range(100_000):
            x = (x + i * i) % 1_000_003


def run_demo(threads: str, epochs: int | None) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `pipeline demo` in its own process and folder."""
    out = Path(tempfile.mkdtemp(prefix="bench_threads_"))
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)  # the command's own policy decides, as for a user
    cmd = [sys.executable, "-m", "pipeline", "demo", "--out", str(out / "demo"), "--quiet"]
    if threads != "default":
        cmd += ["--threads", threads]
    if epochs:
        cmd += ["--epochs", str(epochs)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    shutil.rmtree(out, ignore_errors=True)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compete", choices=["both", "no", "yes"], default="both")
    ap.add_argument("--epochs", type=int, default=None, help="demo epochs [the demo's default]")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    configs = [("default", "the default policy (1 thread)"), (str(cores), f"{cores} threads = torch's own default")]
    loads = {"both": [False, True], "no": [False], "yes": [True]}[args.compete]
    print(f"# bench/threads.py  {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC  "
          f"{platform.platform()}  {cores} CPUs  python {platform.python_version()}")
    print("\n| load | threads | wall (s) | CPU (s) | wall / best wall of this load |\n|---|---|---|---|---|")
    for compete in loads:
        stop = mp.Event()
        burner = mp.Process(target=burn, args=(stop,), daemon=True) if compete else None
        if burner:
            burner.start()
        try:
            rows = [(label, *run_demo(threads, args.epochs)) for threads, label in configs]
        finally:
            if burner:
                stop.set()
                burner.join(5)
        best = min(r[1] for r in rows)
        for label, wall, cpu in rows:
            load = "one competing CPU-bound process" if compete else "no competing process of ours"
            print(f"| {load} | {label} | {wall:.1f} | {cpu:.1f} | {wall / best:.2f} |")


if __name__ == "__main__":
    main()
