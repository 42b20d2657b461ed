"""BlazePose with the project's two tiers on two landmark models: heavy for HQ, lite for LQ (issue 14).

The backend is `estimators.mediapipe_pose.MediaPipePose`; this config only adds the landmark model as a choice
(`model`: lite | full | heavy) and ties each quality tier to one: `high` = heavy, per-frame detection, every
frame (the teacher's input); `low` = lite, tracking, every 4th frame (the student's). `full` ships in the
mediapipe wheel; lite and heavy are installed once with `pipeline models install` and are refused (BadInput
naming that command) when missing. The `mediapipe` estimator keeps the full model in both tiers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from estimators.mediapipe_pose import MODELS, MediaPipeConfig, MediaPipePose

TIER_MODEL = {"high": "heavy", "low": "lite"}
FALLBACK_MODEL = "full"  # the one that needs no install


@dataclass(frozen=True)
class BlazePoseConfig(MediaPipeConfig):
    model: str = "heavy"  # type: ignore[assignment]  # a field here; MediaPipeConfig derives it from model_complexity

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}")
        object.__setattr__(self, "model_complexity", MODELS[self.model])  # the model decides; one source of truth
        super().__post_init__()

    @staticmethod
    def tier(quality: str, **overrides) -> BlazePoseConfig:
        """MediaPipe's HQ/LQ settings with the tier's landmark model (heavy/lite) unless `model` is given."""
        base = asdict(MediaPipeConfig.tier(quality))
        return BlazePoseConfig(**{**base, "model": TIER_MODEL[quality], **overrides})

    def build(self) -> MediaPipePose:
        return MediaPipePose(self)
