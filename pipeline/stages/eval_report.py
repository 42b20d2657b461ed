"""`pipeline eval --videos ... --report DIR`: one static HTML page a user opens in a browser (no server).

DIR/index.html lists the mistakes and flagged clips first (a wrong top-1, an in-class clip flagged unknown, an
other-action clip accepted; then other-action clips rightly flagged), then the right ones; each card has the
true label, the verdict, the top-3, the flag score and the clip with the skeleton and each window's banner drawn
as `pipeline run --render` draws them (DIR/clips/NNNN.webm: VP8, which the OpenCV in mediapipe's wheel writes
and browsers play, at most 320 px and 10 frames/s to stay small); then the confusion matrix
(DIR/confusion.png). DIR/report.json is `--json`'s object. The page loads nothing from the network; every label
and path it shows is HTML-escaped.
"""

from __future__ import annotations

import datetime
import html
import json
from pathlib import Path

import numpy as np

from estimators.base import native_stderr_quiet
from models.contract.atomic import atomic_write_text
from models.contract.errors import BadInput
from models.contract.layouts import Layout
from models.training.history import plot_confusion
from pipeline.extract.video import VideoReader
from pipeline.infer.prediction import VideoRun
from pipeline.infer.rendering import VideoOut, draw_caption, draw_skeleton, frame_windows, window_captions
from pipeline.stages.video_eval import OTHER, VideoEval, split_summary

MAX_SIDE = 320     # pixels: the rendered clips are for looking at, not for measuring
MAX_FPS = 10.0     # frames per second kept (OpenCV sets VP8 to width x height x fps bits/s: ~100 kB/s)


def write_report(out: Path, ev: VideoEval, title: str) -> Path:
    """Write DIR/index.html (+ clips/, confusion.png, report.json); the page's path."""
    out.mkdir(parents=True, exist_ok=True)
    result = ev.result
    s = result["summary"]
    conf = s["confusion"]
    if conf["rows"]:
        inc = s["in_class"]
        plot_confusion(out / "confusion.png", np.array(conf["matrix"]), conf["columns"], rows=conf["rows"],
                       title=f"top-1 of {s['evaluated']} clips (rows: true, columns: predicted); in-class top-1 "
                             + ("-" if inc["top1"] is None else f"{inc['top1']:.3f}"))
    classes = s["classes"]
    cards = []
    for i, (c, rec) in enumerate(zip(ev.outcomes, result["clips"])):
        media = None
        if c.run is not None:
            media = f"clips/{i:04d}.webm"
            try:
                render_clip(c.row.video, out / media, c.run, classes, ev.info.layout)
            except BadInput as e:  # an unrenderable clip loses its picture, not the report
                media, rec = None, {**rec, "render_error": str(e)}
        cards.append((rec, media))
    atomic_write_text(out / "report.json", json.dumps(result, indent=1) + "\n")
    page = out / "index.html"
    atomic_write_text(page, page_html(result, cards, title))
    return page


# ------------------------------------------------------------------------------------------------ the clips

