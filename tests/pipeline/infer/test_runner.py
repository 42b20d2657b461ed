"""`pipeline.infer.runner`: windows, layout checks, classification, JSON records and rendering.

Window logic runs on synthetic keypoints with a stand-in predictor (no video); the end-to-end parts run the
real fast estimator on short real clips with a tiny checkpoint the tests write themselves.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models.contract.errors import BadInput
from models.contract.layouts import PENN13, Layout
from models.net.transforms import InputConfig
from models.openset import ENERGY
from pipeline.infer import prediction, rendering
from pipeline.infer.prediction import (
    UNKNOWN_ACTION,
    ModelInfo,
    RunOptions,
    TorchPredictor,
    check_feedable,
    classify,
    window_bounds,
)
from pipeline.infer.rendering import frame_windows, window_captions
from pipeline.infer.runner import format_text, open_set_record, render_targets, run_videos
from tests.support.run_files import CLASSES, tiny_checkpoint, with_rule
from tests.support.video_files import cut


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture
def short_clip(shared_data: Path, tmp_path: Path) -> Path:
    # 48 frames at 25 fps (1.9 s) of a real person: long enough for several 0.6 s windows, quick to run.
    (tmp_path / "clips").mkdir()
    return cut(shared_data / "videos" / "tai_chi.mp4", tmp_path / "clips" / "tai_chi48.mp4", 48)


# ------------------------------------------------------------------------------------------------ windows

def test_short_clip_is_one_window_long_clip_slides():
    assert window_bounds(300, 30.0) == [(0, 300)]                    # exactly 10 s: whole
    b = window_bounds(301, 30.0)                                      # just over: 4 s windows every 2 s
    assert b == [(0, 120), (60, 180), (120, 240), (180, 300), (181, 301)]
    b = window_bounds(3600, 30.0)
    assert b[0] == (0, 120) and b[-1] == (3480, 3600) and len(b) == 59
    assert all(e - s == 120 for s, e in b)


def test_explicit_window_and_stride():
    assert window_bounds(100, 25.0, window=1.0) == [(0, 25), (12, 37), (24, 49), (36, 61), (48, 73), (60, 85),
                                                   (72, 97), (75, 100)]  # stride = window / 2, tail covered
    assert window_bounds(100, 25.0, window=2.0, stride=2.0) == [(0, 50), (50, 100)]
    assert window_bounds(100, 25.0, window=10.0) == [(0, 100)]          # longer than the clip: one window
    assert window_bounds(400, 25.0, stride=1.0)[:2] == [(0, 100), (25, 125)]  # stride alone: 4 s windows


@pytest.mark.parametrize("total,fps,win,stride", [(7, 30.0, 0.1, 0.05), (1000, 29.97, 3.3, 1.1),
                                                 (451, 24.0, None, None), (5, 0.0, 1.0, 1.0)])
def test_windows_cover_every_frame_in_bounds(total, fps, win, stride):
    b = window_bounds(total, fps, win, stride)
    covered = np.zeros(total, bool)
    for s, e in b:
        assert 0 <= s < e <= total
        covered[s:e] = True
    assert covered.all()
    which = frame_windows(b, total)
    assert (which >= 0).all()
    for t in range(total):  # the labelling window holds the frame and no other holding window is better centred
        s, e = b[which[t]]
        assert s <= t < e
        best = min(abs(t - (s2 + e2 - 1) / 2) for s2, e2 in b if s2 <= t < e2)
        assert abs(t - (s + e - 1) / 2) == best


class MotionPredictor:
    """Stand-in model: class 0 when the left wrist moves more than the right one, class 1 otherwise."""

    def __init__(self):
        self.info = ModelInfo(PENN13, ["left", "right"], InputConfig(length=12, max_persons=1), 2, "stand-in")
        self.batches = []

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.batches.append(x.shape)
        lw, rw = PENN13.index("left_wrist"), PENN13.index("right_wrist")
        motion = np.abs(np.diff(x[..., :2], axis=2)).sum(axis=(1, 2, 4))  # [N, V]
        p_left = (motion[:, lw] > motion[:, rw]).astype(np.float32) * 0.8 + 0.1
        return np.stack([p_left, 1 - p_left], axis=1)


def waving_person(t: int, left: slice, right: slice, absent: slice | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A still penn13 person in pixels who waves the left wrist in frames `left` and the right in `right`."""
    rng = np.random.default_rng(0)
    base = rng.uniform(100, 300, size=(PENN13.num_joints, 2)).astype(np.float32)
    kp = np.repeat(base[None, None], t, axis=1)
    ts = np.arange(t, dtype=np.float32)
    wave = 40 * np.sin(ts / 2)
    kp[0, left, PENN13.index("left_wrist"), 0] += wave[left]
    kp[0, right, PENN13.index("right_wrist"), 0] += wave[right]
    score = np.ones(kp.shape[:3], np.float32)
    if absent is not None:
        kp[:, absent], score[:, absent] = 0, 0
    return kp, score


