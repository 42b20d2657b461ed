"""`pipeline live`: sources, the bounded frame queue, causal per-person windows, interruption, a local stream;
and `pipeline run --max-persons`.

In-process tests drive the engine with a stand-in pose estimator that finds the drawn stick figures of
`video_files.stick_figure_frames` (MediaPipe sees no person in a drawing), so ids, drops and labels are exact
and fast. The command-line tests run the real console script with MediaPipe and a tiny checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from estimators.base import PoseEstimator
from estimators.tracking import PersonTracker, TrackerConfig
from pipeline.infer.live import DropQueue, LiveEngine, LiveOptions, open_source, run_live, track_window
from pipeline.infer.prediction import RunOptions, TorchPredictor
from pipeline.infer.runner import format_text, run_videos
from tests.support.cli_support import (
    console_script,
    one_error_line,
    pipeline_env,
    popen_pipeline,
    run_pipeline,
    visible_lines,
    without_fallback_note,
)
from tests.support.run_files import tiny_checkpoint, with_rule
from tests.support.video_files import cut, stick_figure_frames, write_video

NUM_JOINTS = 33  # blazepose33, the layout of the real fast estimator


class StickFigures(PoseEstimator):
    """Stand-in fast estimator: each dark blob of a frame is a person whose 33 joints sit at fixed fractions of
    the blob's box (so they move with the figure). Every `stride`-th frame is processed, like the LQ tier."""

    name, layout = "stick-figures", "blazepose33"

    def __init__(self, stride: int = 2, max_persons: int = 1, delay: float = 0.0):
        # No `cfg`: the live engine must read the stride through the estimator interface (`stride`).
        self._stride, self._max_persons = stride, max_persons
        self.delay = delay
        self.pattern = np.random.default_rng(0).uniform(0, 1, size=(NUM_JOINTS, 2)).astype(np.float32)

    def settings(self) -> dict:
        return {"stride": self._stride, "max_persons": self.max_persons}

    @property
    def stride(self) -> int:
        return self._stride

    @property
    def max_persons(self) -> int:
        return self._max_persons

    def detect(self, frame: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        if self.delay:
            time.sleep(self.delay)
        dark = (cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) < 128).astype(np.uint8)
        dark = cv2.dilate(dark, np.ones((9, 9), np.uint8))  # head ring and limbs: one blob per figure
        n, _, boxes, _ = cv2.connectedComponentsWithStats(dark)
        found = sorted((b for b in boxes[1:] if b[4] > 300), key=lambda b: b[0])  # left to right
        out = []
        for x, y, w, h, _ in found[: self.max_persons]:
            kp = np.array([x, y], np.float32) + self.pattern * np.array([w, h], np.float32)
            out.append((kp, np.full(NUM_JOINTS, 0.9, np.float32)))
        return out
    # estimate(): the base class's loop (detect, track, fill), as every real backend


def summary_lines(stderr: str) -> list[str]:
    """stderr without the one fallback note a clone without BlazePose lite gets first (live says it at once)."""
    return without_fallback_note(visible_lines(stderr))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def one_figure(tmp_path: Path, n: int = 40) -> Path:
    return write_video(tmp_path / "one.mp4", stick_figure_frames(n))


def two_figures(tmp_path: Path, n: int = 40) -> Path:
    """Two stick figures side by side, swaying out of phase: two persons that never cross."""
    a = stick_figure_frames(n)
    b = stick_figure_frames(n + 9)[9:]
    return write_video(tmp_path / "two.mp4", [np.concatenate([x, y], axis=1) for x, y in zip(a, b)])


def live_events(video: Path, est: PoseEstimator, ckpt: Path, **kw) -> tuple[list[dict], object]:
    events: list[dict] = []
    opts = LiveOptions(**kw)
    stats = run_live(open_source(str(video)), est, TorchPredictor(ckpt, threads=1), opts, events.append)
    return events, stats


def assert_same_windows(run_windows: list[dict], events: list[dict], fps: float) -> None:
    """Each window `pipeline run` labelled has one live event for the same frames with the same labels."""
    labelled = [w for w in run_windows if w["labels"]]
    assert len(labelled) == len(events) >= 3
    for w, ev in zip(labelled, events):
        assert ev["t"] == pytest.approx(w["end"], abs=1e-3)
        assert ev["frames"][0] / fps == pytest.approx(w["start"], abs=1e-3)
        assert [x["label"] for x in ev["labels"]] == [x["label"] for x in w["labels"]]
        np.testing.assert_allclose([x["score"] for x in ev["labels"]], [x["score"] for x in w["labels"]],
                                   atol=2e-4)


