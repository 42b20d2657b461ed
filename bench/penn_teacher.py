"""Penn Action teacher benchmark: ST-GCN on ground-truth skeletons (HQ), official train/test split.

    python bench/penn_teacher.py --epochs 40            # ~10-30 min on 2 CPU cores, depending on load

Imports Penn Action from ../shared/data/penn_action/labels (or --labels), trains with `pipeline train`'s code,
reports test top-1/top-5 (fractions, on the official test split) and the training time, and writes them as JSON
(--json-out) together with the exact command, machine and date, for docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_LABELS = ROOT.parent / "shared" / "data" / "penn_action" / "labels"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labels", type=Path, default=DEFAULT_LABELS, help="Penn Action labels folder (.mat files)")
    ap.add_argument("--out", type=Path, default=None, help="run folder (default: a temporary folder)")
    ap.add_argument("--json-out", type=Path, default=None, help="write the results here as JSON")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--length", type=int, default=32)
    ap.add_argument("--features", default="joint,bone")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--test-clips", type=int, default=3)
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--no-flip", action="store_true")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    args = ap.parse_args()

    from models.net.transforms import InputConfig
    from models.training.config import TrainConfig
    from models.training.runtime import configure_cpu
    from pipeline.data.catalog import import_dataset
    from pipeline.stages.training import ModelOptions, TrainRequest, train_from_dataset

    cpu = configure_cpu(args.threads)
    if not args.labels.is_dir():
        sys.exit(f"Penn Action labels not found at {args.labels} (pass --labels)")
    t0 = time.perf_counter()
    ds = import_dataset("penn-action", args.labels)
    import_s = time.perf_counter() - t0
    req = TrainRequest(
        TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                    warmup_epochs=args.warmup, label_smoothing=args.label_smoothing, seed=args.seed,
                    eval_every=args.eval_every, num_test_clips=args.test_clips, precision=args.precision),
        InputConfig(length=args.length, features=tuple(args.features.split(",")), aug_flip=not args.no_flip),
        ModelOptions(width=args.width, depth=args.depth, dropout=args.dropout))
    out = args.out or Path(tempfile.mkdtemp(prefix="penn_teacher_"))
    t0 = time.perf_counter()
    metrics = train_from_dataset(ds, out, req, data_path=str(args.labels), resume=args.resume,
                                 overwrite=not args.resume, progress=True)
    wall = time.perf_counter() - t0
    result = {
        "benchmark": "penn_action_teacher",
        "command": "python bench/penn_teacher.py " + " ".join(sys.argv[1:]),
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()} {_cpu_name()}, {os.cpu_count()} cores, torch threads {cpu['threads']}",
        "torch": __import__("torch").__version__,
        "train_clips": len(ds.split["train"]), "test_clips": len(ds.split["test"]),
        "test_top1": metrics["test_top1"], "test_top5": metrics["test_top5"],
        "epochs": metrics["epochs"], "train_seconds": metrics["train_seconds"], "wall_seconds": round(wall, 1),
        "import_seconds": round(import_s, 1), "params": metrics["params"],
        "input_config": metrics["input_config"], "model_config": metrics["model_config"],
        "train_config": metrics["train_config"], "run_dir": str(out),
    }
    print(json.dumps(result, indent=2))
    print(f"\nPenn Action (official split) teacher: test top-1 {result['test_top1']:.4f}, top-5 "
          f"{result['test_top5']:.4f}, training {result['train_seconds'] / 60:.1f} min "
          f"({result['epochs']} epochs, {result['params'] / 1e6:.2f} M params)")
    if args.json_out:
        from models.contract.atomic import atomic_write_text
        atomic_write_text(args.json_out, json.dumps(result, indent=2) + "\n")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"


if __name__ == "__main__":
    main()