def render_clip(src: Path, dst: Path, run: VideoRun, classes: list[str], layout: Layout) -> None:
    """`src` scaled down with the skeleton and each window's banner (`--render`'s drawing), as VP8 WebM."""
    import cv2

    which = frame_windows(run.result.bounds, run.keypoint.shape[1])
    captions = window_captions(run.result, classes)
    with VideoReader(src) as reader:
        scale = min(1.0, MAX_SIDE / max(reader.width, reader.height))
        size = (max(2, round(reader.width * scale) // 2 * 2), max(2, round(reader.height * scale) // 2 * 2))
        fps = reader.fps if reader.fps > 0 else 30.0
        step = max(1, round(fps / MAX_FPS))
        video = VideoOut(dst, fps / step, codec="VP80")
        try:
            for t, frame in enumerate(reader.frames()):
                if t % step:
                    continue
                small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
                if t < run.keypoint.shape[1]:
                    kp = run.keypoint[:, t].copy()
                    kp[..., 0] *= size[0] / reader.width
                    kp[..., 1] *= size[1] / reader.height
                    draw_skeleton(small, kp, run.score[:, t], layout)
                    if which[t] >= 0:
                        draw_caption(small, captions[which[t]])
                with native_stderr_quiet():  # FFmpeg's note that the webm muxer ignores the VP80 tag
                    video.write(small)
            if not video.commit():
                raise BadInput("the clip has no frame to draw", dst)
        finally:
            video.discard()


# ------------------------------------------------------------------------------------------------- the page

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.2em;color:#222;background:#fafafa}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.4em}
table.sum td{padding:.15em .8em .15em 0;vertical-align:top}table.sum td:first-child{white-space:nowrap}
.grid{display:flex;flex-wrap:wrap;gap:.8em}
.card{background:#fff;border:1px solid #ccc;border-left:6px solid #2a2;border-radius:4px;padding:.5em;width:340px;
font-size:.85em}
.card.bad{border-left-color:#d22}.card.flag{border-left-color:#e90}
.card video{width:100%;background:#000}.card .name{font-family:monospace;word-break:break-all;color:#555}
.card ol{margin:.2em 0;padding-left:1.4em}.tag{font-weight:bold}
.bad .tag{color:#c00}.flag .tag{color:#b60}
img.conf{max-width:100%;background:#fff}
"""

# Play a clip only while it is on screen: a page of a hundred clips stays light.
_JS = """
const io=new IntersectionObserver(es=>es.forEach(e=>{if(e.isIntersecting){e.target.play().catch(()=>{})}
else{e.target.pause()}}));document.querySelectorAll('video').forEach(v=>io.observe(v));
"""


def outcome(rec: dict) -> tuple[int, str, str]:
    """(sort group, css class, tag) of a clip: mistakes first, then rightly flagged clips, then right ones."""
    if "error" in rec:
        return 3, "bad", "failed"
    if rec["in_class"]:
        if not rec["correct"]:
            return 0, "bad", "wrong" + (", flagged" if rec["known"] is False else "")
        if rec["known"] is False:
            return 0, "bad", "right label, but flagged unknown"
        return 2, "ok", "right"
    if rec["known"] is False:
        return 1, "flag", "flagged (right: not one of the model's actions)"
    return 0, "bad", "accepted (should be flagged)"


def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def _num(v: float | None, fmt: str = ".3f") -> str:
    return "-" if v is None else format(v, fmt)


def card_html(rec: dict, media: str | None, threshold: float | None) -> str:
    _, css, tag = outcome(rec)
    true = _e(rec["label"]) + ("" if rec["in_class"] else " <i>(not a model class)</i>")
    parts = [f'<div class="card {css}">']
    if media is not None:
        parts.append(f'<video src="{_e(media)}" muted loop playsinline controls preload="metadata"></video>')
    parts.append(f'<div class="name">{_e(rec["video"])}</div>')
    parts.append(f'<div>true: <b>{true}</b>' + (f" &middot; split {_e(rec['split'])}" if rec["split"] else "")
                 + f' &middot; <span class="tag">{_e(tag)}</span></div>')
    if "error" in rec:
        parts.append(f"<div>{_e(rec['error'])}</div></div>")
        return "".join(parts)
    parts.append(f"<div>verdict: <b>{_e(rec['verdict'])}</b></div>")
    parts.append("<ol>" + "".join(f"<li>{_e(t['label'])} {t['score']:.2f}</li>" for t in rec["top"]) + "</ol>")
    flag = "no open-set rule" if rec["flag_score"] is None else (
        f"flag score {rec['flag_score']:.1f}" + ("" if threshold is None else f" (threshold {threshold:.1f})"))
    parts.append(f"<div>{_e(flag)} &middot; max softmax {rec['max_softmax']:.2f}</div>")
    if "render_error" in rec:
        parts.append(f"<div>clip not drawn: {_e(rec['render_error'])}</div>")
    parts.append("</div>")
    return "".join(parts)


def page_html(result: dict, cards: list[tuple[dict, str | None]], title: str) -> str:
    s = result["summary"]
    inc, oth, flag = s["in_class"], s["other"], s["flag"]
    threshold = flag.get("threshold") if flag else None
    rows = [("clips", f"{s['evaluated']} evaluated of {s['clips']} ({s['failed']} failed)"),
            ("in-class clips", f"{inc['n']}: top-1 {_num(inc['top1'])}, top-3 {_num(inc['top3'])}, "
                               f"per-class mean {_num(inc['per_class_mean'])}"),
            ("other-action clips", str(oth["n"]))]
    if flag is None:
        rows.append(("unknown-action flag", "the model has no open-set rule"))
    else:
        rule = f" ({flag['rule']})" if flag.get("rule") else ""
        rows.append((f"unknown-action flag{rule}", f"in-class kept {_num(flag['in_class_kept'])}, other accepted "
                                            f"{_num(flag['other_accepted'])}, AUROC {_num(flag['auroc'])} "
                                            f"(max softmax {_num(flag['max_softmax_auroc'])})"))
    for sp, m in s.get("by_split", {}).items():
        rows.append((f"split {sp}", split_summary(m)))
    if inc["per_class"]:
        rows.append(("per class", ", ".join(f"{k} {v['top1']:.2f} ({v['n']})" for k, v in inc["per_class"].items())))
    rows.append(("model", s["model"]))
    rows.append(("pose", f"{s['pose'].get('estimator')} {s['pose'].get('model', '')} (all settings: report.json)"))
    order = sorted(range(len(cards)), key=lambda i: (outcome(cards[i][0])[0], cards[i][0]["label"], i))
    groups = {0: "Mistakes", 1: "Other actions, rightly flagged", 2: "Right", 3: "Failed clips"}
    body = []
    for g, heading in groups.items():
        mine = [cards[i] for i in order if outcome(cards[i][0])[0] == g]
        if mine:
            body.append(f"<h2>{heading} ({len(mine)})</h2><div class=\"grid\">"
                        + "".join(card_html(rec, media, threshold) for rec, media in mine) + "</div>")
    conf = ('<h2>Confusion matrix (top-1)</h2><img class="conf" src="confusion.png" alt="confusion matrix">'
            if s["confusion"]["rows"] else "")
    now = datetime.datetime.now(datetime.timezone.utc)
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{_e(title)}</h1><p>{now:%Y-%m-%d %H:%M} UTC; a clip is &ldquo;{_e(OTHER)}&rdquo; when its label is "
            "not one of the model's classes.</p><table class=\"sum\">"
            + "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in rows) + "</table>"
            + "".join(body) + conf + f"<script>{_JS}</script></body></html>\n")