def wait_for_render(proc, folder: Path, pattern: str, t0: float) -> None:
    """Until `pipeline live` has opened its temporary render in `folder` (60 s after `t0` at most)."""
    while not list(folder.glob(pattern)):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < 60, "the render never started"
        time.sleep(0.05)


# ------------------------------------------------------------------------------------------- in process


def test_file_without_realtime_gives_the_labels_of_run(tmp_path: Path, ckpt: Path):
    video = one_figure(tmp_path, 40)
    (run,), failed = run_videos([video], RunOptions(model=ckpt, window=0.6, stride=0.32, topk=3, progress=False,
                                                    threads=1), estimator=StickFigures(stride=2))
    assert not failed and len(run.record["windows"]) == 5  # 15-frame windows every 8, and the tail one
    events, stats = live_events(video, StickFigures(stride=2), ckpt, window=0.6, stride=0.32, topk=3,
                                realtime=False)
    assert_same_windows(run.record["windows"], events, 25.0)
    assert {ev["person"] for ev in events} == {0}
    assert (stats.read, stats.processed, stats.dropped, stats.skipped) == (40, 20, 0, 20)
    assert stats.labels == 5 and len(stats.latencies_ms) == 5


def test_a_slow_consumer_drops_frames_and_says_so(tmp_path: Path, ckpt: Path):
    video = one_figure(tmp_path, 40)  # 1.6 s at 25 fps; pose takes 0.1 s a frame: about 4 times too slow
    events, stats = live_events(video, StickFigures(stride=1, delay=0.1), ckpt, window=0.4, realtime=True)
    assert stats.read == 40
    assert stats.dropped >= 15 and stats.processed <= 25
    assert stats.processed + stats.dropped <= stats.read  # (the rest were still queued when the file ended)
    assert f"{stats.dropped} dropped" in stats.text("one.mp4")
    assert events  # windows are still labelled from the frames that were processed
    # The same consumer without real-time pacing processes every frame.
    _, slow = live_events(video, StickFigures(stride=1, delay=0.01), ckpt, window=0.4, realtime=False)
    assert (slow.read, slow.processed, slow.dropped) == (40, 40, 0)


