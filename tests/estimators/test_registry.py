"""ESTIMATORS is the one list of pose estimators; each config decides its own high/low tiers."""

from __future__ import annotations

import dataclasses

import pytest

from estimators import ESTIMATORS, QUALITIES
from estimators.base import PoseEstimator
from estimators.mediapipe_pose import MediaPipeConfig, MediaPipePose
from estimators.mmpose_hrnet import MMPoseConfig
from pipeline.cli.extract import extract_cmd
from pipeline.extract.driver import ExtractOptions, make_estimator


@pytest.mark.parametrize("name", list(ESTIMATORS))
@pytest.mark.parametrize("quality", QUALITIES)
def test_every_config_has_tiers_and_builds(name, quality):
    cls = ESTIMATORS[name]
    cfg = cls.tier(quality)
    assert isinstance(cfg, cls) and dataclasses.is_dataclass(cfg) and callable(cfg.build)


def test_low_is_decided_by_the_config_only():
    assert make_estimator(ExtractOptions(quality="low", estimator="mediapipe")).cfg == MediaPipeConfig.low()
    assert (make_estimator(ExtractOptions(quality="high", estimator="mediapipe", stride=2)).cfg
            == MediaPipeConfig.high(stride=2))
    assert MMPoseConfig.tier("low").stride == 4 and MMPoseConfig.tier("high").stride == 1
    assert isinstance(MediaPipeConfig.tier("low").build(), MediaPipePose)


def test_prefixed_options_reach_only_their_estimator():
    opts = ExtractOptions(quality="low", estimator="mmpose", mmpose_box="mediapipe", smooth=3)
    own = {f.name for f in dataclasses.fields(MMPoseConfig)}
    assert "smooth" not in own and "box" in own
    cfg = MMPoseConfig.tier(opts.quality, box=opts.mmpose_box)
    assert cfg.box == "mediapipe" and cfg.stride == 4


def test_cli_choices_are_the_dict():
    opt = next(p for p in extract_cmd.params if p.name == "estimator")
    assert list(opt.type.choices) == list(ESTIMATORS)


@pytest.mark.parametrize("quality", QUALITIES)
def test_stride_is_part_of_the_interface(quality):
    """`PoseEstimator.stride` (what `pipeline live` sizes its tracker from) says which frames `needs_frame` wants;
    an estimator that does not override it poses every frame."""
    est = MediaPipeConfig.tier(quality).build()
    assert est.stride == est.cfg.stride
    assert [t for t in range(12) if est.needs_frame(t)] == list(range(0, 12, est.stride))

    class EveryFrame(PoseEstimator):
        def settings(self) -> dict:
            return {}

        def estimate(self, frames, fps, img_shape):
            raise NotImplementedError

    assert EveryFrame().stride == 1
