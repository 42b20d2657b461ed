"""Pose estimators: frames in, `[M, T, V, C]` keypoints and scores out (see `estimators.base`).

`ESTIMATORS` is the one list of them: name -> its config class (an `estimators.base.EstimatorConfig`). The
name is the estimator's everywhere: `extract --estimator`, the cache folder, `dataset build --estimator`,
`run`/`live --estimator`. A config class declares its quality tiers (`TIERS`), its own options (`OPTIONS`, which
the CLI offers), the weights it needs (`weights()`, rows of `estimators.weights.CATALOGUE` its module
registers) and builds its estimator; heavy third-party imports stay inside the backend, on first use. Adding an
estimator = its module here plus one line below.
"""

from estimators.base import QUALITIES, EstimatorConfig, PoseEstimator, check_quality
from estimators.blazepose import BlazePoseConfig
from estimators.mediapipe_pose import MediaPipeConfig
from estimators.mmpose_hrnet import MMPoseConfig
from estimators.openpose_lite import OpenPoseConfig
from models.contract.errors import BadInput

ESTIMATORS: dict[str, type[EstimatorConfig]] = {
    "blazepose": BlazePoseConfig,
    "mediapipe": MediaPipeConfig,
    "openpose-lite": OpenPoseConfig,
    "mmpose": MMPoseConfig,
}
DEFAULT = "blazepose"  # heavy for high, lite for low

__all__ = ["DEFAULT", "ESTIMATORS", "QUALITIES", "check_quality", "config_for", "create", "estimator_class"]


def estimator_class(name: str) -> type[EstimatorConfig]:
    if name not in ESTIMATORS:
        raise BadInput(f"unknown estimator {name!r} ({', '.join(ESTIMATORS)})")
    return ESTIMATORS[name]


def config_for(name: str, quality: str, **overrides) -> EstimatorConfig:
    """Estimator `name`'s tier `quality` with `overrides` (config field -> value) on top."""
    return estimator_class(name).tier(quality, **overrides)


def create(name: str, cfg: EstimatorConfig) -> PoseEstimator:
    """The estimator `cfg` builds, under the registry's `name` (what the cache files its entries under)."""
    est = cfg.build()
    est.name = name
    return est


def option_flags() -> dict[str, tuple[str, str]]:
    """CLI flag -> (estimator, config field) of every backend's own options (`EstimatorConfig.OPTIONS`)."""
    out: dict[str, tuple[str, str]] = {}
    for name, cls in ESTIMATORS.items():
        for fname, opt in cls.OPTIONS.items():
            flag = opt.flag or f"--{name}-{fname.replace('_', '-')}"
            if flag in out:
                raise ValueError(f"estimators {out[flag][0]} and {name} both declare {flag}")
            out[flag] = (name, fname)
    return out


def options_for(name: str, given: dict[str, object]) -> dict[str, object]:
    """Estimator `name`'s own options from the flags a user gave (`flag -> value`, unset ones left out):
    config field -> value. A flag of another estimator, or a required one missing, is a BadInput."""
    cls = estimator_class(name)
    flags = option_flags()
    own: dict[str, object] = {}
    for flag, value in given.items():
        owner, fname = flags[flag]
        if owner != name:
            raise BadInput(f"{flag} is an option of --estimator {owner}, not {name}")
        own[fname] = value
    for flag, (owner, fname) in flags.items():
        if owner == name and cls.OPTIONS[fname].required and fname not in own:
            raise BadInput(f"--estimator {name} needs {flag}: {cls.OPTIONS[fname].help}")
    return own
