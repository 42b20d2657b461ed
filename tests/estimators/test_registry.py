"""ESTIMATORS is the one list of pose estimators; each config decides its own high/low tiers."""

from __future__ import annotations

import dataclasses

import pytest

from estimators import ESTIMATORS, QUALITIES
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
    assert make_estimator(ExtractOptions(quality="low")).cfg == MediaPipeConfig.low()
    assert make_estimator(ExtractOptions(quality="high", stride=2)).cfg == MediaPipeConfig.high(stride=2)
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
