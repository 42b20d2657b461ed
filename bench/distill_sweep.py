"""Distillation on Penn Action: what low quality costs, and how much each method wins back.

    python bench/distill_sweep.py severity   # teacher once, then per LQ severity: teacher on LQ, plain and SKD student
    python bench/distill_sweep.py table --specs 'drop=0.8,jitter=0.05,framedrop=0.3' --seeds 0,1,2
    python bench/distill_sweep.py ceiling --specs 'drop=0.8,...'   # LQ-trained full-width model, teacher tuned on LQ
    python bench/distill_sweep.py report     # markdown tables + plot from what has run

Every run gets the same number of optimizer steps (`--steps N`, default `pipeline distill`'s; a label-only student,
which has fewer clips per epoch, runs more epochs) and evaluates once, at the end; `--epochs N` budgets epochs
instead. Distillation methods
get the train clips left out of the labels as unlabeled pairs (`pipeline distill`'s default); the plain student
cannot use them.

HQ = Penn Action ground truth (official split). LQ = `pipeline.data.corrupt` at each severity (same clip ids, frames,
labels). The teacher (trained once on the full HQ train split) is reused by every run. The students are trained in
the harder deployment setting the issue asks for when the plain severity costs little: a small student
(--student-width), a fraction of the training clips (--train-fraction, stratified), short windows (--length).
Every run is an ordinary `pipeline distill` run folder under --out (resumable: finished runs are skipped).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import re
import statistics
import sys
import time
from pathlib import Path

from models.contract.atomic import atomic_savefig, atomic_write_text

ROOT = Path(__file__).resolve().parents[1]

LABELS = ROOT.parent / "shared" / "data" / "penn_action" / "labels"
PROFILE = ROOT / "models" / "zoo" / "lq_profile_penn13.json"
LITE_PROFILE = ROOT / "models" / "zoo" / "lq_profile_lite_penn13.json"
SEVERITIES = [
    ("paper: drop 0.6", "drop=0.6,impute=3"),
    ("drop 0.8", "drop=0.8,impute=3"),
    ("drop 0.9", "drop=0.9,impute=3"),
    ("jitter 0.05", "jitter=0.05"),
    ("jitter 0.1", "jitter=0.1"),
    ("framedrop 0.3", "framedrop=0.3"),
    ("framedrop 0.5", "framedrop=0.5"),
    ("drop 0.8 + jitter 0.05 + framedrop 0.3", "drop=0.8,impute=3,jitter=0.05,framedrop=0.3"),
    ("measured MediaPipe LQ profile", f"profile={PROFILE}"),
    ("measured BlazePose lite miss-episode profile", f"profile={LITE_PROFILE}"),
]
TABLE_METHODS = [("none", "none"), ("kd", "none"), ("fitnet", "none"), ("rkd", "none"), ("at", "none"),
                 ("skd-authors", "global"), ("skd", "none"), ("skd", "tail")]
SEVERITY_METHODS = [("none", "none"), ("skd-authors", "global"), ("skd", "tail")]


def display(spec: str) -> str:
    """The spec as a repository-relative string (profile paths without this checkout's folder)."""
    return spec.replace(str(LITE_PROFILE), "models/zoo/lq_profile_lite_penn13.json").replace(
        str(PROFILE), "models/zoo/lq_profile_penn13.json")


def slug(spec: str) -> str:
    spec = spec.replace(str(LITE_PROFILE), "lite_profile").replace(str(PROFILE), "profile")
    return "".join(ch if ch.isalnum() else "_" for ch in spec)[:60]


def parse_variant(token: str) -> tuple[str, dict, str]:
    """`method[+key=value...]` → (method, make_request options, weights string).

    Keys `mix` and `mix_alpha` are function matching's options; any other key is a `--weights` key (e.g.
    `skd+mix=mixup+xclip=1`). They come after the sweep's own --weights."""
    method, *extra = token.split("+")
    opts: dict = {}
    weights = []
    for kv in extra:
        k, _, v = kv.partition("=")
        if k == "mix":
            opts["mix"] = v
        elif k == "mix_alpha":
            opts["mix_alpha"] = float(v)
        else:
            weights.append(f"{k}={v}")
    return method, opts, ",".join(weights)


def ensure_data(out: Path, hq: Path | None = None) -> Path:
    """The HQ pickle: `hq` when given (another data set), else Penn Action imported into `out` once."""
    from pipeline.data.importers.penn_action import import_penn_action
    from pipeline.data.pyskl_io import save_dataset

    if hq is not None:
        return hq
    pkl = out / "penn_hq.pkl"
    if not pkl.exists():
        save_dataset(import_penn_action(LABELS, progress=False), pkl)
    return pkl


def make_dev(hq: Path, out: Path, fraction: float = 0.25) -> Path:
    """A development copy of `hq`: its train split cut (stratified, fixed seed) into train and a held-out "test"
    part, so that variants are chosen without the test split. The teacher may have seen the held-out clips' HQ
    (it is trained on the whole train split once); every compared student has the same advantage."""
    from dataclasses import replace

    from pipeline.data.pyskl_io import load_dataset, save_dataset
    from pipeline.stages.distilling import stratified_fraction

    pkl = out / "dev_hq.pkl"
    if not pkl.exists():
        ds = load_dataset(hq)
        train = set(ds.split["train"])
        clips = [c for c in ds.clips if c.frame_dir in train]
        held = {clips[i].frame_dir for i in stratified_fraction(clips, fraction, 12345)}
        split = {"train": [c.frame_dir for c in clips if c.frame_dir not in held],
                 "test": [c.frame_dir for c in clips if c.frame_dir in held]}
        save_dataset(replace(ds, clips=clips, split=split), pkl)
    return pkl


def ensure_teacher(out: Path, hq: Path, args) -> Path:
    from models.net.transforms import InputConfig
    from models.training.config import TrainConfig
    from pipeline.data.pyskl_io import load_dataset
    from pipeline.stages.training import ModelOptions, TrainRequest, train_from_dataset

    run = out / "teacher"
    if not (run / "model.pt").exists():
        req = TrainRequest(TrainConfig(epochs=args.teacher_epochs, seed=0, label_smoothing=0.1, warmup_epochs=3,
                                       num_test_clips=1, eval_every=args.teacher_epochs),
                           # No score channel: ground-truth scores are constant (see pipeline/stages/distilling.py).
                           InputConfig(length=args.length, features=tuple(args.features.split(",")),
                                       use_score=False),
                           ModelOptions(width=args.teacher_width, depth=10))
        train_from_dataset(load_dataset(hq), run, req, data_path=str(hq), resume=(run / "last.pt").exists(),
                           progress=not args.quiet)
    return run / "model.pt"


def one_run(out: Path, hq: Path, teacher: Path, spec: str, variant: str, revision: str, seed: int, args) -> dict:
    from pipeline.stages.distilling import make_request, run_distill

    run = out / "runs" / slug(spec) / f"{variant}_{revision}_s{seed}"
    if (run / "metrics.json").exists():
        return json.loads((run / "metrics.json").read_text())
    method, opts, extra = parse_variant(variant)
    weights = ",".join(w for w in (args.weights, extra) if w)
    # The budget in steps is exact for every method (the loop cuts the last epoch short); evaluated at the end.
    req = make_request(method=method, grad_revision=revision, epochs=args.epochs, steps=args.steps,
                       student_width=args.student_width, length=args.length, batch_size=args.batch_size, lr=args.lr,
                       tau=args.tau, weights=weights, train_fraction=args.train_fraction, seed=seed,
                       eval_every=1 if args.epochs else 10**6, unlabeled_rest=not args.no_unlabeled, **opts)
    run.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run / "variant.json", json.dumps({"variant": variant}))
    t0 = time.perf_counter()
    m = run_distill(hq, run, req, corrupt=spec, teacher_ckpt=teacher,
                    resume=(run / "student_last.pt").exists(), progress=not args.quiet)
    print(f"[{time.perf_counter() - t0:6.0f}s] {spec} {variant}/{revision} seed {seed}: teacher HQ "
          f"{m['teacher']['hq_top1']:.3f} LQ {m['teacher']['lq_top1']:.3f}, student {m['student']['lq_top1']:.3f}",
          flush=True)
    return m


