"""BlazePose with the project's two tiers on two landmark models: heavy for HQ, lite for LQ (issue 14).

The backend is `estimators.mediapipe_pose.MediaPipePose`; this config only adds the landmark model as a choice
(`model`: lite | full | heavy, `--pose-model`) and ties each quality tier to one: `high` = heavy, per-frame
detection, every frame (the teacher's input); `low` = lite, tracking, every 4th frame (the student's). `full`
ships in the mediapipe wheel; lite and heavy are installed once with `pipeline models install` and are refused
(BadInput naming that command) when missing, except that `run`/`live` fall back to full (`fallback`). The
`mediapipe` estimator keeps the full model in both tiers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from estimators.base import Option
from estimators.mediapipe_pose import MODELS, MediaPipeConfig
from models.contract.errors import BadInput

FALLBACK_MODEL = "full"  # the one that needs no install


@dataclass(frozen=True)
class BlazePoseConfig(MediaPipeConfig):
    model: str = "heavy"  # type: ignore[assignment]  # a field here; MediaPipeConfig derives it from model_complexity

    TIERS: ClassVar[dict[str, dict]] = {q: {**t, "model": m} for (q, t), m in
                                        zip(MediaPipeConfig.TIERS.items(), ("heavy", "lite"))}
    OPTIONS: ClassVar[dict[str, Option]] = {
        "model": Option("BlazePose landmark model instead of the tier's (heavy for high, lite for low); full ships "
                        "in the mediapipe wheel, lite and heavy are installed with `pipeline models install`.",
                        choices=tuple(MODELS), flag="--pose-model")}
    HELP: ClassVar[str] = "BlazePose heavy (high) or lite (low) landmark model"

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise BadInput(f"unknown BlazePose model {self.model!r} ({', '.join(MODELS)})")
        object.__setattr__(self, "model_complexity", MODELS[self.model])  # the model decides; one source of truth
        super().__post_init__()

    def fallback(self) -> tuple[BlazePoseConfig, str] | None:
        if self.model == FALLBACK_MODEL:
            return None
        return replace(self, model=FALLBACK_MODEL), f"BlazePose {FALLBACK_MODEL} (ships with mediapipe)"
