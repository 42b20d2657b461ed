"""MediaPipe BlazePose backend on real clips (few frames) and on a synthetic video with no person."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from estimators.mediapipe_pose import MediaPipeConfig, MediaPipePose
from estimators.tracking import box_iou, keypoint_box
from models.contract.errors import BadInput
from models.contract.skeleton import body_scale
from pipeline.extract.video import VideoReader
from tests.support.video_files import stick_figure_frames, write_video


def run(cfg: MediaPipeConfig, video: Path, n: int | None = None):
    est = MediaPipePose(cfg)
    with VideoReader(video) as r:
        return est.estimate(itertools.islice(r.frames(est.needs_frame), n), r.fps, r.img_shape)


def test_hq_on_real_clip(shared_data: Path):
    res = run(MediaPipeConfig.tier("high"), shared_data / "videos" / "mmpose_demo_5frames.mp4")
    assert res.keypoint.shape == (1, 5, 33, 2) and res.keypoint.dtype == np.float32
    assert res.keypoint_score.shape == (1, 5, 33)
    assert res.layout == "blazepose33" and res.img_shape == (540, 960) and res.fps > 0
    assert res.timing["frames"] == 5 and res.timing["processed"] == 5 and res.timing["pose_s"] > 0
    assert res.found_frames() == 5
    sc = res.keypoint_score
    assert ((sc >= 0) & (sc <= 1)).all()
    found = res.keypoint[sc > 0]
    # Pixel coordinates of the 960x540 frame (a joint may sit slightly outside when MediaPipe is sure of it).
    assert (found[:, 0] > -50).all() and (found[:, 0] < 1010).all() and (found[:, 1] > -50).all()
    assert found[:, 0].max() > 1 and found[:, 1].max() > 1  # not normalised [0, 1] coordinates
    assert (res.keypoint[sc == 0] == 0).all()


def test_lq_interpolates_skipped_frames_and_stays_close_to_hq(shared_data: Path):
    video = shared_data / "videos" / "tai_chi.mp4"
    est = MediaPipePose(MediaPipeConfig.tier("low"))
    with VideoReader(video) as r:
        frames = list(itertools.islice(r.frames(est.needs_frame), 9))
    assert [f is None for f in frames] == [False, True, True, True, False, True, True, True, False]  # grab() only
    lq = est.estimate(frames, 30.0, frames[0].shape[:2])
    assert lq.timing == {**lq.timing, "frames": 9, "processed": 3}
    kp, sc = lq.keypoint[0], lq.keypoint_score[0]
    both = (sc[0] > 0) & (sc[4] > 0)
    assert both.sum() > 20
    np.testing.assert_allclose(kp[1, both], 0.75 * kp[0, both] + 0.25 * kp[4, both], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(kp[6, both], 0.5 * kp[4, both] + 0.5 * kp[8, both], rtol=1e-5, atol=0.5)
    hq = run(MediaPipeConfig.tier("high"), video, 9)
    ok = (hq.keypoint_score > 0) & (lq.keypoint_score > 0)
    err = np.linalg.norm(hq.keypoint - lq.keypoint, axis=-1)[ok] / body_scale(hq.keypoint, hq.keypoint_score)
    assert np.median(err) < 0.1


def test_downscaled_input_still_gives_original_pixel_coordinates(shared_data: Path):
    video = shared_data / "videos" / "mmpose_demo_5frames.mp4"
    full = run(MediaPipeConfig.tier("high"), video, 2)
    small = run(MediaPipeConfig.tier("high", max_side=480), video, 2)  # 960x540 -> 480x270 for the model
    ok = (full.keypoint_score > 0) & (small.keypoint_score > 0)
    err = np.linalg.norm(full.keypoint - small.keypoint, axis=-1)[ok]
    assert np.median(err) / body_scale(full.keypoint, full.keypoint_score) < 0.05


def test_flip_average_agrees_with_plain(shared_data: Path):
    video = shared_data / "videos" / "mmpose_demo_5frames.mp4"
    plain = run(MediaPipeConfig.tier("high"), video, 2)
    flip = run(MediaPipeConfig.tier("high", flip_average=True), video, 2)
    assert flip.keypoint.shape == plain.keypoint.shape
    ok = (plain.keypoint_score > 0) & (flip.keypoint_score > 0)
    err = np.linalg.norm(plain.keypoint - flip.keypoint, axis=-1)[ok]
    assert np.median(err) / body_scale(plain.keypoint, plain.keypoint_score) < 0.05


def test_second_person_by_masking(shared_data: Path):
    res = run(MediaPipeConfig.tier("low", max_persons=2), shared_data / "videos" / "basketball.mp4", 12)
    assert res.keypoint.shape[0] == 2
    seen = (res.keypoint_score > 0).any(-1)
    assert seen[:, 0].all()
    a = keypoint_box(res.keypoint[0, 0], res.keypoint_score[0, 0])
    b = keypoint_box(res.keypoint[1, 0], res.keypoint_score[1, 0])
    assert box_iou(a, b) < 0.3  # two different people, not the same one twice


@pytest.mark.parametrize("quality", ["high", "low"])
def test_no_person_on_synthetic_video(tmp_path: Path, quality: str):
    video = write_video(tmp_path / "stick.mp4", stick_figure_frames())
    cfg = MediaPipeConfig.tier("high") if quality == "high" else MediaPipeConfig.tier("low")
    res = run(cfg, video)
    assert res.total_frames == 8 and res.found_frames() == 0
    assert res.keypoint.shape == (1, 8, 33, 2) and not res.keypoint_score.any()


def test_settings_identify_the_tier_without_loading_mediapipe():
    hq, lq = MediaPipePose(MediaPipeConfig.tier("high")), MediaPipePose(MediaPipeConfig.tier("low"))
    assert hq._mp is None  # settings() is the cache key: it must not need the model
    assert json.loads(json.dumps(hq.settings())) == hq.settings()
    assert hq.settings() != lq.settings()
    assert lq.settings()["stride"] == 4 and lq.settings()["static_image_mode"] is False
    assert hq.settings()["max_side"] is None and lq.settings()["max_side"] == 1280
    assert [hq.needs_frame(t) for t in range(5)] == [True] * 5
    assert [lq.needs_frame(t) for t in range(5)] == [True, False, False, False, True]


def test_a_needed_frame_that_was_not_decoded_is_an_error():
    with pytest.raises(ValueError, match="frame 0"):
        MediaPipePose(MediaPipeConfig.tier("high")).estimate([None], 25.0, (10, 10))


def test_bad_config_values():
    with pytest.raises(BadInput):
        MediaPipeConfig.tier("low", stride=0)
    with pytest.raises(BadInput):
        MediaPipeConfig.tier("high", max_persons=0)