def ceiling(out: Path, hq: Path, teacher: Path, spec: str, args) -> dict:
    """Two upper references on LQ, all train labels: a model of the teacher's width trained on LQ from scratch,
    and the HQ teacher fine-tuned on LQ (lr / 10, no warm-up). Seed 0; the same schedule as the teacher."""
    from models.checkpoint import load_checkpoint
    from models.net.transforms import InputConfig
    from models.training.classifier import train_model
    from models.training.config import TrainConfig
    from pipeline.data.clips import ClipDataset
    from pipeline.data.corrupt import corrupt_dataset, parse_spec
    from pipeline.data.pyskl_io import load_dataset
    from pipeline.stages.training import ModelOptions, TrainRequest, train_from_dataset

    res = {}
    parsed = parse_spec(spec)
    # Folder named by the spec as the runs' metrics spell it (every field), so the report can pair them.
    key = slug(str(parsed))
    lq = corrupt_dataset(load_dataset(hq), parsed, 0)
    run = out / "ceiling" / key / "lq_full_width"
    if not (run / "metrics.json").exists():
        req = TrainRequest(TrainConfig(epochs=args.teacher_epochs, seed=0, label_smoothing=0.1, warmup_epochs=3,
                                       num_test_clips=1, eval_every=args.teacher_epochs),
                           InputConfig(length=args.length, features=tuple(args.features.split(","))),
                           ModelOptions(width=args.teacher_width, depth=10))
        train_from_dataset(lq, run, req, data_path=f"corrupt:{spec}", progress=not args.quiet)
    res["lq_full_width"] = json.loads((run / "metrics.json").read_text())
    run = out / "ceiling" / key / "teacher_tuned_on_lq"
    if not (run / "metrics.json").exists():
        model, meta = load_checkpoint(teacher)
        icfg = meta["input_config"]
        train = set(lq.split["train"])
        tr = [c for c in lq.clips if c.frame_dir in train]
        te = [c for c in lq.clips if c.frame_dir not in train]
        cfg = TrainConfig(epochs=args.tune_epochs, seed=0, lr=args.lr / 10, label_smoothing=0.1, warmup_epochs=0,
                          num_test_clips=1, eval_every=args.tune_epochs)
        train_model(model.train(), ClipDataset(tr, lq.layout, icfg, True, 0),
                    ClipDataset(te, lq.layout, icfg, False, 0), cfg, run, layout=lq.layout,
                    classes=list(lq.classes), model_config=meta["model_config"], input_config=icfg,
                    progress=not args.quiet, extra={"role": "teacher tuned on LQ"})
    res["teacher_tuned_on_lq"] = json.loads((run / "metrics.json").read_text())
    for k, m in res.items():
        print(f"ceiling {spec} {k}: top-1 {m['test_top1']:.3f}", flush=True)
    return res


