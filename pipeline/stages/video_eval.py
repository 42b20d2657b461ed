"""`pipeline eval --videos LABELS.csv`: how well `pipeline run` labels a set of labelled real videos.

Each clip goes through `run`'s own code (`run_session` + `run_video`: the same estimator, model, windows and
open-set rule as `pipeline run CLIP --json` with the same options). A row whose label is one of the model's
classes is an in-class clip: top-1, top-3, per class and the confusion matrix count it, and the open-set rule
should keep it. Any other label (`other`, or an action the model does not know) marks a clip the rule should
flag. A clip that fails (unreadable, no person) is reported with its reason and counted; the others go on.

Metrics (in-class clips only for accuracy): top-1, top-3, per-class accuracy and its mean over the classes
present; the flag's kept fraction of in-class clips and accepted fraction of other clips; the AUROC of the
flag's score (the clip's open-set "distance": the rule's score, an energy for an energy rule; the summary's
"flag" names the rule's kind) and, for reference, of 1 - max softmax, in-class against other.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from estimators.base import PoseEstimator
from models.contract.errors import BadInput, notice
from pipeline.data.labels import LabelRow, read_labels
from pipeline.infer.prediction import ModelInfo, RunOptions, VideoRun, said, top_labels
from pipeline.infer.runner import run_session, run_video

OTHER = "other"  # the label that says "none of the model's actions" (so does any label the model lacks)
TOPK = 3


@dataclass
class ClipOutcome:
    """One row of the labels file after its run: `run` is None when the clip failed (`error` says why)."""

    row: LabelRow
    name: str                  # the video as the CSV names it
    in_class: bool
    run: VideoRun | None = None
    error: str | None = None


@dataclass
class VideoEval:
    result: dict                 # {"summary", "clips"}: what --json prints
    outcomes: list[ClipOutcome]  # in the CSV's order, with each run (for the report)
    info: ModelInfo


def select_rows(labels_csv: str | os.PathLike, split: str | None) -> list[LabelRow]:
    """The CSV's rows (of `split` when given); BadInput for an unknown split or a video listed twice."""
    rows = read_labels(labels_csv)
    if split is not None:
        splits = sorted({r.split for r in rows if r.split is not None})
        if not splits:
            raise BadInput(f"--split {split}: the labels have no split column (video,label,split)", labels_csv)
        rows = [r for r in rows if r.split == split]
        if not rows:
            raise BadInput(f"no row has split {split!r} (the splits are {', '.join(splits)})", labels_csv)
    first: dict[Path, int] = {}
    for r in rows:
        key = Path(os.path.abspath(r.video))
        if key in first:
            raise BadInput(f"line {r.line}: {r.video.name} is listed already on line {first[key]}", labels_csv)
        first[key] = r.line
    return rows


def evaluate_videos(labels_csv: str | os.PathLike, opts: RunOptions, split: str | None = None,
                    progress: bool = False, estimator: PoseEstimator | None = None) -> VideoEval:
    """Run every selected clip as `pipeline run` does, and score the lot (see `summarise`)."""
    rows = select_rows(labels_csv, split)
    base = Path(labels_csv).parent
    outcomes: list[ClipOutcome] = []
    with run_session(opts, estimator) as (est, predictor, fallback_note):
        if fallback_note is not None:
            notice(fallback_note)
        classes = list(predictor.info.classes)
        has_rule = predictor.info.open_set is not None
        for r in _bar(rows, progress):
            c = ClipOutcome(r, _as_listed(r.video, base), r.label in classes)
            try:
                c.run = run_video(r.video, est, predictor, opts)
            except BadInput as e:
                c.error = str(e)
            outcomes.append(c)
        pose = {"estimator": est.name, **est.settings()}
    result = summarise(outcomes, classes, has_rule)
    result["summary"].update(model=predictor.info.source, pose=pose)
    if has_rule:
        result["summary"]["flag"] |= {"rule": predictor.info.open_set.kind,
                                      "threshold": round(predictor.info.open_set.threshold, 2)}
    return VideoEval(result, outcomes, predictor.info)


def _as_listed(video: Path, base: Path) -> str:
    """The video as the CSV names it: relative to the CSV's folder, or the absolute path it gave."""
    try:
        return str(video.relative_to(base))
    except ValueError:
        return str(video)


