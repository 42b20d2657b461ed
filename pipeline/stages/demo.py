"""`pipeline demo`: the whole method on procedural data, in a few minutes, with no data and no download.

Makes HQ clips of several synthetic actions (pipeline.data.synthetic), simulates a fast estimator's LQ skeletons of
the same clips, trains a teacher on HQ, then a plain student and an SKD student on LQ, prints the comparison and
saves a plot.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from models.contract.atomic import atomic_savefig, atomic_write_text
from models.contract.jsonio import read_json
from pipeline.data.pyskl_io import save_dataset
from pipeline.data.synthetic import ACTIONS, make_dataset
from pipeline.stages.distilling import make_request, run_distill

# Training flips clips left-right, which turns a left-hand wave into a right-hand one: keep one of the two.
DEMO_ACTIONS = [i for i, (name, _, _) in enumerate(ACTIONS) if name != "wave_right"]


@dataclass
class DemoConfig:
    clips_per_class: int = 40
    test_fraction: float = 0.6  # few training clips: where a teacher's guidance matters most
    corrupt: str = "drop=0.7,impute=3,jitter=0.1,framedrop=0.4"
    epochs: int = 15
    teacher_epochs: int = 15
    width: float = 0.5          # teacher
    student_width: float = 0.25
    depth: int = 4
    length: int = 24
    seed: int = 0
    methods: tuple[str, ...] = ("none", "skd")


def run_demo(out: str | Path, cfg: DemoConfig = DemoConfig(), progress: bool = True, echo=print) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ds = make_dataset(cfg.clips_per_class, cfg.test_fraction, seed=cfg.seed, actions=DEMO_ACTIONS)
    save_dataset(ds, out / "synthetic_hq.pkl")
    echo(f"made {len(ds.clips)} synthetic clips of {len(ds.classes)} actions ({', '.join(ds.classes)}); "
         f"LQ = {cfg.corrupt}")
    results: dict[str, dict] = {}
    teacher = None
    for method in cfg.methods:
        req = make_request(method=method, epochs=cfg.epochs, teacher_epochs=cfg.teacher_epochs,
                           student_width=cfg.student_width, teacher_width=cfg.width, depth=cfg.depth, length=cfg.length,
                           seed=cfg.seed, batch_size=16)
        run = out / method
        echo(f"--- student with method '{method}'" + ("" if teacher else " (training the teacher on HQ first)"))
        m = run_distill(out / "synthetic_hq.pkl", run, req, corrupt=cfg.corrupt, teacher_ckpt=teacher,
                        resume=(run / "student_last.pt").exists() and not (run / "metrics.json").exists(),
                        progress=progress) if not (run / "metrics.json").exists() else \
            read_json(run / "metrics.json")
        teacher = run / "teacher.pt"
        results[method] = m
    first = results[cfg.methods[0]]
    summary = {"teacher_hq_top1": first["teacher"]["hq_top1"], "teacher_lq_top1": first["teacher"]["lq_top1"],
               "students": {k: v["student"]["lq_top1"] for k, v in results.items()},
               "seconds": round(time.perf_counter() - t0, 1), "config": cfg.__dict__}
    echo("")
    rows = [("teacher", "HQ", summary["teacher_hq_top1"]), ("teacher", "LQ", summary["teacher_lq_top1"])]
    rows += [(f"student, {student_name(k)}", "LQ", v) for k, v in summary["students"].items()]
    w = max(len(r[0]) for r in rows) + 2  # the columns never run together, whatever the names
    echo(f"{'model':<{w}}{'input':<7}{'top-1':>6}")
    for name, inp, v in rows:
        echo(f"{name:<{w}}{inp:<7}{v:>6.3f}")
    _plot(out / "demo.png", summary)
    atomic_write_text(out / "demo.json", json.dumps(summary, indent=2) + "\n")
    echo(f"\nsaved {out / 'demo.png'} and {out / 'demo.json'} ({summary['seconds']:.0f} s)")
    return summary


def student_name(method: str) -> str:
    """How the table and the plot call a student, by its distillation method."""
    return {"none": "labels only", "skd": "SKD (graph matching + GR)"}.get(method, method)


def _plot(path: Path, s: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["teacher\nHQ", "teacher\nLQ"] + [f"student\n{student_name(k)}\nLQ" for k in s["students"]]
    vals = [s["teacher_hq_top1"], s["teacher_lq_top1"], *s["students"].values()]
    fig, ax = plt.subplots(figsize=(7, 4))
    bars = ax.bar(names, vals, color=["#4c72b0", "#8c8c8c"] + ["#dd8452", "#55a868", "#c44e52", "#8172b2"][
        : len(s["students"])])
    for b, v in zip(bars, vals):
        ax.text(b.get_x() + b.get_width() / 2, v + 0.01, f"{v:.2f}", ha="center")
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("top-1 on the synthetic test split")
    ax.set_title("pipeline demo: distilling a teacher's HQ knowledge into an LQ student")
    fig.tight_layout()
    atomic_savefig(fig, path)
