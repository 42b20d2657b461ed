"""Pose estimators: frames in, `[M, T, V, C]` keypoints and scores out (see `estimators.base`).

`ESTIMATORS` is the one list of them: name -> its config class. A config class knows its quality tiers
(`tier("high" | "low", **overrides)`) and builds its estimator (`.build()`); heavy third-party imports stay
inside the backend, on first use. Adding an estimator = its module here plus one line below; `pipeline extract
--estimator` reads its choices from this dict.
"""

from estimators.mediapipe_pose import MediaPipeConfig
from estimators.mmpose_hrnet import MMPoseConfig

ESTIMATORS: dict[str, type] = {
    "mediapipe": MediaPipeConfig,
    "mmpose": MMPoseConfig,
}
QUALITIES = ("high", "low")
