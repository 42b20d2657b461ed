"""The real pose weights in ../shared/models (MODELS.md there), for tests; skip with the reason when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from estimators import weights
from tests.conftest import SHARED_ROOT

SHARED_MODELS = SHARED_ROOT / "models"


def shared_models() -> Path:
    if not SHARED_MODELS.is_dir():
        pytest.skip(f"real weights folder {SHARED_MODELS} is absent (it sits beside the repo in development and CI)")
    return SHARED_MODELS


def openpose_models_dir(tmp: Path) -> Path:
    """A fresh models folder with openpose-lite installed from ../shared/models (sets SKD_MODELS_DIR)."""
    os.environ["SKD_MODELS_DIR"] = str(tmp)
    weights.install(shared_models() / "openpose_lite", ["openpose-lite"])
    return tmp


def need_blazepose(model: str) -> None:
    """Skip unless BlazePose `model` (lite, heavy) is installed where MediaPipe reads it."""
    name = f"blazepose-{model}"
    st = weights.state(name)
    if not st.installed or not (weights.mediapipe_landmark_dir() / st.files[0].name).is_file():
        pytest.skip(f"{name} is not installed ({st.problem()}): pipeline models install ../shared/models/blazepose")
