"""MSR Action3D (Li, Zhang, Liu, CVPR workshops 2010): 20 actions by 10 subjects, skeletons of a depth camera.

One text file per sequence, `aAA_sSS_eEE_skeleton.txt` (action, subject, execution): 20 lines per frame, one per
joint, `u v depth c` (u, v: image pixels of the 320x240 depth map). The `..._skeleton3D.txt` files of the same
release hold world coordinates `x y z c` instead; a folder of those imports as 3-D. The last column is not a
confidence (the release notes call it unusable), so scores are 1 (ground truth, like Penn Action's). A sequence
whose coordinates are all zero (no skeleton tracked; one in the release) is left out with a warning.

Joint order: the release's (shoulders, neck, spine, hips, hip centre, elbows, wrists, hands, knees, ankles, feet,
head), with sides as the body's: the paper has one-arm actions done with the right arm, and in every one of them
the second joint of each pair moves most, so the second of a pair is `right_*` (the depth map is mirrored).
Split: the usual cross-subject protocol, subjects 1, 3, 5, 7, 9 train, the others test.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from models.contract.errors import BadInput
from models.contract.layouts import Layout
from models.contract.paths import vet_input
from models.contract.skeleton import Clip, SkeletonDataset
from pipeline.data.importers.base import Importer

MSR_CLASSES = ["high_arm_wave", "horizontal_arm_wave", "hammer", "hand_catch", "forward_punch", "high_throw",
               "draw_x", "draw_tick", "draw_circle", "hand_clap", "two_hand_wave", "side_boxing", "bend",
               "forward_kick", "side_kick", "jogging", "tennis_swing", "tennis_serve", "golf_swing",
               "pick_up_and_throw"]
_JOINTS = ("left_shoulder", "right_shoulder", "spine_shoulder", "spine_mid", "left_hip", "right_hip", "spine_base",
           "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand", "right_hand", "left_knee",
           "right_knee", "left_ankle", "right_ankle", "left_foot", "right_foot", "head")
_BONES = [("head", "spine_shoulder"), ("spine_shoulder", "spine_mid"), ("spine_mid", "spine_base"),
          *[(a.format(s), b.format(s)) for s in ("left", "right") for a, b in (
              ("spine_shoulder", "{}_shoulder"), ("{}_shoulder", "{}_elbow"), ("{}_elbow", "{}_wrist"),
              ("{}_wrist", "{}_hand"), ("spine_base", "{}_hip"), ("{}_hip", "{}_knee"), ("{}_knee", "{}_ankle"),
              ("{}_ankle", "{}_foot"))]]
MSR20 = Layout("msr20", _JOINTS, tuple((_JOINTS.index(a), _JOINTS.index(b)) for a, b in _BONES),
               center=_JOINTS.index("spine_mid"))
TRAIN_SUBJECTS = frozenset({1, 3, 5, 7, 9})
_NAME = re.compile(r"^a(\d\d)_s(\d\d)_e(\d\d)_skeleton(3D)?\.txt$")


def read_msr_file(path: Path) -> np.ndarray:
    """`[T, 20, 4]` float32 rows of one sequence file."""
    vet_input(path, "text")
    try:
        rows = np.loadtxt(path, dtype=np.float32, ndmin=2)
    except ValueError as e:
        raise BadInput(f"not a table of numbers ({e})", path) from None
    if rows.shape[1] != 4 or rows.shape[0] == 0 or rows.shape[0] % 20:
        raise BadInput(f"expected 20 rows of 4 numbers per frame, got a {rows.shape[0]} x {rows.shape[1]} table",
                       path)
    if not np.isfinite(rows).all():
        raise BadInput("non-finite coordinates", path)
    return rows.reshape(-1, 20, 4)


def import_msr_action3d(src: str | os.PathLike, progress: bool = True) -> SkeletonDataset:
    """Read every `aAA_sSS_eEE_skeleton.txt` (2-D) or `..._skeleton3D.txt` (3-D) file in the folder `src`."""
    root = Path(src)
    if not root.is_dir():
        raise BadInput("folder not found", root)
    found = [(f, _NAME.match(f.name)) for f in sorted(root.iterdir())]
    found = [(f, m) for f, m in found if m]
    if not found:
        raise BadInput("no aAA_sSS_eEE_skeleton(3D).txt files in folder", root)
    kinds = {bool(m.group(4)) for _, m in found}
    if len(kinds) > 1:
        raise BadInput("both image (_skeleton.txt) and world (_skeleton3D.txt) files: keep one kind", root)
    world = kinds.pop()
    clips, split, warnings = [], {"train": [], "test": []}, []
    for f, m in found:
        action, subject = int(m.group(1)), int(m.group(2))
        if not 1 <= action <= len(MSR_CLASSES):
            raise BadInput(f"action {action} outside 1..{len(MSR_CLASSES)}", f)
        rows = read_msr_file(f)
        kp = rows[..., :3] if world else rows[..., :2]
        if not kp.any():
            warnings.append(f"{f.name}: all coordinates are zero (no skeleton); left out")
            continue
        clip = Clip(f.name.split("_skeleton")[0], action - 1, kp[None].copy(), None,
                    None if world else (240, 320), fps=15.0)
        clips.append(clip)
        split["train" if subject in TRAIN_SUBJECTS else "test"].append(clip.frame_dir)
    return SkeletonDataset(clips, split, list(MSR_CLASSES), MSR20, warnings=warnings)


IMPORTER = Importer(help="MSR Action3D skeleton .txt files (20 joints, 20 actions; image u,v or world x,y,z; "
                         "cross-subject split)", load=import_msr_action3d)