def test_windows_follow_the_action_and_skip_empty_windows():
    fps = 10.0
    kp, score = waving_person(160, left=slice(0, 80), right=slice(80, 120), absent=slice(120, 160))
    pred = MotionPredictor()
    res = classify(kp, score, fps, pred, window=4.0, stride=4.0)
    assert res.bounds == [(0, 40), (40, 80), (80, 120), (120, 160)]
    assert pred.batches == [(4, 1, 12, 13, 3)]  # one batch, every window sampled to the model's length
    assert res.probs.argmax(1)[:3].tolist() == [0, 0, 1]
    assert res.has_person.tolist() == [True, True, True, False]
    # Overall = mean of the windows with a person: (0.9 + 0.9 + 0.1) / 3 for "left".
    np.testing.assert_allclose(res.overall, [1.9 / 3, 1.1 / 3], rtol=1e-6)


class MotionNet(torch.nn.Module):
    """Stand-in network behind a real `TorchPredictor`: one peaked logit (class 0 at 10) for a window in which the
    left wrist moves, flat logits (all 0) for a still one. Records whether each call asked for the features."""

    def __init__(self) -> None:
        super().__init__()
        self.asked_features: list[bool] = []

    def forward(self, x: torch.Tensor, return_features: bool = False):
        self.asked_features.append(return_features)
        moving = x[..., PENN13.index("left_wrist"), :2].diff(dim=2).abs().sum(dim=(1, 2, 3)) > 1e-4  # [N]
        logits = torch.zeros(len(x), len(CLASSES))
        logits[:, 0] = 10.0 * moving
        return (logits, x.flatten(1)[:, :3]) if return_features else logits

    @staticmethod
    def pool(f: torch.Tensor, n: int) -> torch.Tensor:
        return f


def test_an_energy_rule_flags_flat_logits_and_keeps_a_peaked_one(tiny_ckpt: Path, tmp_path: Path):
    pred = TorchPredictor(with_rule(tiny_ckpt, tmp_path / "energy.pt", threshold=-5.0, kind=ENERGY))
    assert pred.info.open_set.kind == ENERGY and pred.info.open_set.means is None
    pred.model = MotionNet()
    flat = -np.log(4.0)  # -logsumexp of 4 zeros: -1.386, above -5: flagged
    peaked = -(10.0 + np.log(1.0 + 3.0 * np.exp(-10.0)))  # -10.000: kept
    for moving, want, known in ((slice(0, 40), [peaked, flat, flat], False),
                                (slice(0, 80), [peaked, peaked, flat], True)):
        kp, score = waving_person(120, left=moving, right=slice(0, 0))
        res = classify(kp, score, 10.0, pred, window=4.0, stride=4.0)
        assert res.bounds == [(0, 40), (40, 80), (80, 120)]
        np.testing.assert_allclose(res.distance, want, rtol=1e-9)
        assert res.window_known.tolist() == [w == peaked for w in want]
        assert res.known is known  # the median window decides the clip
        rec = open_set_record(res, pred.info, score, 10.0)
        assert rec == {"known": res.known, "threshold": -5.0, "distance": round(float(np.median(want)), 2)}
    assert pred.model.asked_features == [False, False]  # an energy rule needs the logits only


