"""Top-1 of a student on real videos of its own classes, each run as `pipeline run` runs it.

    python bench/real_clips.py --clips DIR --model CKPT [--label NAME] [--json OUT] [--threads 1]

What it measures: the student is trained on annotated skeletons with simulated fast-estimator noise; this asks
whether it labels the fast estimator's output on real footage of the same actions. For every clip listed in
bench/real_clips.json (public demo media of public repositories: one person doing one Penn Action class) the
video goes through the same path as `pipeline run CLIP --json --model CKPT` (the fast estimator's low tier,
the student, the model's open-set rule; all clips in one call, like `pipeline run A B C`). Printed: a markdown
table with the true class, the predicted top-1 and its score, the rank of the true class among the model's
classes (1 = top-1) and whether the open-set rule called the clip unknown; then top-1 accuracy, mean rank and a
per-class line. `--json` writes the same rows.

Getting the clips: they are not shipped (third-party footage, most with no licence stated). Each manifest entry
names the repository, the path and the commit it came from, the sha256 of the file as used here and, in
"note", the seconds it was cut to (cut clips were re-encoded to H.264 without audio at the source's frame
rate; uncut H.264 mp4 files are the repository's bytes, so their sha256 equals "source_sha256"). Fetch the
file at that commit (`git show COMMIT:PATH`), cut it as the note says and save it in DIR under the manifest's
"file" name. A file that is missing or whose sha256 differs is reported and left out, never guessed at.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from estimators.base import native_stderr_quiet
from estimators.weights import sha256_of
from models.contract.atomic import atomic_write_text
from models.contract.errors import BadInput
from pipeline.infer.pose_choice import fast_estimator
from pipeline.infer.prediction import RunOptions, VideoRun
from pipeline.infer.runner import run_videos

MANIFEST = Path(__file__).with_name("real_clips.json")
FIELDS = ("file", "class", "repo", "path", "commit", "sha256", "licence", "seconds", "note")


@dataclass(frozen=True)
class Entry:
    file: str
    label: str
    repo: str
    path: str
    commit: str
    sha256: str


def load_manifest(path: Path) -> list[Entry]:
    """The manifest's entries; BadInput when it is not a list of objects with every field."""
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise BadInput(f"cannot read the manifest: {e}", path) from None
    if not isinstance(rows, list):
        raise BadInput("the manifest is not a JSON list", path)
    out = []
    for i, r in enumerate(rows):
        missing = [f for f in FIELDS if not isinstance(r, dict) or f not in r]
        if missing:
            raise BadInput(f"entry {i} lacks {', '.join(missing)}", path)
        out.append(Entry(r["file"], r["class"], r["repo"], r["path"], r["commit"], r["sha256"]))
    return out


def check_files(entries: list[Entry], clips: Path) -> tuple[list[Entry], list[str]]:
    """The entries whose file is in `clips` with the manifest's sha256, and one line per one that is not."""
    ok, problems = [], []
    for e in entries:
        f = clips / e.file
        if not f.is_file():
            problems.append(f"missing: {e.file} ({e.repo}:{e.path} at {e.commit[:12]})")
        elif sha256_of(f) != e.sha256:
            problems.append(f"different sha256: {e.file}")
        else:
            ok.append(e)
    return ok, problems


def row_of(entry: Entry, run: VideoRun, classes: list[str]) -> dict:
    """One clip's result. Rank: 1 + the number of classes scored above the true one (None: not a class of the
    model)."""
    probs = run.result.overall
    top = int(np.argmax(probs))
    rank = None
    if entry.label in classes:
        rank = 1 + int((probs > probs[classes.index(entry.label)]).sum())
    verdict = run.record.get("open_set")
    return {"file": entry.file, "class": entry.label, "top1": classes[top], "score": round(float(probs[top]), 4),
            "rank": rank, "correct": classes[top] == entry.label,
            "open_set_known": None if verdict is None else verdict["known"],
            "frames": run.record["frames"], "persons": run.record["persons"]}