def ceilings(out: Path) -> dict[str, dict[str, float]]:
    found: dict[str, dict[str, float]] = {}
    for p in sorted((out / "ceiling").glob("*/*/metrics.json")):
        found.setdefault(p.parent.parent.name, {})[p.parent.name] = json.loads(p.read_text())["test_top1"]
    return found


def collect(out: Path) -> list[dict]:
    rows = []
    for p in sorted((out / "runs").glob("*/*/metrics.json")):
        m = json.loads(p.read_text())
        # metrics record the seed the corruption used (",seed=N"); runs of one spec over seeds group together
        spec = re.sub(r",seed=\d+", "", m["lq_source"].removeprefix("corrupt:"))
        steps = m.get("steps") or (round(m["train_seconds"] / m["seconds_per_step"]) if m.get("seconds_per_step")
                                   else None)  # runs from before metrics.json recorded its steps
        v = p.parent / "variant.json"
        rows.append({"spec": spec, "method": json.loads(v.read_text())["variant"] if v.exists() else m["method"],
                     "revision": m["grad_revision"], "seed": m["seed"], "teacher_hq": m["teacher"]["hq_top1"],
                     "teacher_lq": m["teacher"]["lq_top1"], "student": m["student"]["lq_top1"],
                     "sec_per_step": m.get("seconds_per_step"), "revision_stats": m.get("revision", {}),
                     "epochs": m["epochs"], "steps": steps, "n_unlabeled": m.get("n_unlabeled", 0)})
    return rows


