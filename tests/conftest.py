"""Shared fixtures: small datasets the tests make themselves, and the optional real data in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from models.contract.layouts import get_layout
from models.contract.skeleton import Clip, SkeletonDataset

# ../shared beside the repo (development and CI); SKD_SHARED_DIR points elsewhere, or at a missing folder to run
# the suite as a user's clone would (every test that needs it then skips).
SHARED_ROOT = Path(os.environ.get("SKD_SHARED_DIR") or Path(__file__).resolve().parents[1].parent / "shared")
SHARED = SHARED_ROOT / "data"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"real data folder {SHARED} is absent (it sits beside the repo in development and CI only; "
                    f"SKD_SHARED_DIR names another place)")
    return SHARED


def make_dataset(n_per_class: int = 4, num_classes: int = 3, layout: str = "coco17", m: int = 1, t: int = 24,
                 c: int = 2, seed: int = 0) -> SkeletonDataset:
    """Tiny synthetic dataset: each class moves a different joint group with its own frequency."""
    lay = get_layout(layout)
    rng = np.random.default_rng(seed)
    clips, train, test = [], [], []
    base = rng.normal(0, 1, size=(lay.num_joints, c)).astype(np.float32)
    for k in range(num_classes):
        for i in range(n_per_class):
            ts = np.arange(t, dtype=np.float32)[:, None]
            kp = np.repeat(base[None], t, 0) * 50 + 200
            joints = np.arange(lay.num_joints) % num_classes == k
            kp[:, joints, 0] += 30 * np.sin(ts * (0.3 + 0.2 * k) + i)
            kp = np.repeat(kp[None], m, 0) + rng.normal(0, 1, size=(m, t, lay.num_joints, c))
            name = f"c{k}_{i}"
            clips.append(Clip(name, k, kp.astype(np.float32), np.ones((m, t, lay.num_joints), np.float32),
                              (480, 640)))
            (train if i < n_per_class - 1 else test).append(name)
    return SkeletonDataset(clips, {"train": train, "test": test}, [f"class_{k}" for k in range(num_classes)], lay)


@pytest.fixture
def tiny_dataset() -> SkeletonDataset:
    return make_dataset()


@pytest.fixture(scope="module")
def restore_torch_threads():
    """In-process commands set torch's thread count for the whole process: put it back after the module."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)
