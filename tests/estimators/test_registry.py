"""ESTIMATORS is the one list of pose estimators; each config decides its own high/low tiers."""

from __future__ import annotations

import dataclasses

import pytest

from estimators import DEFAULT, ESTIMATORS, QUALITIES, config_for, create, option_flags, options_for
from estimators.base import PoseEstimator, tracker_memory
from estimators.mediapipe_pose import MediaPipeConfig, MediaPipePose
from estimators.mmpose_hrnet import MMPoseConfig, mmpose_available
from estimators.openpose_lite import OpenPoseConfig
from models.contract.errors import BadInput
from pipeline.cli.dataset import build_cmd
from pipeline.cli.extract import extract_cmd
from pipeline.cli.live import live_cmd
from pipeline.cli.run import run_cmd
from pipeline.extract.driver import ExtractOptions, estimator_config, make_estimator


@pytest.mark.parametrize("name", list(ESTIMATORS))
@pytest.mark.parametrize("quality", QUALITIES)
def test_every_config_has_tiers_and_builds(name, quality):
    cls = ESTIMATORS[name]
    cfg = cls.tier(quality)
    assert isinstance(cfg, cls) and dataclasses.is_dataclass(cfg) and callable(cfg.build)


def test_low_is_decided_by_the_config_only():
    assert make_estimator(ExtractOptions(quality="low", estimator="mediapipe")).cfg == MediaPipeConfig.tier("low")
    assert (make_estimator(ExtractOptions(quality="high", estimator="mediapipe", stride=2)).cfg
            == MediaPipeConfig.tier("high", stride=2))
    assert MMPoseConfig.tier("low").stride == 4 and MMPoseConfig.tier("high").stride == 1
    assert isinstance(MediaPipeConfig.tier("low").build(), MediaPipePose)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_a_quality_that_is_not_a_tier_is_an_error_not_low(name):
    for bad in ("medium", "LOW", ""):
        with pytest.raises(BadInput, match=f"unknown quality {bad!r} \\(high, low\\)"):
            ESTIMATORS[name].tier(bad)
        with pytest.raises(BadInput, match="unknown quality"):
            ExtractOptions(quality=bad, estimator=name)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_the_registry_name_is_the_estimators_name(name):
    """`create` files an estimator under its registry name: the cache folder and `dataset build` use it."""
    if name == "mmpose" and not mmpose_available()[0]:
        pytest.skip("mmpose is not installed: pip install '.[mmpose]'")
    est = create(name, config_for(name, "low"))
    assert est.name == name and est.stride == est.cfg.stride == 4
    assert est.tracker_config().max_age == tracker_memory(4) == 60 and tracker_memory(30) == 120


def test_own_options_reach_only_their_estimator():
    opts = ExtractOptions(quality="low", estimator="mmpose", options={"box": "mediapipe"})
    cfg = estimator_config(opts)
    assert cfg.box == "mediapipe" and cfg.stride == 4
    with pytest.raises(BadInput, match="--smooth is not an option of --estimator mmpose"):
        estimator_config(ExtractOptions(quality="low", estimator="mmpose", smooth=3))
    with pytest.raises(BadInput, match="--flip-average is not an option of --estimator openpose-lite"):
        estimator_config(ExtractOptions(quality="low", estimator="openpose-lite", flip_average=True))
    with pytest.raises(BadInput, match="--mmpose-box is an option of --estimator mmpose, not blazepose"):
        options_for("blazepose", {"--mmpose-box": "frame"})
    with pytest.raises(BadInput, match="--estimator mmpose needs --mmpose-checkpoint"):
        options_for("mmpose", {})
    assert options_for("blazepose", {"--pose-model": "full"}) == {"model": "full"}


def test_cli_choices_and_options_are_the_registry():
    opt = next(p for p in extract_cmd.params if p.name == "estimator")
    assert list(opt.type.choices) == list(ESTIMATORS)
    flags = {f for p in extract_cmd.params for f in p.opts}
    assert set(option_flags()) <= flags and {"--pose-model", "--mmpose-checkpoint"} <= set(option_flags())
    assert "--model" not in flags  # a checkpoint in `run`; the landmark model is --pose-model everywhere
    for cmd in (build_cmd, run_cmd, live_cmd):  # every command that names an estimator offers the same names
        opt = next(p for p in cmd.params if p.name in ("estimator", "estimator_name"))
        assert list(opt.type.choices) == list(ESTIMATORS) and opt.default == DEFAULT
    assert set(option_flags()) <= {f for p in run_cmd.params for f in p.opts}


def test_validation_is_bad_input_in_every_backend():
    for cls, bad in ((MediaPipeConfig, {"stride": 0}), (OpenPoseConfig, {"height": 30}),
                     (MMPoseConfig, {"box": "sky"})):
        with pytest.raises(BadInput):
            cls.tier("high", **bad)


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