def test_windows_are_normalised_on_their_own(tiny_ckpt: Path):
    # The same motion, far away and twice as big in the second half: equal inputs, equal probabilities.
    kp, score = waving_person(80, left=slice(0, 80), right=slice(0, 0))
    kp[:, 40:] = kp[:, :40] * 2 + 500
    res = classify(kp, score, 10.0, TorchPredictor(tiny_ckpt), window=4.0)
    assert res.bounds == [(0, 40), (20, 60), (40, 80)]
    np.testing.assert_allclose(res.probs.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(res.probs[0], res.probs[2], atol=1e-5)
    np.testing.assert_allclose(res.overall, res.probs.mean(0), atol=1e-6)


# --------------------------------------------------------------------------------------------- layouts

def test_model_layouts_the_estimator_can_and_cannot_feed():
    icfg = InputConfig(length=8)
    for name in ("penn13", "coco17", "blazepose33"):
        from models.contract.layouts import get_layout

        check_feedable(ModelInfo(get_layout(name), ["a"], icfg, 2, name))
    hand = Layout("hand5", ("thumb_tip", "index_tip", "middle_tip", "ring_tip", "wrist"),
                  ((0, 4), (1, 4), (2, 4), (3, 4)), 4)
    with pytest.raises(BadInput, match=r"m.pt: the model is for layout hand5: .* supplies only 0 of its 5 joints"):
        check_feedable(ModelInfo(hand, ["a"], icfg, 2, "m.pt"))
    with pytest.raises(BadInput, match="takes 3D coordinates"):
        check_feedable(ModelInfo(PENN13, ["a"], icfg, 3, "m.pt"))


def test_unreadable_or_missing_models(tmp_path: Path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(BadInput, match="junk.pt: not a readable checkpoint"):
        run_videos(["clip.mp4"], RunOptions(model=junk, progress=False))
    with pytest.raises(BadInput, match="missing.onnx: ONNX file not found"):
        run_videos(["clip.mp4"], RunOptions(onnx=tmp_path / "missing.onnx", progress=False))


def test_options_are_checked():
    with pytest.raises(BadInput, match="not both"):
        RunOptions(model=Path("a.pt"), onnx=Path("a.onnx"))
    with pytest.raises(BadInput, match="--window"):
        RunOptions(window=0.0)
    with pytest.raises(BadInput, match="--topk"):
        RunOptions(topk=0)


def test_render_targets(tmp_path: Path):
    a, b = Path("x/a.mp4"), Path("y/b.avi")
    assert render_targets([a, b], None) == [None, None]
    assert render_targets([a], tmp_path / "o.mp4") == [tmp_path / "o.mp4"]
    assert render_targets([a, b], tmp_path / "out") == [tmp_path / "out" / "a.mp4", tmp_path / "out" / "b.mp4"]
    with pytest.raises(BadInput, match="takes a folder"):
        render_targets([a, b], tmp_path / "o.mp4")
    with pytest.raises(BadInput, match="writes an .mp4 file"):
        render_targets([a], tmp_path / "o.avi")
    with pytest.raises(BadInput, match="is a folder"):
        (tmp_path / "d.mp4").mkdir()
        render_targets([a], tmp_path / "d.mp4")
    with pytest.raises(BadInput, match="named 'a'"):
        render_targets([a, Path("z/a.mp4")], tmp_path / "out")


# ------------------------------------------------------------------------------------- real video, end to end

def test_json_record_on_a_real_clip(shared_data: Path, tiny_ckpt: Path):
    clip = shared_data / "videos" / "mmpose_demo_5frames.mp4"
    done, failed = run_videos([clip], RunOptions(model=tiny_ckpt, topk=3, progress=False))
    assert failed == [] and len(done) == 1
    r = done[0].record
    assert list(r) == ["video", "frames", "persons", "labels", "seconds"]  # short clip: no "windows"
    assert r["video"] == str(clip) and r["frames"] == 5 and r["persons"] == 1
    assert [list(lab) for lab in r["labels"]] == [["label", "score"]] * 3
    assert {lab["label"] for lab in r["labels"]} <= set(CLASSES)
    scores = [lab["score"] for lab in r["labels"]]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0001
    assert list(r["seconds"]) == ["pose", "model", "total"]
    assert 0 < r["seconds"]["pose"] <= r["seconds"]["total"] and r["seconds"]["model"] >= 0


def test_windows_and_render_on_a_real_clip(short_clip: Path, tiny_ckpt: Path, tmp_path: Path):
    out = tmp_path / "rendered.mp4"
    done, failed = run_videos([short_clip], RunOptions(model=tiny_ckpt, topk=2, window=0.6, stride=0.4,
                                                       render=out, progress=False))
    assert failed == []
    r = done[0].record
    assert list(r) == ["video", "frames", "persons", "labels", "seconds", "windows"]
    assert [(w["start"], w["end"]) for w in r["windows"]] == [(0.0, 0.6), (0.4, 1.0), (0.8, 1.4), (1.2, 1.8),
                                                               (1.32, 1.92)]
    assert all([list(lab) for lab in w["labels"]] == [["label", "score"]] * 2 for w in r["windows"])
    # The overall label is the mean of the window probabilities.
    res = done[0].result
    np.testing.assert_allclose(res.overall, res.probs.mean(0), atol=1e-6)
    assert r["labels"][0]["label"] == CLASSES[int(res.overall.argmax())]
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert cap.get(cv2.CAP_PROP_FRAME_WIDTH) == 340 and cap.get(cv2.CAP_PROP_FRAME_HEIGHT) == 256
    cap.release()
    assert n == r["frames"] == 48
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clips", "rendered.mp4"]  # no temporary file left


def test_render_failure_leaves_no_file(short_clip: Path, tiny_ckpt: Path, tmp_path: Path, monkeypatch):
    calls = []

    def fail_later(frame, text):
        calls.append(text)
        if len(calls) == 20:
            raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(rendering, "draw_caption", fail_later)
    out = tmp_path / "out" / "r.mp4"
    with pytest.raises(RuntimeError, match="simulated"):
        run_videos([short_clip], RunOptions(model=tiny_ckpt, render=out, progress=False))
    assert len(calls) == 20
    assert list((tmp_path / "out").iterdir()) == []  # neither the output nor a temporary file


def test_bad_videos_are_collected_and_the_others_go_on(short_clip: Path, tiny_ckpt: Path, tmp_path: Path):
    from tests.support.video_files import stick_figure_frames, write_video

    stick = write_video(tmp_path / "stick.mp4", stick_figure_frames(8))
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    seen = []
    done, failed = run_videos([stick, short_clip, text, tmp_path / "missing.mp4"],
                              RunOptions(model=tiny_ckpt, progress=False), on_result=lambda r: seen.append(r))
    assert [r.record["video"] for r in done] == [str(short_clip)] and seen == done
    reasons = {Path(f.video).name: f.reason for f in failed}
    assert reasons["stick.mp4"] == f"{stick}: no person found in 8 frames"
    assert "not a readable video" in reasons["notes.mp4"]
    assert reasons["missing.mp4"].endswith("missing.mp4: file not found")


def test_bundled_model_on_a_real_clip(shared_data: Path):
    if not prediction.BUNDLED_MODEL.is_file():
        pytest.skip("no bundled model in this checkout")
    done, failed = run_videos([shared_data / "videos" / "mmpose_demo_5frames.mp4"], RunOptions(progress=False))
    assert failed == []
    labels = done[0].record["labels"]
    penn = {"baseball_pitch", "baseball_swing", "bench_press", "bowl", "clean_and_jerk", "golf_swing", "jump_rope",
            "jumping_jacks", "pullup", "pushup", "situp", "squat", "strum_guitar", "tennis_forehand", "tennis_serve"}
    assert len(labels) == 5 and {lab["label"] for lab in labels} <= penn


def test_each_window_carries_its_own_open_set_verdict(short_clip: Path, tiny_ckpt: Path, tmp_path: Path):
    """With a rule, every window with a person gets "open_set" in the JSON, the verdict in the text and the render
    banner; a flagged clip still lists its top-k labels; a window too short to judge is never called known."""
    seen = {}
    for threshold, known in ((-1.0, False), (1e12, True)):
        model = with_rule(tiny_ckpt, tmp_path / f"rule{threshold:g}.pt", threshold)
        (run,), _ = run_videos([short_clip], RunOptions(model=model, topk=3, window=0.6, stride=0.4, progress=False))
        wins = run.record["windows"]
        assert len(wins) == 5 and all(w["open_set"]["known"] is known for w in wins)
        assert all(set(w["open_set"]) == {"known", "distance"} for w in wins)
        text = format_text(run).splitlines()
        window_lines = [line for line in text if line.endswith(")") and " s  " in line]
        assert len(window_lines) == 5
        assert all((UNKNOWN_ACTION in line) is not known for line in window_lines)
        assert sum(line.startswith("  0.") for line in text) == 3  # --topk 3 is kept, flagged or not
        assert (f"  {UNKNOWN_ACTION}; closest of the {len(CLASSES)}" in text[1]) is not known
        captions = window_captions(run.result, CLASSES)
        assert all(c.startswith(f"{UNKNOWN_ACTION} (closest: ") is not known for c in captions)
        seen[known] = run
    # The lax rule keeps the clip, but 0.2 s windows (5 frames at 25 fps) are glimpses: each is flagged alone.
    run = seen[True]
    res = classify(run.keypoint, run.score, run.fps, TorchPredictor(tmp_path / "rule1e+12.pt"), window=0.2)
    assert res.known is True and res.window_known is not None and not res.window_known.any()
