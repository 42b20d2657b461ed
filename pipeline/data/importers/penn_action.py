"""Penn Action (Zhang, Zhu, Derpanis, ICCV 2013): one `.mat` per clip, 13 joints, official train/test split."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.io
from tqdm import tqdm

from models.contract.errors import BadInput
from models.contract.layouts import PENN13
from models.contract.paths import vet_input
from models.contract.skeleton import Clip, SkeletonDataset
from pipeline.data.importers.base import Importer

PENN_CLASSES = ["baseball_pitch", "baseball_swing", "bench_press", "bowl", "clean_and_jerk", "golf_swing",
                "jump_rope", "jumping_jacks", "pullup", "pushup", "situp", "squat", "strum_guitar",
                "tennis_forehand", "tennis_serve"]
_REQUIRED = ("x", "y", "visibility", "action", "train")
# The dataset's README lists the columns as head, left_shoulder, right_shoulder, ..., but the annotations are
# mirrored: the person's right side comes first. Checked on all 2326 clips
# (tests/pipeline/data/importers/test_penn_action.py):
# right-handed actions move column 5 most (strum_guitar: 95% of clips), and facing the camera (jumping_jacks)
# column 1 is on the image's left. We store anatomical sides, as coco17 and BlazePose name them, so that
# conversion by joint name pairs the same body side.
FILE_TO_PENN13 = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11]  # penn13 joint j <- file column FILE_TO_PENN13[j]


def read_penn_mat(path: Path) -> tuple[Clip, bool]:
    """One clip and whether it is in the official train split."""
    vet_input(path, "mat")
    try:
        m = scipy.io.loadmat(path)
    except Exception as e:  # scipy raises several types for corrupt files
        raise BadInput(f"not a readable .mat file ({type(e).__name__}: {e})", path) from None
    missing = [k for k in _REQUIRED if k not in m]
    if missing:
        raise BadInput(f"not a Penn Action label file: lacks {', '.join(missing)}", path)
    try:
        x, y, vis = (np.asarray(m[k], dtype=np.float32) for k in ("x", "y", "visibility"))
    except (TypeError, ValueError):
        raise BadInput("x/y/visibility must be numeric T x 13 arrays", path) from None
    if x.ndim != 2 or x.shape[1] != 13 or x.shape != y.shape or x.shape != vis.shape or x.shape[0] < 1:
        raise BadInput(f"x/y/visibility must be T x 13 arrays of one shape, got {x.shape} {y.shape} {vis.shape}",
                       path)
    action = str(_first(m, "action", path)).strip()
    if action not in PENN_CLASSES:
        raise BadInput(f"unknown action {action!r}", path)
    x, y, vis = (a[:, FILE_TO_PENN13] for a in (x, y, vis))
    kp = np.stack([x, y], axis=-1)[None]  # [1, T, 13, 2]
    # Ground truth: score 1.0 everywhere. Occluded joints are still annotated (estimated) positions, so they
    # stay; the 0/1 visibility flags travel along as an extra key.
    score = np.ones(kp.shape[:3], np.float32)
    img_shape = None
    if "dimensions" in m:
        d = np.asarray(m["dimensions"]).ravel()
        if d.size >= 2:
            try:
                img_shape = (int(d[0]), int(d[1]))
            except (TypeError, ValueError, OverflowError):
                raise BadInput(f"dimensions {d[:2].tolist()!r} are not (height, width)", path) from None
    try:
        train = int(_first(m, "train", path)) == 1
    except (TypeError, ValueError, OverflowError):
        raise BadInput("train must be 1 or -1", path) from None
    clip = Clip(path.stem, PENN_CLASSES.index(action), kp, score, img_shape, fps=30.0,
                extra={"visibility": vis[None].astype(np.uint8)})
    return clip, train


def _first(m: dict, key: str, path: Path) -> object:
    a = np.asarray(m[key]).ravel()
    if a.size == 0:
        raise BadInput(f"'{key}' is empty", path)
    return a[0]


def import_penn_action(src: str | os.PathLike, progress: bool = True) -> SkeletonDataset:
    """Read every `NNNN.mat` under `src` (the `labels` folder)."""
    root = Path(src)
    if not root.is_dir():
        raise BadInput("folder not found", root)
    files = sorted(root.glob("*.mat"))
    if not files:
        raise BadInput("no .mat files in folder", root)
    clips, train, test = [], [], []
    # Bars only on a terminal (None: off when stderr is piped); as a context manager the bar is cleared before
    # a bad-input message is printed.
    with tqdm(files, desc="penn-action", unit="clip", leave=False, disable=None if progress else True) as it:
        for f in it:
            clip, is_train = read_penn_mat(f)
            clips.append(clip)
            (train if is_train else test).append(clip.frame_dir)
    return SkeletonDataset(clips, {"train": train, "test": test}, list(PENN_CLASSES), PENN13)


IMPORTER = Importer(help="the Penn Action `labels` folder of .mat files (official split, 15 classes)",
                    load=import_penn_action)
