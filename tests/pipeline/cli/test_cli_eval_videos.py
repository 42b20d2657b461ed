"""`pipeline eval --videos` as a user calls it, on cuts of the real videos in ../shared/data with the bundled
model: unknown classes (`other` and a label the model lacks), a clip with no person and a missing one, a bad
row; every clip scored exactly as `pipeline run` labels it; the report page and its WebM clips."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from pipeline.infer import prediction
from pipeline.infer.prediction import RunOptions, TorchPredictor
from pipeline.infer.runner import run_videos
from tests.conftest import SHARED
from tests.pipeline.cli.test_cli_run import assert_bad_input, error_lines, run_pipeline
from tests.support.video_files import cut, stick_figure_frames, write_video

ROWS = [("tai_chi.mp4", "squat", "dev"), ("basket.mp4", "other", "dev"), ("skate.mp4", "<b>skate</b>", "val"),
        ("stick.mp4", "pushup", "dev"), ("missing.mp4", "situp", "val")]


@pytest.fixture(scope="module")
def bundled() -> Path:
    if not prediction.BUNDLED_MODEL.is_file():
        pytest.skip("the bundled model models/zoo/student_penn13.pt is absent (git checkout restores it)")
    return prediction.BUNDLED_MODEL


@pytest.fixture(scope="module")
def labels(tmp_path_factory) -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"real data folder {SHARED} is absent (it sits beside the repo in development and CI only)")
    d = tmp_path_factory.mktemp("clips")
    for name, src in (("tai_chi.mp4", "tai_chi.mp4"), ("basket.mp4", "basketball.mp4"),
                      ("skate.mp4", "skateboarding.mp4")):
        cut(SHARED / "videos" / src, d / name, 24)
    write_video(d / "stick.mp4", stick_figure_frames(8))  # a drawing: no person to the estimator
    csv = d / "labels.csv"
    csv.write_text("video,label,split\n" + "".join(f"{v},{lab},{s}\n" for v, lab, s in ROWS))
    return csv


@pytest.fixture(scope="module")
def evaluated(labels: Path, bundled: Path) -> tuple[dict, Path, str]:
    report = labels.parent / "report"
    proc = run_pipeline("eval", "--videos", labels, "--json", "--report", report)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), report, proc.stderr


def test_unknown_labels_failures_and_counts(evaluated, bundled: Path):
    res, _, stderr = evaluated
    s = res["summary"]
    assert (s["clips"], s["evaluated"], s["failed"]) == (5, 3, 2)
    assert s["in_class"]["n"] == 1 and s["other"] == {"n": 2, "labels_not_in_model": {"<b>skate</b>": 1}}
    errors = {r["video"]: r["error"] for r in res["clips"] if "error" in r}
    assert "no person found in 8 frames" in errors["stick.mp4"] and "file not found" in errors["missing.mp4"]
    assert set(s["flag"]) == {"in_class_kept", "other_accepted", "auroc", "max_softmax_auroc", "rule", "threshold"}
    assert s["flag"]["rule"] == TorchPredictor(bundled).info.open_set.kind  # the kind the model stores
    assert s["confusion"]["rows"] == ["squat", "other"] and sum(map(sum, s["confusion"]["matrix"])) == 3
    assert stderr.strip().endswith(f"wrote {evaluated[1] / 'index.html'}")


def test_each_clip_is_scored_as_run_labels_it(evaluated, labels: Path, bundled: Path):
    res = evaluated[0]
    videos = [labels.parent / v for v, _, _ in ROWS[:3]]
    done, failed = run_videos(videos, RunOptions(topk=3, progress=False, threads=1))
    assert not failed
    by_name = {r["video"]: r for r in res["clips"]}
    for run in done:
        rec = by_name[Path(run.record["video"]).name]
        assert rec["top"] == run.record["labels"]
        assert rec["known"] == run.record["open_set"]["known"]
        assert rec["flag_score"] == run.record["open_set"]["distance"]


def test_report_page_and_clips(evaluated):
    res, report, _ = evaluated
    page = (report / "index.html").read_text()
    assert "<b>skate</b>" not in page and "&lt;b&gt;skate&lt;/b&gt;" in page
    assert json.loads((report / "report.json").read_text())["summary"]["clips"] == 5
    assert (report / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    clips = sorted((report / "clips").iterdir())
    assert [p.name for p in clips] == ["0000.webm", "0001.webm", "0002.webm"]  # failed clips have none
    for p in clips:
        assert p.read_bytes()[:4] == b"\x1a\x45\xdf\xa3"  # an EBML (WebM) file
        cap = cv2.VideoCapture(str(p))
        frames = 0
        while cap.read()[0]:
            frames += 1
        assert frames >= 10 and max(cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) <= 320
        cap.release()
        assert f'src="clips/{p.name}"' in page
    assert "failed" in page and "missing.mp4" in page


def test_split_keeps_its_rows(labels: Path, bundled: Path):
    proc = run_pipeline("eval", "--videos", labels, "--split", "val", "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)["summary"]
    assert (s["clips"], s["evaluated"], s["in_class"]["n"], s["other"]["n"]) == (2, 1, 0, 1)
    assert s["in_class"]["top1"] is None and s["flag"]["auroc"] is None  # no in-class clip to rank against


def test_nothing_runnable_is_an_error(tmp_path: Path, bundled: Path):
    csv = tmp_path / "labels.csv"
    csv.write_text("gone.mp4,squat\n")
    proc = run_pipeline("eval", "--videos", csv)
    assert proc.returncode == 2 and "failed: gone.mp4: " in proc.stdout
    assert error_lines(proc) == [f"Error: {csv}: none of the 1 clips could be run (each is listed above)"]


def test_bad_rows_and_bad_option_mixes(tmp_path: Path):
    csv = tmp_path / "labels.csv"
    csv.write_text("video,label\na.mp4,squat\nb.mp4,squat,dev,extra\n")
    assert_bad_input(run_pipeline("eval", "--videos", csv), csv, "line 3: expected video,label[,split]")
    proc = run_pipeline("eval", "--videos", csv, "--data", tmp_path / "d.pkl")
    assert proc.returncode == 2 and error_lines(proc) == ["Error: give --data PICKLE or --videos LABELS.csv (one of "
                                                          "them)"]
    proc = run_pipeline("eval", "--data", tmp_path / "d.pkl", "--model", tmp_path / "m.pt", "--report", tmp_path)
    assert proc.returncode == 2 and error_lines(proc) == ["Error: --report is for --videos, not --data"]
    proc = run_pipeline("eval", "--videos", csv, "--batch-size", "8")
    assert proc.returncode == 2 and error_lines(proc) == ["Error: --batch-size is for --data, not --videos"]
