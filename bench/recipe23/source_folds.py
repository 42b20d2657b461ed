"""Issue 23: split one split of the real-video labels into folds by source repository, for levers that learn from
real clips (outlier exposure, real labelled windows) and must be scored on clips of other sources.

    python bench/recipe23/source_folds.py --labels CLIPS/videos/labels.csv --split dev --folds 2 --out DIR

A clip's source is the repository in its file name (`label__owner_repo__path.mp4`, as
bench/real_videos/materialise.py names them). Sources go, largest first, to the fold with the fewest in-class
clips so far, so the folds are about equal and no repository is in two. Writes, per fold k, DIR/train{k}.csv (the
fold's in-class clips: what a lever may learn from) and DIR/eval{k}.csv (the in-class clips of the other folds and
every other-action clip of the split, none of which the lever saw), with the header `video,label,split`.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections import defaultdict
from pathlib import Path

from models.contract.atomic import atomic_write_text

OTHER = "other"


def source(video: str) -> str:
    parts = Path(video).name.split("__")
    return parts[1] if len(parts) > 2 else Path(video).stem


def folds_of(rows: list[dict], k: int) -> dict[str, int]:
    """Source -> fold: largest sources first, each to the fold with the fewest in-class clips so far."""
    size: dict[str, int] = defaultdict(int)
    for r in rows:
        size[source(r["video"])] += r["label"] != OTHER
    load = [0] * k
    out = {}
    for s in sorted(size, key=lambda s: (-size[s], s)):
        f = min(range(k), key=lambda i: (load[i], i))
        out[s] = f
        load[f] += size[s]
    return out


def write(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["video", "label", "split"])
    w.writerows([r["video"], r["label"], r["split"]] for r in rows)
    atomic_write_text(path, buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labels", required=True, type=Path)
    ap.add_argument("--split", default="dev")
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    rows = [r for r in csv.DictReader(args.labels.open()) if r["split"] == args.split]
    fold = folds_of(rows, args.folds)
    args.out.mkdir(parents=True, exist_ok=True)
    # Paths as the labels CSV has them, relative to its folder: the fold files live elsewhere, so make them absolute.
    base = args.labels.resolve().parent
    rows = [r | {"video": str(base / r["video"])} for r in rows]
    for k in range(args.folds):
        train = [r for r in rows if r["label"] != OTHER and fold[source(r["video"])] == k]
        held = [r for r in rows if r["label"] == OTHER or fold[source(r["video"])] != k]
        write(args.out / f"train{k}.csv", train)
        write(args.out / f"eval{k}.csv", held)
        print(f"fold {k}: {len(train)} in-class clips to learn from "
              f"({len({source(r['video']) for r in train})} sources); eval {len(held)} clips")
    return 0


if __name__ == "__main__":
    sys.exit(main())