def summary(rows: list[dict]) -> dict:
    ranked = [r["rank"] for r in rows if r["rank"] is not None]
    n_ok = sum(r["correct"] for r in rows)
    return {"n": len(rows), "correct": n_ok, "accuracy": round(n_ok / len(rows), 4) if rows else None,
            "mean_rank": round(float(np.mean(ranked)), 2) if ranked else None,
            "flagged_unknown": sum(r["open_set_known"] is False for r in rows)}


def open_set_cell(known: bool | None) -> str:
    return {None: "no rule", True: "known", False: "**flagged**"}[known]


def markdown(rows: list[dict], n_classes: int) -> str:
    lines = [f"| clip | true class | top-1 (score) | rank of true (of {n_classes}) | open set |",
             "|---|---|---|---|---|"]
    for r in rows:
        mark = "" if r["correct"] else " ✗"
        rank = "not a class" if r["rank"] is None else str(r["rank"])
        lines.append(f"| {r['file']} | {r['class']} | {r['top1']} ({r['score']:.2f}){mark} | {rank} | "
                     f"{open_set_cell(r['open_set_known'])} |")
    s = summary(rows)
    if rows:
        lines.append(f"\ntop-1 {s['correct']}/{s['n']} = {s['accuracy']:.3f}; mean rank of the true class "
                     f"{s['mean_rank']}; flagged unknown by the open-set rule: {s['flagged_unknown']}/{s['n']}")
        per = {}
        for r in rows:
            per.setdefault(r["class"], []).append(r["correct"])
        lines.append("per class: " + ", ".join(f"{c} {sum(v)}/{len(v)}" for c, v in sorted(per.items())))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", required=True, type=Path, help="folder holding the manifest's files")
    ap.add_argument("--model", required=True, type=Path, help="student checkpoint (.pt)")
    ap.add_argument("--label", default=None, help="name of this run in the output [the model file's name]")
    ap.add_argument("--json", dest="json_out", type=Path, help="write the rows and the summary here")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads of the model part [1]")
    ap.add_argument("--manifest", type=Path, default=MANIFEST, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not args.clips.is_dir():
        raise BadInput("not a folder", args.clips)
    if not args.model.is_file():
        raise BadInput("no such checkpoint", args.model)
    label = args.label or args.model.name
    entries = load_manifest(args.manifest)
    usable, problems = check_files(entries, args.clips)
    for p in problems:
        print(f"skipped, {p}", file=sys.stderr)
    if not usable:
        raise BadInput("none of the manifest's clips is there with its sha256", args.clips)

    opts = RunOptions(model=args.model, topk=1, progress=False, threads=args.threads)
    est, _ = fast_estimator(opts.estimator, opts.pose_options)
    by_path = {str(args.clips / e.file): e for e in usable}
    try:
        done, failed = run_videos(list(by_path), opts, estimator=est)
        pose_settings = est.settings()
    finally:
        with native_stderr_quiet():
            est.close()
    for f in failed:
        print(f"failed: {f.video}: {f.reason}", file=sys.stderr)
    classes = list(done[0].extra["classes"]) if done else []
    order = {e.file: i for i, e in enumerate(usable)}
    rows = sorted((row_of(by_path[r.record["video"]], r, classes) for r in done), key=lambda r: order[r["file"]])

    now = datetime.datetime.now(datetime.timezone.utc)
    print(f"# bench/real_clips.py  {now:%Y-%m-%d %H:%M} UTC  {platform.platform()}  run {label!r}: "
          f"model {args.model.name} (sha256 {sha256_of(args.model)[:12]}), estimator {est.name} "
          f"{pose_settings.get('model', '')}; {len(rows)} of {len(entries)} clips "
          f"({len(problems)} missing or different, {len(failed)} failed)\n")
    print(markdown(rows, len(classes)))
    if args.json_out:
        out = {"label": label, "model": str(args.model), "model_sha256": sha256_of(args.model),
               "date": now.isoformat(timespec="seconds"), "pose": {"estimator": est.name, **pose_settings},
               "classes": classes, "summary": summary(rows), "rows": rows, "skipped": problems,
               "failed": [{"video": f.video, "reason": f.reason} for f in failed]}
        atomic_write_text(args.json_out, json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BadInput as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(2)
