"""bench/recipe23/source_folds.py: real clips split into folds by source repository, never one source in two."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("source_folds", ROOT / "bench" / "recipe23" / "source_folds.py")
source_folds = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(source_folds)


def test_folds_by_source_balanced_and_disjoint(tmp_path: Path):
    rows = ([("squat", "alice_gym", i) for i in range(5)] + [("pushup", "bob_fit", i) for i in range(3)]
            + [("squat", "carol_app", i) for i in range(2)] + [("other", "dan_misc", i) for i in range(2)]
            + [("golf_swing", "erin_golf", 0)])
    labels = tmp_path / "videos" / "labels.csv"
    labels.parent.mkdir()
    with labels.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "label", "split"])
        for label, src, i in rows:
            w.writerow([f"{label}__{src}__clip{i}.mp4", label, "dev"])
        w.writerow(["squat__val_only__clip0.mp4", "squat", "val"])
    assert source_folds.main(["--labels", str(labels), "--split", "dev", "--out", str(tmp_path / "f")]) == 0
    read = {name: list(csv.DictReader((tmp_path / "f" / f"{name}.csv").open()))
            for name in ("train0", "train1", "eval0", "eval1")}
    srcs = {k: {source_folds.source(r["video"]) for r in v} for k, v in read.items()}
    # Largest first, to the lighter fold: alice 5 -> 0; bob 3 -> 1; carol 2 -> 1 (5:5); erin 1 -> 0 on the tie.
    assert srcs["train0"] == {"alice_gym", "erin_golf"} and srcs["train1"] == {"bob_fit", "carol_app"}
    assert len(read["train0"]) == 6 and len(read["train1"]) == 5
    # Each eval file: the other fold's in-class clips and every other-action clip; never a clip of its own fold.
    assert srcs["eval0"] == {"bob_fit", "carol_app", "dan_misc"}
    assert srcs["eval1"] == {"alice_gym", "erin_golf", "dan_misc"}
    assert all(r["split"] == "dev" for v in read.values() for r in v)  # the val clip is in no file
    assert all(Path(r["video"]).is_absolute() and Path(r["video"]).parent == labels.parent
               for v in read.values() for r in v)
