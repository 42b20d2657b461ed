"""BlazePose lite and heavy (installed with `pipeline models install`) on a real photo and a short real video."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from estimators.mediapipe_pose import MODELS, MediaPipeConfig, MediaPipePose
from models.contract.errors import BadInput
from models.contract.skeleton import body_scale
from pipeline.extract.video import VideoReader
from tests.support.model_files import need_blazepose

# COCO-17 keypoint k is blazepose33 joint COCO_TO_BP33[k].
COCO_TO_BP33 = [0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28]


@pytest.mark.parametrize("model", ["lite", "heavy"])
def test_photo_matches_the_annotation(shared_data: Path, model: str):
    need_blazepose(model)
    img = cv2.imread(str(shared_data / "images" / "coco" / "000000000785.jpg"))  # one person, 15 joints annotated
    ann = json.loads((shared_data / "images" / "coco" / "test_coco.json").read_text())["annotations"]
    kps = [np.asarray(a["keypoints"], np.float32).reshape(17, 3) for a in ann if a["image_id"] == 785]
    assert len(kps) == 1
    est = MediaPipePose(MediaPipeConfig.tier("high", model_complexity=MODELS[model]))
    est.begin_video()
    found = est.detect(img)
    est.close()
    assert len(found) == 1
    kp, sc = found[0]
    vis = (kps[0][:, 2] > 0) & (sc[COCO_TO_BP33] > 0)
    assert vis.sum() >= 12
    err = np.linalg.norm(kp[COCO_TO_BP33][vis] - kps[0][vis, :2], axis=1)
    assert np.median(err) < 15, err  # the person is ~300 px tall


def test_lite_and_heavy_on_video_agree_and_differ_in_cache_key(shared_data: Path):
    need_blazepose("lite")
    need_blazepose("heavy")
    res, settings = {}, {}
    for model in ("lite", "heavy"):
        est = MediaPipePose(MediaPipeConfig.tier("high", model_complexity=MODELS[model]))
        settings[model] = est.settings()
        with VideoReader(shared_data / "videos" / "tai_chi.mp4") as r:
            res[model] = est.estimate(itertools.islice(r.frames(est.needs_frame), 6), r.fps, r.img_shape)
        est.close()
        assert res[model].found_frames() == 6
    assert settings["lite"]["model"] == "lite" and settings["heavy"]["model"] == "heavy"
    assert settings["lite"]["weights_sha256"].startswith("f17bfbec")
    assert settings["heavy"]["weights_sha256"].startswith("59e42d71")
    lite, heavy = res["lite"], res["heavy"]
    ok = (lite.keypoint_score > 0) & (heavy.keypoint_score > 0)
    err = np.linalg.norm(lite.keypoint - heavy.keypoint, axis=-1)[ok] / body_scale(heavy.keypoint,
                                                                                   heavy.keypoint_score)
    assert ok.sum() > 100 and 0 < np.median(err) < 0.1  # two different models, on the same person


def test_full_needs_nothing_installed_and_names_its_weights():
    s = MediaPipePose(MediaPipeConfig.tier("high")).settings()
    assert s["model"] == "full" and len(s["weights_sha256"]) == 64
    with pytest.raises(BadInput):
        MediaPipeConfig.tier("high", model_complexity=3)
