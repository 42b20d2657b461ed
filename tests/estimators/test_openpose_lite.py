"""OpenPose-lite (OpenVINO Lightweight OpenPose + PAF grouping) on a real photo and a real video from ../shared."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from estimators.openpose_lite import OpenPoseConfig, OpenPoseLite
from estimators.tracking import box_iou, keypoint_box
from models.contract.errors import BadInput
from pipeline.extract.video import VideoReader
from tests.support.model_files import openpose_models_dir

pytest.importorskip("openvino", reason="openpose-lite needs the openvino package")

# COCO-17 keypoint k is openpose18 joint COCO_TO_OP18[k] (COCO: nose, l_eye, r_eye, l_ear, r_ear, l_sho, r_sho,
# l_elb, r_elb, l_wri, r_wri, l_hip, r_hip, l_knee, r_knee, l_ank, r_ank).
COCO_TO_OP18 = [0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10]


@pytest.fixture(scope="module")
def estimator_factory(tmp_path_factory):
    saved = os.environ.get("SKD_MODELS_DIR")
    openpose_models_dir(tmp_path_factory.mktemp("models"))
    yield lambda **kw: OpenPoseLite(OpenPoseConfig(**kw))
    if saved is None:
        os.environ.pop("SKD_MODELS_DIR", None)
    else:
        os.environ["SKD_MODELS_DIR"] = saved


def annotations(shared: Path, image_id: int) -> list[np.ndarray]:
    data = json.loads((shared / "images" / "coco" / "test_coco.json").read_text())
    return [np.asarray(a["keypoints"], np.float32).reshape(17, 3) for a in data["annotations"]
            if a["image_id"] == image_id and a["num_keypoints"] > 0]


def test_photo_four_people_match_the_annotation(shared_data: Path, estimator_factory):
    img = cv2.imread(str(shared_data / "images" / "coco" / "000000196141.jpg"))
    found = estimator_factory().detect(img)
    assert len(found) == 4
    anns = annotations(shared_data, 196141)
    assert len(anns) == 4
    noses = [a[0, :2] for a in anns if a[0, 2] > 0]
    assert len(noses) == 3
    for nose in noses:  # every annotated nose has a detected nose within 8 px
        d = min(np.linalg.norm(kp[0] - nose) if sc[0] > 0 else np.inf for kp, sc in found)
        assert d < 8, (nose, d)
    used = set()
    for ann in anns:  # each annotated person: one detection whose joints (left/right included) sit on it
        vis = ann[:, 2] > 0
        errs = []
        for kp, sc in found:
            both = vis & (sc[COCO_TO_OP18] > 0)
            errs.append(np.median(np.linalg.norm(kp[COCO_TO_OP18][both] - ann[both, :2], axis=1))
                        if both.sum() >= 5 else np.inf)
        best = int(np.argmin(errs))
        assert errs[best] < 10 and best not in used, errs
        used.add(best)
    for kp, sc in found:
        assert sc.dtype == np.float32 and ((sc >= 0) & (sc <= 1)).all() and (kp[sc == 0] == 0).all()
        assert (kp[sc > 0, 0] < img.shape[1]).all() and (kp[sc > 0, 1] < img.shape[0]).all()


def test_video_two_people_followed(shared_data: Path, estimator_factory):
    est = estimator_factory(max_persons=2)
    with VideoReader(shared_data / "videos" / "arm_wrestling.mp4") as r:
        res = est.estimate(itertools.islice(r.frames(est.needs_frame), 30), r.fps, r.img_shape)
    assert res.keypoint.shape == (2, 30, 18, 2) and res.layout == "openpose18" and res.img_shape == (256, 340)
    assert res.timing["processed"] == 30
    sc = res.keypoint_score
    assert ((sc > 0).sum(-1) >= 8).all()  # both people, with most joints, in every frame
    necks = [res.keypoint[p, :, 1, 0] for p in range(2)]
    assert abs(float(np.median(necks[0] - necks[1]))) > 60  # two different people (necks ~115 px apart)
    assert np.abs(np.diff(necks[0])).max() < 20 and np.abs(np.diff(necks[1])).max() < 20  # no identity swaps
    boxes = [keypoint_box(res.keypoint[p, 0], sc[p, 0]) for p in range(2)]
    assert box_iou(boxes[0], boxes[1]) < 0.5


def test_stride_interpolates_and_settings_are_the_cache_key(shared_data: Path, estimator_factory):
    est = estimator_factory(stride=4)
    assert est.stride == 4 and [t for t in range(9) if est.needs_frame(t)] == [0, 4, 8]  # what `live` reads
    with VideoReader(shared_data / "videos" / "tai_chi.mp4") as r:
        frames = list(itertools.islice(r.frames(est.needs_frame), 9))
    assert [f is None for f in frames] == [False, True, True, True, False, True, True, True, False]
    res = est.estimate(frames, 30.0, frames[0].shape[:2])
    kp, sc = res.keypoint[0], res.keypoint_score[0]
    both = (sc[0] > 0) & (sc[4] > 0)
    assert both.sum() >= 8
    np.testing.assert_allclose(kp[2, both], 0.5 * kp[0, both] + 0.5 * kp[4, both], atol=1e-3)
    fresh = estimator_factory(stride=4)
    s = fresh.settings()
    assert json.loads(json.dumps(s)) == s and fresh._model is None  # cheap: the model is not loaded for it
    assert s == est.settings()
    assert s["weights_sha256"]["human-pose-estimation-0001.bin"].startswith("fc7e9dde")
    assert s != estimator_factory().settings()


def test_missing_weights_is_bad_input(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("SKD_MODELS_DIR", str(tmp_path))
    est = OpenPoseLite()
    with pytest.raises(BadInput, match="pipeline models install SRC openpose-lite"):
        est.settings()
    with pytest.raises(BadInput, match="not in"):
        est.detect(np.zeros((64, 64, 3), np.uint8))
