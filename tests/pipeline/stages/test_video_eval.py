"""`pipeline.stages.video_eval` and its report: the scores on hand-made runs (no video), the AUROC, the labels
file's rows, and the HTML page (escaping, order, the clips drawn as WebM)."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from models.contract.errors import BadInput
from pipeline.data.labels import LabelRow
from pipeline.stages.eval_report import outcome, page_html
from pipeline.stages.video_eval import ClipOutcome, auroc, format_summary, select_rows, summarise

CLASSES = ["jump", "squat", "wave"]


def fake(label: str, probs: list[float], known: bool | None, distance: float | None = None,
         split: str | None = None) -> ClipOutcome:
    """A clip and the parts of its `VideoRun` the scoring reads (overall probabilities, the open-set record)."""
    record = {"frames": 30}
    if known is not None:
        record["open_set"] = {"known": known, "distance": distance, "threshold": 5.0}
    run = SimpleNamespace(result=SimpleNamespace(overall=np.array(probs)), record=record)
    return ClipOutcome(LabelRow(Path(f"{label}.mp4"), label, split, 1), f"{label}.mp4", label in CLASSES, run)


def test_auroc_counts_pairs_and_halves_ties():
    assert auroc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 1.0
    assert auroc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 0.0
    assert auroc(np.array([1.0, 1.0]), np.array([1.0])) == 0.5
    assert auroc(np.array([]), np.array([1.0])) is None
    rng = np.random.default_rng(0)
    for _ in range(20):
        neg, pos = rng.integers(0, 5, rng.integers(1, 9)).astype(float), rng.integers(0, 5, rng.integers(1, 9))
        pairs = [(p > n) + 0.5 * (p == n) for n, p in itertools.product(neg, pos)]
        assert auroc(neg, pos.astype(float)) == pytest.approx(np.mean(pairs), abs=1e-4)


def test_scores_on_hand_made_runs():
    clips = [fake("jump", [0.7, 0.2, 0.1], True, 1.0),      # right, kept
             fake("jump", [0.2, 0.3, 0.5], True, 2.0),      # wrong (wave), jump is 3rd -> still top-3
             fake("squat", [0.1, 0.8, 0.1], False, 9.0),    # right but flagged
             fake("other", [0.1, 0.1, 0.8], False, 8.0),    # rightly flagged
             fake("golf", [0.6, 0.3, 0.1], True, 1.5)]      # a label the model lacks: accepted
    failed = ClipOutcome(LabelRow(Path("x.mp4"), "wave", None, 9), "x.mp4", True, None, "x.mp4: file not found")
    res = summarise(clips + [failed], CLASSES, has_rule=True)
    s = res["summary"]
    assert (s["clips"], s["evaluated"], s["failed"]) == (6, 5, 1)
    assert s["in_class"]["n"] == 3 and s["in_class"]["top1"] == round(2 / 3, 4) and s["in_class"]["top3"] == 1.0
    assert s["in_class"]["per_class"] == {"jump": {"n": 2, "top1": 0.5}, "squat": {"n": 1, "top1": 1.0}}
    assert s["in_class"]["per_class_mean"] == 0.75
    assert s["other"] == {"n": 2, "labels_not_in_model": {"golf": 1}}
    flag = s["flag"]
    assert flag["in_class_kept"] == round(2 / 3, 4) and flag["other_accepted"] == 0.5
    # Distances: in-class 1, 2, 9; other 8, 1.5 -> pairs (other above in-class): 8>1,8>2, 1.5>1 = 3 of 6.
    assert flag["auroc"] == 0.5
    assert s["confusion"] == {"rows": ["jump", "squat", "other"], "columns": CLASSES,
                              "matrix": [[1, 0, 1], [0, 1, 0], [1, 0, 1]]}
    recs = res["clips"]
    assert [r["mistake"] for r in recs[:5]] == [False, True, True, False, True]
    assert recs[2]["verdict"] == "not a known action (closest: squat 0.80)" and recs[0]["verdict"] == "jump (0.70)"
    assert recs[1]["rank"] == 3 and recs[4]["rank"] is None and recs[5]["error"] == "x.mp4: file not found"
    # No rule: nothing to flag, no flag numbers.
    assert summarise([fake("jump", [0.7, 0.2, 0.1], None)], CLASSES, has_rule=False)["summary"]["flag"] is None


def test_numbers_per_split_beside_the_whole():
    clips = [fake("jump", [0.7, 0.2, 0.1], True, 1.0, "dev"), fake("squat", [0.6, 0.3, 0.1], False, 9.0, "dev"),
             fake("other", [0.1, 0.1, 0.8], False, 8.0, "dev"),
             fake("wave", [0.1, 0.1, 0.8], True, 3.0, "val"), fake("other", [0.3, 0.3, 0.4], True, 2.0, "val")]
    s = summarise(clips, CLASSES, has_rule=True)["summary"]
    assert s["in_class"]["top1"] == round(2 / 3, 4)
    dev, val = s["by_split"]["dev"], s["by_split"]["val"]
    assert dev["in_class"]["n"] == 2 and dev["in_class"]["top1"] == 0.5 and dev["in_class"]["top3"] == 1.0
    assert dev["in_class"]["per_class_mean"] == 0.5 and dev["other"] == {"n": 1}
    assert dev["flag"]["in_class_kept"] == 0.5 and dev["flag"]["other_accepted"] == 0.0
    assert dev["flag"]["auroc"] == 0.5  # other 8 above in-class 1, below 9
    assert val["in_class"]["top1"] == 1.0 and val["flag"]["other_accepted"] == 1.0 and val["flag"]["auroc"] == 0.0
    text = format_summary({"summary": s | {"model": "m.pt", "pose": {"estimator": "blazepose"}}, "clips": []})
    assert "  split dev: in-class 2 top-1 0.500" in text and "  split val: in-class 1 top-1 1.000" in text
    page = page_html({"summary": s | {"model": "m.pt", "pose": {"estimator": "blazepose"}}, "clips": []}, [], "eval")
    assert "<td>split dev</td>" in page and "other accepted 1.000, AUROC 0.000" in page  # val's line
    # One split (or none): no breakdown.
    assert "by_split" not in summarise(clips[:3], CLASSES, has_rule=True)["summary"]


def test_rows_split_and_duplicates(tmp_path: Path):
    csv = tmp_path / "labels.csv"
    csv.write_text("video,label,split\na.mp4,jump,dev\nb.mp4,other,val\nc.mp4,squat,dev\n")
    assert [r.video.name for r in select_rows(csv, "dev")] == ["a.mp4", "c.mp4"]
    assert len(select_rows(csv, None)) == 3
    with pytest.raises(BadInput, match=r"no row has split 'test' \(the splits are dev, val\)"):
        select_rows(csv, "test")
    csv.write_text("a.mp4,jump\nsub/../a.mp4,squat\n")
    with pytest.raises(BadInput, match="line 2: a.mp4 is listed already on line 1"):
        select_rows(csv, None)
    with pytest.raises(BadInput, match="no split column"):
        select_rows(csv, "dev")


def test_page_escapes_what_it_echoes_and_puts_mistakes_first():
    evil = "<script>alert(1)</script>"
    clips = [fake("jump", [0.7, 0.2, 0.1], True, 1.0), fake(evil, [0.1, 0.1, 0.8], True, 2.0),
             fake("other", [0.1, 0.8, 0.1], False, 9.0)]
    res = summarise(clips, CLASSES, has_rule=True)
    res["summary"].update(model="m.pt", pose={"estimator": "x"}, flag={**res["summary"]["flag"], "threshold": 5.0})
    page = page_html(res, [(r, f"clips/{i:04d}.webm") for i, r in enumerate(res["clips"])], f"eval {evil}")
    assert evil not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<script>") == 1  # the page's own player script only
    # Mistakes (the accepted other action), then the rightly flagged one, then the right one.
    assert page.index("clips/0001.webm") < page.index("clips/0002.webm") < page.index("clips/0000.webm")
    assert [outcome(r)[2] for r in res["clips"]] == ["right", "accepted (should be flagged)",
                                                      "flagged (right: not one of the model's actions)"]
    assert "http" not in page  # nothing is loaded from the network


def test_the_text_and_the_page_name_the_rule_kind():
    """`evaluate_videos` adds the rule's kind to "flag"; for an energy rule the flag score is an energy (negative
    here), and the report says which rule it is."""
    res = summarise([fake("jump", [0.7, 0.2, 0.1], True, -9.5), fake("other", [0.4, 0.3, 0.3], False, -1.2)],
                    CLASSES, has_rule=True)
    res["summary"].update(model="m.pt", pose={"estimator": "x"}, failed=0,
                          flag={**res["summary"]["flag"], "rule": "energy", "threshold": -5.0})
    assert res["summary"]["flag"]["auroc"] == 1.0  # the other clip's energy is the higher
    assert "flag (energy): in-class kept 1.000, other accepted 0.000, AUROC 1.000" in format_summary(res)
    page = page_html(res, [(r, None) for r in res["clips"]], "eval")
    assert "<td>unknown-action flag (energy)</td>" in page and "flag score -1.2 (threshold -5.0)" in page