class SlowToLoad(StickFigures):
    """Loads its model lazily, like MediaPipe's graphs: 0.6 s on the first frame unless `load()` came first."""

    def __init__(self):
        super().__init__(stride=1)
        self.loaded = False

    def load(self) -> None:
        if not self.loaded:
            time.sleep(0.6)
            self.loaded = True

    def detect(self, frame: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        self.load()
        return super().detect(frame)


def test_the_model_loads_before_the_source_plays(tmp_path: Path, ckpt: Path):
    """Loading on the first frame would drop the ~15 frames a 25 fps file plays meanwhile."""
    _, stats = live_events(one_figure(tmp_path, 40), SlowToLoad(), ckpt, window=0.4, realtime=True)
    assert stats.read == 40 and stats.dropped <= 2, stats.record()


def test_drop_queue_is_bounded_and_counts():
    stop = threading.Event()
    q = DropQueue(2, "oldest")
    for i in range(5):
        q.put(i, stop)
    assert [i for i, _ in q.items] == [3, 4] and q.dropped == 3
    q = DropQueue(2, "newest")
    for i in range(5):
        q.put(i, stop)
    assert [i for i, _ in q.items] == [0, 1] and q.dropped == 3
    q = DropQueue(3, "oldest")  # frames that are only drawn go first
    for i in range(6):
        q.put(i, stop, keep=i % 2 == 0)
    assert [i for i, _ in q.items] == [0, 2, 4] and q.dropped == 3
    q.put(6, stop)  # a posed frame into a queue full of posed ones: the policy drops the oldest
    assert [i for i, _ in q.items] == [2, 4, 6] and q.dropped == 4


def test_two_persons_get_two_stable_ids(tmp_path: Path, ckpt: Path):
    video = two_figures(tmp_path, 40)
    events, stats = live_events(video, StickFigures(stride=2, max_persons=2), ckpt, window=0.4, stride=0.2,
                                max_persons=2, realtime=False)
    assert stats.persons == 2
    by_id: dict[int, list[dict]] = {}
    for ev in events:
        by_id.setdefault(ev["person"], []).append(ev)
    assert sorted(by_id) == [0, 1]
    assert len(by_id[0]) == len(by_id[1]) == 7  # both labelled in every window: 10 frames every 5
    for pid, side in ((0, range(0, 320)), (1, range(320, 640))):  # id 0 is the left figure throughout
        assert all(ev["box"][0] in side and ev["box"][2] in side for ev in by_id[pid]), by_id[pid]


def test_run_labels_each_person_on_its_own(tmp_path: Path, ckpt: Path):
    video = two_figures(tmp_path, 40)
    (two,), _ = run_videos([video], RunOptions(model=ckpt, topk=2, progress=False, threads=1, max_persons=2),
                           estimator=StickFigures(stride=2, max_persons=2))
    assert two.record["persons"] == 2  # the design's contract: a count, whatever N
    tracks = two.record["tracks"]
    assert [p["id"] for p in tracks] == [0, 1] and all(p["frames"] == [0, 39] for p in tracks)
    # Each person's labels are the labels of that person's track classified alone.
    (left,), _ = run_videos([video], RunOptions(model=ckpt, topk=2, progress=False, threads=1),
                            estimator=StickFigures(stride=2, max_persons=1))
    assert left.record["persons"] == 1 and "tracks" not in left.record  # N = 1: the output as before
    assert tracks[0]["labels"] == left.record["labels"]
    assert tracks[0]["labels"] != tracks[1]["labels"]
    text = format_text(two).splitlines()
    assert "2 person(s)" in text[0]
    assert text[-2:] == [f"  person {p['id']} (frames 0-39): {p['labels'][0]['label']} "
                         f"({p['labels'][0]['score']:.2f})" for p in tracks]


def test_the_open_set_rule_reaches_tracks_and_live_events(tmp_path: Path, ckpt: Path):
    """A model with an open-set rule: `run --max-persons` gives each track its verdict, `live` each event; both
    come from `classify`, so a strict rule (nothing known) and a lax one (all known) flip every verdict."""
    video = two_figures(tmp_path, 40)
    for threshold, known in ((-1.0, False), (1e12, True)):
        model = with_rule(ckpt, tmp_path / f"rule{threshold:g}.pt", threshold)
        (run,), _ = run_videos([video], RunOptions(model=model, topk=2, progress=False, threads=1, max_persons=2),
                               estimator=StickFigures(stride=2, max_persons=2))
        assert run.record["open_set"]["known"] is known
        assert [tr["open_set"]["known"] for tr in run.record["tracks"]] == [known, known]
        assert ("not a known action" in format_text(run)) is not known
        events, _ = live_events(video, StickFigures(stride=2, max_persons=2), model, window=0.8, stride=0.4,
                                max_persons=2, realtime=False)
        assert len(events) == 6 and all(ev["open_set"]["known"] is known for ev in events)
    # A 0.4 s window (10 frames at 25 fps) is a glimpse: never called known, as in `pipeline run`.
    events, _ = live_events(video, StickFigures(stride=2, max_persons=2), model, window=0.4, stride=0.2,
                            max_persons=2, realtime=False)
    assert events and all(ev["open_set"]["reason"].startswith("too short") for ev in events)
    (plain,), _ = run_videos([video], RunOptions(model=ckpt, progress=False, threads=1, max_persons=2),
                             estimator=StickFigures(stride=2, max_persons=2))
    assert all("open_set" not in tr for tr in plain.record["tracks"])  # no rule: no verdict


def test_track_window_matches_finalize():
    rng = np.random.default_rng(1)
    tr = PersonTracker(TrackerConfig(max_persons=1), 4)
    for t in range(0, 40, 3):
        if t in (12, 15):
            tr.update(t, [])  # lost, then found again: not interpolated across
        else:
            tr.update(t, [(rng.uniform(100, 140, (4, 2)), np.full(4, 0.8))])
    kp, sc = tr.finalize(40)
    for s, e in ((0, 10), (5, 20), (11, 17), (30, 40)):
        k, c = track_window(tr, tr.tracks[0], s, e)
        np.testing.assert_array_equal(k, kp[0, s:e])
        np.testing.assert_array_equal(c, sc[0, s:e])


def test_tracker_memory_follows_the_estimator_stride(ckpt: Path):
    """The tracker keeps a lost person as long as the estimator's own `estimate()` would: max(60, 4 * stride)
    frames, with the stride read through `PoseEstimator.stride` (the stand-in has no `cfg`)."""
    pred = TorchPredictor(ckpt, threads=1)
    for stride, age in ((2, 60), (25, 100)):
        engine = LiveEngine(StickFigures(stride=stride), pred, LiveOptions(), 25.0, lambda ev: None)
        assert engine.tracker.cfg.max_age == age


def test_state_does_not_grow_with_the_stream(ckpt: Path):
    """A long stream: the tracker keeps only what the next windows need; labels keep coming."""
    est = StickFigures(stride=2)
    events: list[dict] = []
    engine = LiveEngine(est, TorchPredictor(ckpt, threads=1), LiveOptions(window=1.0, stride=1.0), 25.0,
                        events.append)
    frames = stick_figure_frames(30)
    for t in range(0, 3000, 2):
        engine.process(t, frames[t % 30])
    assert len(events) == 119 and {ev["person"] for ev in events} == {0}
    assert len(engine.tracker.tracks) == 1
    assert len(engine.tracker.tracks[0].frames) <= 40 and len(engine.tracker.processed) <= 40


# --------------------------------------------------------------------------------------- command line

def test_cli_file_without_realtime_matches_run(shared_data: Path, tmp_path: Path, ckpt: Path):
    clip = cut(shared_data / "videos" / "tai_chi.mp4", tmp_path / "tai chi.mp4", 48)  # a real person
    run = run_pipeline("run", clip, "--model", ckpt, "--json", "--window", "0.6", "--stride", "0.32",
                       "--topk", "3")
    assert run.returncode == 0, run.stderr
    live = run_pipeline("live", clip, "--model", ckpt, "--no-realtime", "--window", "0.6", "--stride", "0.32",
                        "--topk", "3")
    assert live.returncode == 0, live.stderr
    events = [json.loads(line) for line in live.stdout.splitlines()]
    assert all(set(ev) == {"t", "person", "box", "labels", "latency_ms", "frames"} for ev in events)
    assert_same_windows(json.loads(run.stdout)["windows"], events, 25.0)
    summary = summary_lines(live.stderr)
    assert len(summary) == 1 and "48 frames read, 12 processed, 0 dropped" in summary[0], live.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sources_that_do_not_open_are_one_line(tmp_path: Path):
    url = f"http://127.0.0.1:{free_port()}/nothing.ts"  # nothing listens there
    line = one_error_line(run_pipeline("live", url, "--open-timeout", "3"))
    assert line.startswith(f"Error: {url}: cannot open the stream"), line
    line = one_error_line(run_pipeline("live", "97"))
    assert line.startswith("Error: camera 97: cannot open this camera"), line
    line = one_error_line(run_pipeline("live", tmp_path / "missing.mp4"))
    assert line == f"Error: {tmp_path / 'missing.mp4'}: file not found", line


def test_render_outputs_are_vetted_before_anything_opens(tmp_path: Path):
    clip = write_video(tmp_path / "clip.mp4", stick_figure_frames(8))
    before = clip.read_bytes()
    line = one_error_line(run_pipeline("live", clip, "--render", clip))
    assert line == f"Error: {clip}: is the same file as the input {clip}; refusing to overwrite it", line
    assert clip.read_bytes() == before
    line = one_error_line(run_pipeline("live", clip, "--render", "/proc/x.mp4"))
    assert line == "Error: /proc/x.mp4: is under /proc, which holds no files to write", line


def test_show_without_a_display_is_one_line(tmp_path: Path):
    env = {k: v for k, v in pipeline_env().items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    video = one_figure(tmp_path, 8)
    proc = subprocess.run([*console_script(), "live", str(video), "--show"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert "--show needs a display" in one_error_line(proc)


def test_sigint_mid_stream_leaves_no_render_and_prints_the_summary(tmp_path: Path):
    video = write_video(tmp_path / "long.mp4", stick_figure_frames(250))  # 10 s played in real time
    out = tmp_path / "out.mp4"
    proc = popen_pipeline("live", video, "--render", out)
    wait_for_render(proc, tmp_path, ".out.mp4.*.tmp.mp4", time.monotonic())  # frames are flowing
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    lines = summary_lines(stderr)
    assert "interrupted after" in lines[0] and "frames read" in lines[0] and "dropped" in lines[0], stderr
    read = int(lines[0].split(" frames read")[0].rsplit(" ", 1)[-1])
    assert 0 < read < 250
    assert "render discarded" in lines[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mp4"]  # no OUT, no temporary file


def listening(port: int) -> bool:
    """Whether a TCP socket listens on 127.0.0.1:port (read from /proc: connecting would take the one client)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            if int(local.rsplit(":", 1)[1], 16) == port and state == "0A":
                return True
    return False


@pytest.mark.skipif(shutil.which("ffmpeg") is None,
                    reason="ffmpeg is not on PATH (Debian: apt-get install ffmpeg; .ci/run installs it)")
def test_a_local_stream(shared_data: Path, tmp_path: Path, ckpt: Path):
    clip = cut(shared_data / "videos" / "tai_chi.mp4", tmp_path / "tai.mp4", 60)
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    # Re-encoded: an MPEG-TS stream carries its codec headers in-band (copying the mp4's stream would not).
    server = subprocess.Popen(["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-i", str(clip),
                               "-c:v", "mpeg4", "-q:v", "4", "-f", "mpegts", f"{url}?listen=1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.monotonic()
        while not listening(port):
            assert server.poll() is None, server.communicate()
            assert time.monotonic() - t0 < 20, "ffmpeg never listened"
            time.sleep(0.05)
        live = run_pipeline("live", url, "--model", ckpt, "--window", "0.6", "--topk", "2", "--render",
                            tmp_path / "seen.mp4", timeout=120)
    finally:
        server.kill()
        server.communicate()
    assert live.returncode == 0, live.stderr
    events = [json.loads(line) for line in live.stdout.splitlines()]
    assert len(events) >= 3 and {ev["person"] for ev in events} == {0}
    summary = summary_lines(live.stderr)
    assert len(summary) == 2 and f"{url}: ended after" in summary[0], live.stderr
    read = int(summary[0].split(" frames read")[0].rsplit(" ", 1)[-1])
    assert read >= 55  # (a few frames may be lost at the start of an MPEG-TS stream)
    assert summary[1] == f"{url}: wrote {tmp_path / 'seen.mp4'}"
    cap = cv2.VideoCapture(str(tmp_path / "seen.mp4"))
    rendered = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    assert 0 < rendered <= read  # every frame that reached the renderer (dropped ones did not)


@pytest.mark.skipif(shutil.which("ffmpeg") is None,
                    reason="ffmpeg is not on PATH (Debian: apt-get install ffmpeg; .ci/run installs it)")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sigint_on_a_stream_writes_the_render(tmp_path: Path, sig: int):
    """Ctrl-C (or SIGTERM, the same stop) is how a camera or stream ends: the render up to that moment is written
    (a file's would not be)."""
    # 40 s of stream: a `live` slow to start on a loaded machine gets the frames ffmpeg paced meanwhile in a burst,
    # and a shorter stream could end before the signal is sent.
    video = write_video(tmp_path / "long.mp4", stick_figure_frames(1000))
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    server = subprocess.Popen(["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-i", str(video),
                               "-c:v", "mpeg4", "-q:v", "4", "-f", "mpegts", f"{url}?listen=1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    out = tmp_path / "seen.mp4"
    try:
        t0 = time.monotonic()
        while not listening(port):
            assert server.poll() is None, server.communicate()
            assert time.monotonic() - t0 < 20, "ffmpeg never listened"
            time.sleep(0.05)
        proc = popen_pipeline("live", url, "--render", out)
        wait_for_render(proc, tmp_path, ".seen.mp4.*.tmp.mp4", t0)
        time.sleep(1.0)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        server.kill()
        server.communicate()
    assert proc.returncode == 128 + sig, stderr
    lines = summary_lines(stderr)
    assert f"{url}: interrupted after" in lines[0] and lines[1] == f"{url}: wrote {out}", stderr
    cap = cv2.VideoCapture(str(out))
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (240, 320, 3)
    assert not list(tmp_path.glob(".seen.*"))


def test_cli_run_labels_each_of_two_real_persons(shared_data: Path, tmp_path: Path, ckpt: Path):
    clip = cut(shared_data / "videos" / "arm_wrestling.mp4", tmp_path / "arm.mp4", 24)  # two people
    # BlazePose full: the model this cut was checked with (lite finds only the nearer person in these frames)
    proc = run_pipeline("run", clip, "--model", ckpt, "--json", "--topk", "2", "--max-persons", "2",
                        "--pose-model", "full")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["persons"] == 2 and [p["id"] for p in r["tracks"]] == [0, 1]
    for p in r["tracks"]:
        assert set(p) == {"id", "frames", "labels"} and 0 <= p["frames"][0] <= p["frames"][1] <= 23
        assert len(p["labels"]) == 2
