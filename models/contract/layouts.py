"""Skeleton layouts: joint names, bones, centre joint; built-ins, custom JSON, conversion by joint name."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.contract.errors import BadInput
from models.contract.jsonio import read_json
from models.contract.numbers import ARCH_LIMITS


@dataclass(frozen=True)
class Layout:
    """A skeleton layout. `edges` are 0-based joint index pairs; `center` is the joint models centre on."""

    name: str
    joints: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    center: int
    # Joints used for body scale (shoulder/hip pairs); derived from names when empty.
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        v = len(self.joints)
        if v == 0:
            raise ValueError(f"layout {self.name!r}: no joints")
        if len(set(self.joints)) != v:
            raise ValueError(f"layout {self.name!r}: duplicate joint names")
        if not (0 <= self.center < v):
            raise ValueError(f"layout {self.name!r}: centre {self.center} out of range 0..{v - 1}")
        for i, j in self.edges:
            if not (0 <= i < v and 0 <= j < v):
                raise ValueError(f"layout {self.name!r}: edge ({i}, {j}) out of range 0..{v - 1}")
            if i == j:
                raise ValueError(f"layout {self.name!r}: self-loop edge ({i}, {j})")

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    def index(self, joint: str) -> int:
        return self.joints.index(joint)

    def flip_permutation(self) -> np.ndarray:
        """Joint permutation for a left-right mirror: `left_*` swaps with `right_*` (and `*_left`/`*_right`)."""
        perm = np.arange(self.num_joints)
        for i, name in enumerate(self.joints):
            other = _mirror_name(name)
            if other != name and other in self.joints:
                perm[i] = self.joints.index(other)
        return perm

    def to_dict(self) -> dict:
        return {"name": self.name, "joints": list(self.joints), "edges": [list(e) for e in self.edges],
                "center": self.center}

    @staticmethod
    def from_dict(d: dict, source: str = "layout") -> Layout:
        if not isinstance(d, dict):
            raise BadInput("layout JSON must be an object with name, joints, edges, center", source)
        missing = [k for k in ("name", "joints", "edges", "center") if k not in d]
        if missing:
            raise BadInput(f"layout JSON lacks {', '.join(missing)}", source)
        joints, edges, center = d["joints"], d["edges"], d["center"]
        if not isinstance(d["name"], str) or not d["name"]:
            raise BadInput("layout 'name' must be a non-empty string", source)
        if not isinstance(joints, list) or not joints or not all(isinstance(j, str) for j in joints):
            raise BadInput("layout 'joints' must be a non-empty list of names", source)
        if len(joints) > ARCH_LIMITS["joints"]:  # no model can be built for it: refuse before anything is made
            raise BadInput(f"layout has {len(joints)} joints (at most {ARCH_LIMITS['joints']})", source)
        if not isinstance(edges, list) or not all(
            isinstance(e, (list, tuple)) and len(e) == 2 and all(_is_int(x) for x in e) for e in edges
        ):
            raise BadInput("layout 'edges' must be a list of [i, j] integer pairs", source)
        if not _is_int(center):
            raise BadInput("layout 'center' must be a joint index", source)
        try:
            return Layout(d["name"], tuple(joints), tuple((int(i), int(j)) for i, j in edges), int(center))
        except ValueError as e:
            raise BadInput(str(e), source) from None


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _mirror_name(name: str) -> str:
    for a, b in (("left", "right"), ("right", "left")):
        if name.startswith(a + "_"):
            return b + name[len(a):]
        if name.endswith("_" + a):
            return name[: -len(a)] + b
    return name


def _edges(joints: tuple[str, ...], pairs: list[tuple[str, str]]) -> tuple[tuple[int, int], ...]:
    return tuple((joints.index(a), joints.index(b)) for a, b in pairs)


def _limbs() -> list[tuple[str, str]]:
    pairs = []
    for s in ("left", "right"):
        pairs += [(f"{s}_shoulder", f"{s}_elbow"), (f"{s}_elbow", f"{s}_wrist"),
                  (f"{s}_hip", f"{s}_knee"), (f"{s}_knee", f"{s}_ankle")]
    return pairs


_COCO = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
         "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
         "right_knee", "left_ankle", "right_ankle")
COCO17 = Layout("coco17", _COCO, _edges(_COCO, _limbs() + [
    ("nose", "left_eye"), ("nose", "right_eye"), ("left_eye", "left_ear"), ("right_eye", "right_ear"),
    ("nose", "left_shoulder"), ("nose", "right_shoulder"), ("left_shoulder", "right_shoulder"),
    ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"), ("left_hip", "right_hip")]), center=0)

_PENN = ("head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
         "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")
PENN13 = Layout("penn13", _PENN, _edges(_PENN, _limbs() + [
    ("head", "left_shoulder"), ("head", "right_shoulder"), ("left_shoulder", "right_shoulder"),
    ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"), ("left_hip", "right_hip")]), center=0)

_BLAZE = ("nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
          "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
          "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
          "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip", "right_hip",
          "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel", "right_heel",
          "left_foot_index", "right_foot_index")
_blaze_pairs = _limbs() + [
    ("nose", "left_eye_inner"), ("left_eye_inner", "left_eye"), ("left_eye", "left_eye_outer"),
    ("left_eye_outer", "left_ear"), ("nose", "right_eye_inner"), ("right_eye_inner", "right_eye"),
    ("right_eye", "right_eye_outer"), ("right_eye_outer", "right_ear"), ("mouth_left", "mouth_right"),
    ("left_shoulder", "right_shoulder"), ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"),
    ("left_hip", "right_hip"),
    # Unlike MediaPipe's drawing connections, link the face to the body so the graph is connected
    # (mouth corners on both sides, so the graph stays left-right symmetric for flip augmentation).
    ("nose", "left_shoulder"), ("nose", "right_shoulder"), ("mouth_left", "nose"), ("mouth_right", "nose"),
]
for _s in ("left", "right"):
    _blaze_pairs += [(f"{_s}_wrist", f"{_s}_pinky"), (f"{_s}_wrist", f"{_s}_index"),
                     (f"{_s}_pinky", f"{_s}_index"), (f"{_s}_wrist", f"{_s}_thumb"),
                     (f"{_s}_ankle", f"{_s}_heel"), (f"{_s}_heel", f"{_s}_foot_index"),
                     (f"{_s}_ankle", f"{_s}_foot_index")]
BLAZEPOSE33 = Layout("blazepose33", _BLAZE, _edges(_BLAZE, _blaze_pairs), center=0)

_NTU = ("spine_base", "spine_mid", "neck", "head", "left_shoulder", "left_elbow", "left_wrist", "left_hand",
        "right_shoulder", "right_elbow", "right_wrist", "right_hand", "left_hip", "left_knee", "left_ankle",
        "left_foot", "right_hip", "right_knee", "right_ankle", "right_foot", "spine_shoulder",
        "left_hand_tip", "left_thumb", "right_hand_tip", "right_thumb")
# The ST-GCN NTU bone list (1-based in the original), spine_shoulder (index 20) as centre.
_NTU_BONES_1 = [(1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9), (11, 10),
                (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19),
                (22, 23), (23, 8), (24, 25), (25, 12)]
NTU25 = Layout("ntu25", _NTU, tuple((i - 1, j - 1) for i, j in _NTU_BONES_1), center=20)

_OPENPOSE = ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
             "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
             "right_eye", "left_eye", "right_ear", "left_ear")
OPENPOSE18 = Layout("openpose18", _OPENPOSE, ((4, 3), (3, 2), (7, 6), (6, 5), (13, 12), (12, 11), (10, 9),
                                              (9, 8), (11, 5), (8, 2), (5, 1), (2, 1), (0, 1), (15, 0),
                                              (14, 0), (17, 15), (16, 14)), center=1)

# OpenPose BODY_25: the COCO-18 body plus the hip midpoint and three points per foot, in OpenPose's order.
_BODY25 = ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
           "left_wrist", "mid_hip", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
           "right_eye", "left_eye", "right_ear", "left_ear", "left_big_toe", "left_small_toe", "left_heel",
           "right_big_toe", "right_small_toe", "right_heel")
BODY25 = Layout("body25", _BODY25, ((1, 8), (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (8, 9), (9, 10),
                                    (10, 11), (8, 12), (12, 13), (13, 14), (1, 0), (0, 15), (15, 17), (0, 16),
                                    (16, 18), (14, 19), (19, 20), (14, 21), (11, 22), (22, 23), (11, 24)), center=1)

BUILTIN: dict[str, Layout] = {lay.name: lay for lay in (COCO17, BLAZEPOSE33, PENN13, NTU25, OPENPOSE18, BODY25)}

# Joints of different estimators that mean the same body point.
ALIASES: dict[str, tuple[str, ...]] = {
    "head": ("nose",), "nose": ("head",),
    "left_hand": ("left_wrist",), "right_hand": ("right_wrist",),
    # BODY_25's joints (only aliases that name one of its joints, so older conversions stay as they were)
    "mid_hip": ("spine_base",), "spine_base": ("mid_hip",),
    "left_big_toe": ("left_foot_index", "left_foot"), "right_big_toe": ("right_foot_index", "right_foot"),
    "left_foot_index": ("left_big_toe",), "right_foot_index": ("right_big_toe",),
    "left_foot": ("left_big_toe",), "right_foot": ("right_big_toe",),
}
# Joints some layouts lack but that are midpoints of joints they have.
MIDPOINTS: dict[str, tuple[str, str]] = {
    "neck": ("left_shoulder", "right_shoulder"),
    "spine_shoulder": ("left_shoulder", "right_shoulder"),
    "spine_base": ("left_hip", "right_hip"),
    "mid_hip": ("left_hip", "right_hip"),
}


def get_layout(spec: str | os.PathLike | Layout | dict) -> Layout:
    """A built-in layout by name, a custom one from a JSON file path, or a dict as stored in files."""
    if isinstance(spec, Layout):
        return spec
    if isinstance(spec, dict):
        return Layout.from_dict(spec)
    s = os.fspath(spec)
    if s in BUILTIN:
        return BUILTIN[s]
    if s.endswith(".json") or os.path.sep in s or Path(s).is_file():
        return Layout.from_dict(read_json(s, "layout"), s)
    raise BadInput(f"unknown layout (built-in: {', '.join(BUILTIN)}; or a path to a layout .json)", s)


def conversion_plan(src: Layout, dst: Layout) -> list[tuple[int, ...]]:
    """For each joint of `dst`, the `src` joints it is taken from (1 = same, 2 = midpoint, 0 = missing)."""
    plan: list[tuple[int, ...]] = []
    for name in dst.joints:
        if name in src.joints:
            plan.append((src.index(name),))
        elif any(a in src.joints for a in ALIASES.get(name, ())):
            plan.append((src.index(next(a for a in ALIASES[name] if a in src.joints)),))
        elif name in MIDPOINTS and all(m in src.joints for m in MIDPOINTS[name]):
            plan.append(tuple(src.index(m) for m in MIDPOINTS[name]))
        else:
            plan.append(())
    return plan


def convert(keypoint: np.ndarray, score: np.ndarray | None, src: Layout, dst: Layout
            ) -> tuple[np.ndarray, np.ndarray]:
    """Map `[..., V_src, C]` keypoints (and `[..., V_src]` scores) onto `dst` by joint name.

    Joints `dst` has and `src` lacks come out as zeros with score 0 (models treat them as missing).
    """
    if keypoint.shape[-2] != src.num_joints:
        raise BadInput(f"keypoints have {keypoint.shape[-2]} joints but layout {src.name} has {src.num_joints}")
    if score is None:
        score = np.ones(keypoint.shape[:-1], dtype=np.float32)
    out_k = np.zeros(keypoint.shape[:-2] + (dst.num_joints, keypoint.shape[-1]), dtype=keypoint.dtype)
    out_s = np.zeros(keypoint.shape[:-2] + (dst.num_joints,), dtype=np.float32)
    for j, srcs in enumerate(conversion_plan(src, dst)):
        if not srcs:
            continue
        out_k[..., j, :] = keypoint[..., list(srcs), :].mean(axis=-2)
        out_s[..., j] = score[..., list(srcs)].min(axis=-1)
    return out_k, out_s


def coverage(src: Layout, dst: Layout) -> float:
    """Fraction of `dst` joints that `src` can supply."""
    plan = conversion_plan(src, dst)
    return sum(1 for p in plan if p) / len(plan)