def report(out: Path) -> str:
    rows = collect(out)
    if not rows:
        return "no finished runs"
    cfg = json.loads((out / "sweep_config.json").read_text()) if (out / "sweep_config.json").exists() else {}
    lines = [f"Setting: {cfg.get('setting', '')}", ""]
    by_spec: dict[str, list[dict]] = {}
    for r in rows:
        by_spec.setdefault(r["spec"], []).append(r)

    def mean_std(vals: list[float]) -> str:
        if len(vals) == 1:
            return f"{vals[0]:.3f}"
        return f"{statistics.mean(vals):.3f} ± {statistics.stdev(vals):.3f} (n={len(vals)})"

    ceil = ceilings(out)
    lines += ["Seed 0 at each severity (gap closed = (student − plain) / (teacher on HQ − plain); where a ceiling "
              "was measured, the skd student's gap closed towards the best ceiling too):", "",
              "| LQ severity | teacher on HQ | teacher on LQ | student none | skd-authors | gap closed | skd | "
              "gap closed | best ceiling | skd gap closed (ceiling) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for spec, rs in by_spec.items():
        s0 = [r for r in rs if r["seed"] == 0]

        def first(method: str, rev: str, s0: list[dict] = s0) -> float | None:
            v = [r["student"] for r in s0 if r["method"] == method and (r["revision"] == rev or method == "none")]
            return v[0] if v else None

        none, auth, skd = first("none", "none"), first("skd-authors", "global"), first("skd", "tail")
        thq, tlq = rs[0]["teacher_hq"], rs[0]["teacher_lq"]

        def closed(v: float | None, none: float | None = none, thq: float = thq) -> str:
            return f"{(v - none) / (thq - none):.0%}" if v is not None and none is not None and thq - none > 0.005 \
                else ""

        def num(v: float | None) -> str:
            return f"{v:.3f}" if v is not None else ""

        name = display(spec)
        cs = ceil.get(slug(spec), {})
        top = max(cs.values()) if cs else None
        lines.append(f"| `{name}` | {thq:.3f} | {tlq:.3f} | {num(none)} | {num(auth)} | {closed(auth)} | "
                     f"{num(skd)} | {closed(skd)} | {num(top)} | "
                     f"{closed(skd, thq=top) if top is not None else ''} |")
    lines.append("")
    for spec, rs in by_spec.items():
        seeds = {r["seed"] for r in rs}
        if len(seeds) < 2 and len({r["method"] for r in rs}) < 4:  # a severity-sweep point, not a table
            continue
        name = display(spec)
        thq = rs[0]["teacher_hq"]
        cs = ceil.get(slug(spec), {})
        top = max(cs.values()) if cs else None
        plain = [r["student"] for r in rs if r["method"] == "none"]
        p0 = statistics.mean(plain) if plain else None
        lines += [f"Full table at `{name}` (seeds {sorted(seeds)}; top-1 on the LQ test split, mean ± std, n; "
                  "gap closed against the plain student's mean, towards the teacher on HQ and towards the best "
                  "ceiling):", "",
                  "| model | top-1 | ± s.e. | gap closed (teacher HQ) | gap closed (ceiling) | − kd (same seeds) | "
                  "epochs | steps | unlabeled clips | wall s/step | conflicts revised |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        lines.append(f"| teacher on HQ | {thq:.3f} | | | | | | | | | |")
        lines.append(f"| teacher on LQ | {rs[0]['teacher_lq']:.3f} | | | | | | | | | |")
        kd_by_seed = {r["seed"]: r["student"] for r in rs if r["method"] == "kd" and r["revision"] == "none"}
        for k, v in sorted(cs.items()):
            label = {"lq_full_width": "ceiling: teacher-width model trained on LQ, all labels",
                     "teacher_tuned_on_lq": "ceiling: teacher fine-tuned on LQ, all labels"}.get(k, k)
            lines.append(f"| {label} (seed 0) | {v:.3f} | | | | | | | | | |")
        # Variants beyond the fixed rows (e.g. skd+mix=mixup), after them.
        extra = sorted({(r["method"], r["revision"]) for r in rs if r["method"] != "none"} - set(TABLE_METHODS))
        for method, rev in TABLE_METHODS + extra:
            # A plain student has nothing to revise: its runs record revision "none".
            sel = [r for r in rs if r["method"] == method and (r["revision"] == rev or method == "none")]
            if not sel:
                continue
            label = {"none": "student, labels only"}.get(method, f"student, {method}") + \
                (f" (revision {rev})" if method != "none" and rev != "none" else
                 " (no revision)" if method.startswith("skd") else "")
            conf = ""
            if sel[0]["revision_stats"]:
                conf = ", ".join(f"{k.split('/')[1]} {statistics.mean(r['revision_stats'].get(k, 0) for r in sel):.0%}"
                                 for k in sel[0]["revision_stats"])
            vals = [r["student"] for r in sel]
            mu = statistics.mean(vals)
            se = f"{statistics.stdev(vals) / len(vals) ** 0.5:.3f}" if len(vals) > 1 else ""
            g_t = f"{(mu - p0) / (thq - p0):.0%}" if p0 is not None and thq - p0 > 0.005 else ""
            g_c = f"{(mu - p0) / (top - p0):.0%}" if p0 is not None and top is not None and top - p0 > 0.005 else ""
            steps = [r["sec_per_step"] for r in sel if r["sec_per_step"]]
            lines.append(f"| {label} | {mean_std(vals)} | {se} | {g_t} | {g_c} | {vs_kd(sel, kd_by_seed)} | "
                         f"{sel[0]['epochs']} | "
                         f"{sel[0]['steps']} | {sel[0]['n_unlabeled']} | {statistics.mean(steps):.3f} | {conf} |")
        lines.append("")
    _plot(out / "severity.png", by_spec)
    return "\n".join(lines)


def vs_kd(sel: list[dict], kd_by_seed: dict[int, float]) -> str:
    """Mean difference to kd over the seeds both have, ± its standard error (paired by seed), and n."""
    d = [r["student"] - kd_by_seed[r["seed"]] for r in sel if r["seed"] in kd_by_seed]
    if not d or sel[0]["method"] == "kd":
        return ""
    if len(d) == 1:
        return f"{d[0]:+.3f} (n=1)"
    return f"{statistics.mean(d):+.3f} ± {statistics.stdev(d) / len(d) ** 0.5:.3f} (n={len(d)})"


def _plot(path: Path, by_spec: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    specs = list(by_spec)
    x = range(len(specs))

    def pick(rs, method=None, rev="global", key="student"):
        vals = [r[key] for r in rs if r["seed"] == 0 and (method is None or (
            r["method"] == method and (r["revision"] == rev or method == "none")))]
        return vals[0] if vals else float("nan")

    fig, ax = plt.subplots(figsize=(11, 4.5))
    ax.plot(x, [pick(by_spec[s], key="teacher_hq") for s in specs], "o-", label="teacher on HQ")
    ax.plot(x, [pick(by_spec[s], key="teacher_lq") for s in specs], "o-", label="teacher on LQ")
    ax.plot(x, [pick(by_spec[s], "none") for s in specs], "s-", label="student, labels only (LQ)")
    ax.plot(x, [pick(by_spec[s], "skd-authors") for s in specs], "v-", label="student, authors' SKD (LQ)")
    ax.plot(x, [pick(by_spec[s], "skd", "tail") for s in specs], "^-", label="student, skd default (LQ)")
    ax.set_xticks(list(x))
    ax.set_xticklabels([display(s).replace("models/zoo/lq_profile_", "").replace(".json", "").replace(",", "\n")
                        for s in specs],
                       fontsize=7)
    ax.set_ylabel("top-1, Penn Action test split")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_savefig(fig, path)  # (closes it)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["severity", "table", "ceiling", "report"])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "distill_sweep")
    ap.add_argument("--hq", type=Path, default=None,
                    help="an HQ pyskl pickle with train/test splits to use instead of Penn Action")
    ap.add_argument("--dev", action="store_true",
                    help="report on a held-out quarter of the train split instead of the test split (to choose "
                         "variants); put the teacher trained on the whole train split in OUT/teacher first")
    ap.add_argument("--specs", default=None, help="';'-separated corruption specs (default: the severity list)")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--methods", default=None,
                    help="e.g. none/none,skd/tail,kd+mix=mixup/none,skd+xclip=1/tail: "
                         "method[+option=value...]/revision; options: mix, mix_alpha, any --weights key "
                         "(default: all table rows)")
    ap.add_argument("--steps", type=int, default=None,
                    help="the same optimizer steps for every run [pipeline distill's default, unless --epochs]")
    ap.add_argument("--epochs", type=int, default=None, help="epochs instead of steps (each method its own steps)")
    ap.add_argument("--no-unlabeled", action="store_true", help="no unlabeled pairs (the train rest) for any run")
    ap.add_argument("--tune-epochs", type=int, default=10, help="epochs of the teacher's fine-tuning on LQ")
    ap.add_argument("--teacher-epochs", type=int, default=30)
    ap.add_argument("--teacher-width", type=float, default=0.5)
    ap.add_argument("--student-width", type=float, default=0.25)
    ap.add_argument("--train-fraction", type=float, default=0.2)
    ap.add_argument("--length", type=int, default=32)
    ap.add_argument("--features", default="joint,bone")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--tau", type=float, default=None, help="[default: each method's]")
    ap.add_argument("--weights", default="")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()

    from models.training.runtime import configure_cpu
    configure_cpu(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.stage == "report":
        print(report(args.out))
        return
    if args.epochs is None and args.steps is None:
        from models.training.policy import DEFAULT_STEPS
        args.steps = DEFAULT_STEPS
    budget = f"{args.steps} steps each" if args.steps else f"{args.epochs} epochs"
    setting = (f"teacher width {args.teacher_width} ({args.teacher_epochs} epochs, full HQ train split); student "
               f"width {args.student_width}, {budget}, labels of {args.train_fraction:.0%} of the train clips "
               f"(stratified){'' if args.no_unlabeled else ', the rest unlabeled pairs for distillation methods'}; "
               f"T={args.length}, features {args.features}; tau {args.tau or 'per method'}; weights "
               f"'{args.weights or 'per method'}'; machine {platform.machine()} {platform.node()}, "
               f"{datetime.date.today()}")
    if args.stage != "ceiling":
        atomic_write_text(args.out / "sweep_config.json",
                          json.dumps({"setting": setting, "argv": sys.argv}, indent=2))
    hq = ensure_data(args.out, args.hq)
    if args.dev:
        hq = make_dev(hq, args.out)
    teacher = ensure_teacher(args.out, hq, args)
    specs = args.specs.split(";") if args.specs else [s for _, s in SEVERITIES]
    if args.stage == "ceiling":
        for spec in specs:
            ceiling(args.out, hq, teacher, spec, args)
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.methods:
        methods = [tuple(m.split("/")) for m in args.methods.split(",")]
    else:
        methods = SEVERITY_METHODS if args.stage == "severity" else TABLE_METHODS
    for spec in specs:
        for seed in seeds:
            for method, rev in methods:
                one_run(args.out, hq, teacher, spec, method, rev, seed, args)
    print(report(args.out))


if __name__ == "__main__":
    main()
