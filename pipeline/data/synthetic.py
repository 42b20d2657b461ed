"""Procedural skeleton actions for the demo and tests: no data, no download.

A 2D stick body in the penn13 layout is posed by joint angles that each action animates over time, with
natural variation per clip (speed, amplitude, phase, body size, position, camera roll, duration, noise).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from models.contract.layouts import PENN13
from models.contract.skeleton import Clip, SkeletonDataset


@dataclass
class Pose:
    """Joint angles in radians (0 = limb hanging straight down; positive = away from the body's midline)."""

    torso: float = 0.0          # forward/sideways tilt of the trunk
    l_shoulder: float = 0.15
    l_elbow: float = 0.05
    r_shoulder: float = 0.15
    r_elbow: float = 0.05
    l_hip: float = 0.05
    l_knee: float = 0.0
    r_hip: float = 0.05
    r_knee: float = 0.0
    drop: float = 0.0           # root moves down by this fraction of leg length (squats, landing)


_SEG = {"torso": 0.52, "upper_arm": 0.30, "forearm": 0.28, "thigh": 0.45, "shin": 0.43, "shoulder": 0.19,
        "hip": 0.11, "head": 0.22}


def render(p: Pose) -> np.ndarray:
    """Penn13 joint positions `[13, 2]` for a pose, in body units, image axes (y down)."""
    up = np.array([np.sin(p.torso), -np.cos(p.torso)])
    side = np.array([np.cos(p.torso), np.sin(p.torso)])  # towards the person's left (image right)
    hip_c = np.array([0.0, p.drop * (_SEG["thigh"] + _SEG["shin"])])
    neck = hip_c + _SEG["torso"] * up
    out = np.zeros((13, 2))
    out[0] = neck + _SEG["head"] * up

    def limb(root: np.ndarray, s: float, a1: float, a2: float, l1: float, l2: float, base: np.ndarray):
        down = -base
        d1 = np.cos(a1) * down + np.sin(a1) * (s * side)
        d2 = np.cos(a1 + a2) * down + np.sin(a1 + a2) * (s * side)
        mid = root + l1 * d1
        return mid, mid + l2 * d2

    for s, sh, el, wr, hp, kn, an, a_s, a_e, a_h, a_k in (
        (1, 1, 3, 5, 7, 9, 11, p.l_shoulder, p.l_elbow, p.l_hip, p.l_knee),
        (-1, 2, 4, 6, 8, 10, 12, p.r_shoulder, p.r_elbow, p.r_hip, p.r_knee),
    ):
        out[sh] = neck + s * _SEG["shoulder"] * side
        out[hp] = hip_c + s * _SEG["hip"] * side
        out[el], out[wr] = limb(out[sh], s, a_s, a_e, _SEG["upper_arm"], _SEG["forearm"], up)
        # Legs hang from a vertical base: the trunk tilt should not swing them.
        out[kn], out[an] = limb(out[hp], s, a_h, -a_k, _SEG["thigh"], _SEG["shin"], np.array([0.0, -1.0]))
    return out


def _wave(side: str) -> Callable[[float, float], Pose]:
    def f(ph: float, a: float) -> Pose:
        kw = {f"{side}_shoulder": 2.5 * a, f"{side}_elbow": 0.3 + 0.6 * a * np.sin(ph)}
        return Pose(**kw)
    return f


def _jumping_jacks(ph: float, a: float) -> Pose:
    s = 0.5 - 0.5 * np.cos(ph)
    return Pose(l_shoulder=0.2 + 2.6 * a * s, r_shoulder=0.2 + 2.6 * a * s, l_hip=0.05 + 0.35 * a * s,
                r_hip=0.05 + 0.35 * a * s, drop=-0.08 * np.sin(ph) ** 2)


def _squat(ph: float, a: float) -> Pose:
    s = 0.5 - 0.5 * np.cos(ph)
    return Pose(l_shoulder=1.5 * a * s + 0.1, r_shoulder=1.5 * a * s + 0.1, l_hip=0.1 + 0.5 * s * a,
                r_hip=0.1 + 0.5 * s * a, l_knee=1.0 * s * a, r_knee=1.0 * s * a, drop=0.3 * s * a)


def _arm_circles(ph: float, a: float) -> Pose:
    return Pose(l_shoulder=1.6 + 0.9 * a * np.sin(ph), r_shoulder=1.6 + 0.9 * a * np.sin(ph),
                l_elbow=0.2 * np.cos(ph), r_elbow=0.2 * np.cos(ph))


def _punch(ph: float, a: float) -> Pose:
    left, right = max(0.0, np.sin(ph)), max(0.0, -np.sin(ph))
    return Pose(l_shoulder=0.6 + 1.0 * a * left, l_elbow=2.2 * (1 - left * a),
                r_shoulder=0.6 + 1.0 * a * right, r_elbow=2.2 * (1 - right * a), torso=0.1 * np.sin(ph))


def _bow(ph: float, a: float) -> Pose:
    return Pose(torso=0.9 * a * (0.5 - 0.5 * np.cos(ph)))


def _march(ph: float, a: float) -> Pose:
    left, right = max(0.0, np.sin(ph)), max(0.0, -np.sin(ph))
    return Pose(l_hip=0.05 + 0.8 * a * left, l_knee=1.4 * a * left, r_hip=0.05 + 0.8 * a * right,
                r_knee=1.4 * a * right, l_shoulder=0.15 + 0.4 * right, r_shoulder=0.15 + 0.4 * left,
                drop=0.04 * (left + right))


# (name, pose function, cycles per second)
ACTIONS: list[tuple[str, Callable[[float, float], Pose], float]] = [
    ("wave_left", _wave("l"), 1.6), ("wave_right", _wave("r"), 1.6), ("jumping_jacks", _jumping_jacks, 1.2),
    ("squat", _squat, 0.6), ("arm_circles", _arm_circles, 1.0), ("punch", _punch, 1.4), ("bow", _bow, 0.5),
    ("march", _march, 1.0),
]


def make_clip(action: int, rng: np.random.Generator, fps: float = 30.0, img_shape: tuple[int, int] = (480, 640),
              name: str | None = None) -> Clip:
    """One clip of `ACTIONS[action]` with random speed, amplitude, phase, size, place, roll, length and noise."""
    _, fn, hz = ACTIONS[action]
    t = int(rng.integers(40, 90))
    speed = hz * rng.uniform(0.7, 1.3)
    amp = rng.uniform(0.8, 1.15)
    phase0 = rng.uniform(0, 2 * np.pi)
    height = rng.uniform(0.35, 0.6) * img_shape[0]
    centre = np.array([rng.uniform(0.3, 0.7) * img_shape[1], rng.uniform(0.45, 0.6) * img_shape[0]])
    roll = rng.normal(0, 0.08)
    rot = np.array([[np.cos(roll), -np.sin(roll)], [np.sin(roll), np.cos(roll)]])
    drift = rng.normal(0, 0.3, size=2)  # px per frame
    # Per-clip wobble in every joint angle so no two clips of a class are alike.
    wobble = rng.normal(0, 0.08, size=10)
    frames = np.empty((t, 13, 2), np.float32)
    for i in range(t):
        ph = phase0 + 2 * np.pi * speed * i / fps
        p = fn(ph, amp)
        for j, field_name in enumerate(("torso", "l_shoulder", "l_elbow", "r_shoulder", "r_elbow", "l_hip",
                                        "l_knee", "r_hip", "r_knee", "drop")):
            setattr(p, field_name, getattr(p, field_name) + wobble[j] * (0.3 if field_name == "drop" else 1))
        body = render(p) @ rot.T * (height / 1.9)
        frames[i] = body + centre + drift * i
    frames += rng.normal(0, 0.004 * height, size=frames.shape).astype(np.float32)
    return Clip(name or f"{ACTIONS[action][0]}_{rng.integers(1 << 30)}", action, frames[None],
                np.ones((1, t, 13), np.float32), img_shape, fps)


def make_dataset(clips_per_class: int = 40, test_fraction: float = 0.3, seed: int = 0,
                 actions: list[int] | None = None) -> SkeletonDataset:
    """A labelled HQ (clean) dataset with train/test splits."""
    rng = np.random.default_rng(seed)
    actions = list(range(len(ACTIONS))) if actions is None else actions
    clips, train, test = [], [], []
    n_test = max(1, int(round(clips_per_class * test_fraction)))
    for new_label, a in enumerate(actions):
        for i in range(clips_per_class):
            c = make_clip(a, rng, name=f"{ACTIONS[a][0]}_{i:03d}")
            c.label = new_label
            clips.append(c)
            (test if i < n_test else train).append(c.frame_dir)
    return SkeletonDataset(clips, {"train": train, "test": test}, [ACTIONS[a][0] for a in actions], PENN13,
                           {"source": f"pipeline.data.synthetic seed={seed}"})