def _bar(rows: list[LabelRow], show: bool):
    if not show:
        return rows
    from tqdm import tqdm

    # disable=None: a bar on a terminal only (stderr), so --json output and logs stay clean.
    return tqdm(rows, desc="clips", unit="clip", disable=None, leave=False, dynamic_ncols=True, file=sys.stderr)


# ------------------------------------------------------------------------------------------------ per clip

def clip_record(c: ClipOutcome, classes: list[str]) -> dict:
    """The JSON of one clip: its label, the run's top-3, rank of the true class, verdict and scores."""
    rec: dict = {"video": c.name, "label": c.row.label, "split": c.row.split, "in_class": c.in_class}
    if c.run is None:
        rec["error"] = c.error
        return rec
    probs = c.run.result.overall
    verdict = c.run.record.get("open_set")
    rec["top"] = top_labels(probs, classes, TOPK)
    rec["correct"] = rec["top"][0]["label"] == c.row.label if c.in_class else None
    rec["rank"] = 1 + int((probs > probs[classes.index(c.row.label)]).sum()) if c.in_class else None
    rec["known"] = None if verdict is None else verdict["known"]
    rec["flag_score"] = None if verdict is None else verdict["distance"]
    rec["max_softmax"] = round(float(probs.max()), 4)
    rec["verdict"] = said(rec["top"], rec["known"])
    rec["mistake"] = mistake(rec)
    rec["frames"] = c.run.record["frames"]
    return rec


def mistake(rec: dict) -> bool:
    """In-class: a wrong top-1 or a flag. Other action: accepted as one of the model's (not flagged)."""
    if rec["in_class"]:
        return not rec["correct"] or rec["known"] is False
    return rec["known"] is not False


# ------------------------------------------------------------------------------------------------- summary

def in_class_metrics(inc: list[dict], classes: list[str]) -> dict:
    """Top-1, top-3 and per class over in-class clip records."""
    per_class = {}
    for k in classes:
        mine = [r for r in inc if r["label"] == k]
        if mine:
            per_class[k] = {"n": len(mine), "top1": _frac(sum(r["correct"] for r in mine), len(mine))}
    return {"n": len(inc), "top1": _frac(sum(r["correct"] for r in inc), len(inc)),
            "top3": _frac(sum(r["rank"] <= TOPK for r in inc), len(inc)),
            "per_class": per_class,
            "per_class_mean": (round(float(np.mean([v["top1"] for v in per_class.values()])), 4)
                               if per_class else None)}


def summarise(outcomes: list[ClipOutcome], classes: list[str], has_rule: bool) -> dict:
    recs = [clip_record(c, classes) for c in outcomes]
    ok = [r for r in recs if "error" not in r]
    inc = [r for r in ok if r["in_class"]]
    oth = [r for r in ok if not r["in_class"]]
    foreign = Counter(r.row.label for r in outcomes if not r.in_class and r.row.label != OTHER)
    summary = {
        "clips": len(recs), "evaluated": len(ok), "failed": len(recs) - len(ok),
        "in_class": in_class_metrics(inc, classes),
        "other": {"n": len(oth), "labels_not_in_model": dict(sorted(foreign.items()))},
        "flag": flag_metrics(inc, oth) if has_rule else None,
        "confusion": confusion(ok, classes),
        "classes": classes,
    }
    # With a split column (e.g. dev / val), the same numbers per split: a threshold set on one is judged on another.
    splits = sorted({r["split"] for r in ok if r.get("split")})
    if len(splits) > 1:
        summary["by_split"] = {
            sp: {"in_class": in_class_metrics([r for r in inc if r.get("split") == sp], classes),
                 "other": {"n": sum(r.get("split") == sp for r in oth)},
                 "flag": (flag_metrics([r for r in inc if r.get("split") == sp],
                                       [r for r in oth if r.get("split") == sp]) if has_rule else None)}
            for sp in splits}
    return {"summary": summary, "clips": recs}


def flag_metrics(inc: list[dict], oth: list[dict]) -> dict:
    """The open-set flag on in-class (should be kept) and other clips (should be flagged)."""
    def scores(rs: list[dict], key: str) -> np.ndarray:
        return np.array([r[key] for r in rs if r[key] is not None], dtype=np.float64)

    return {"in_class_kept": _frac(sum(r["known"] is True for r in inc), len(inc)),
            "other_accepted": _frac(sum(r["known"] is True for r in oth), len(oth)),
            "auroc": auroc(scores(inc, "flag_score"), scores(oth, "flag_score")),
            "max_softmax_auroc": auroc(-scores(inc, "max_softmax"), -scores(oth, "max_softmax"))}


def auroc(negative: np.ndarray, positive: np.ndarray) -> float | None:
    """P(a positive scores above a negative), ties half (Mann-Whitney U / (n_neg n_pos)); None when a side is
    empty. Here positives are other-action clips and the score says "unknown"."""
    if not len(negative) or not len(positive):
        return None
    both = np.concatenate([negative, positive])
    order = both.argsort(kind="stable")
    ranks = np.empty(len(both))
    ranks[order] = np.arange(1, len(both) + 1)
    for v in np.unique(both):  # tied scores share their mean rank
        tie = both == v
        ranks[tie] = ranks[tie].mean()
    u = ranks[len(negative):].sum() - len(positive) * (len(positive) + 1) / 2
    return round(float(u / (len(negative) * len(positive))), 4)


def confusion(recs: list[dict], classes: list[str]) -> dict:
    """Top-1 counts: rows are the true classes present (and `other` for every other-action clip), columns the
    model's classes."""
    rows = [k for k in classes if any(r["label"] == k for r in recs)]
    if any(not r["in_class"] for r in recs):
        rows.append(OTHER)
    m = np.zeros((len(rows), len(classes)), dtype=np.int64)
    for r in recs:
        m[rows.index(r["label"] if r["in_class"] else OTHER), classes.index(r["top"][0]["label"])] += 1
    return {"rows": rows, "columns": list(classes), "matrix": m.tolist()}


def _frac(k: int, n: int) -> float | None:
    return round(k / n, 4) if n else None


def pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def split_summary(m: dict) -> str:
    """One split's numbers (`summary["by_split"][name]`) on one line, for the text and the page."""
    inc, fl = m["in_class"], m["flag"]
    line = (f"in-class {inc['n']} top-1 {pct(inc['top1'])} top-3 {pct(inc['top3'])} per-class mean "
            f"{pct(inc['per_class_mean'])}; other {m['other']['n']}")
    if fl is not None:
        line += (f"; kept {pct(fl['in_class_kept'])}, other accepted {pct(fl['other_accepted'])}, "
                 f"AUROC {pct(fl['auroc'])}")
    return line


def format_summary(result: dict) -> str:
    """The text report: accuracy, the flag, per class, the failed clips."""
    s = result["summary"]
    inc, oth, flag = s["in_class"], s["other"], s["flag"]
    lines = [f"{s['evaluated']} of {s['clips']} clips evaluated ({s['failed']} failed); model {s['model']}, "
             f"pose {s['pose'].get('estimator')} {s['pose'].get('model', '')}".rstrip(),
             f"in-class clips {inc['n']}: top-1 {pct(inc['top1'])}  top-3 {pct(inc['top3'])}  "
             f"per-class mean {pct(inc['per_class_mean'])}"]
    if flag is None:
        lines.append(f"other-action clips {oth['n']}; the model has no open-set rule, so nothing is flagged")
    else:
        rule = f" ({flag['rule']})" if flag.get("rule") else ""
        lines.append(f"other-action clips {oth['n']}; flag{rule}: in-class kept {pct(flag['in_class_kept'])}, "
                     f"other accepted {pct(flag['other_accepted'])}, AUROC {pct(flag['auroc'])} "
                     f"(max softmax {pct(flag['max_softmax_auroc'])})")
    if oth["labels_not_in_model"]:
        lines.append("labels the model does not have, counted as other actions: "
                     + ", ".join(f"{k} ({n})" for k, n in oth["labels_not_in_model"].items()))
    for sp, m in s.get("by_split", {}).items():
        lines.append(f"  split {sp}: {split_summary(m)}")
    if inc["per_class"]:
        lines.append("per class: " + ", ".join(f"{k} {v['top1']:.2f} ({v['n']})" for k, v in inc["per_class"].items()))
    for r in result["clips"]:
        if "error" in r:
            lines.append(f"failed: {r['video']}: {r['error']}")
    return "\n".join(lines)
