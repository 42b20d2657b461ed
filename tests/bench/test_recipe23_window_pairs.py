"""bench/recipe23/window_pairs.py: paired long clips cut into `run`'s windows, pairs kept, empty windows dropped."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from models.contract.layouts import get_layout
from models.contract.skeleton import Clip, SkeletonDataset

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("window_pairs", ROOT / "bench" / "recipe23" / "window_pairs.py")
window_pairs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(window_pairs)


def _clip(name: str, t: int, seen: slice, offset: float) -> Clip:
    kp = (np.arange(t, dtype=np.float32)[None, :, None, None] + offset) * np.ones((1, t, 13, 2), np.float32)
    sc = np.zeros((1, t, 13), np.float32)
    sc[:, seen] = 0.9
    return Clip(name, 0, kp, sc, (480, 640), 10.0)


def test_windows_of_a_long_pair_and_a_short_one():
    lay = get_layout("penn13")
    # 30 s at 10 fps: 4-s windows every 2 s -> starts 0, 20, ..., 260; the person leaves after 20 s in LQ.
    hq = SkeletonDataset([_clip("long", 300, slice(0, 300), 0.0), _clip("short", 50, slice(0, 50), 0.0)],
                         {"unlabeled": ["long", "short"]}, ["unlabeled"], lay)
    lq = SkeletonDataset([_clip("long", 300, slice(0, 200), 0.5), _clip("short", 50, slice(0, 50), 0.5)],
                         {"unlabeled": ["long", "short"]}, ["unlabeled"], lay)
    h, lo = window_pairs.windowed(hq, lq)
    names = [c.frame_dir for c in h.clips]
    assert names == [c.frame_dir for c in lo.clips]
    # min_frames(10 fps) = 8 frames with a person in both: LQ's last person frame is 199, so the window starting at
    # 180 (frames 180-219: 20 seen) stays and 200 (none seen) goes; a clip of at most 10 s is one window.
    assert names == [f"long@{s}" for s in range(0, 181, 20)] + ["short@0"]
    assert h.split == {"unlabeled": names}
    w = h.clips[1]
    assert w.total_frames == 40 and w.keypoint[0, 0, 0, 0] == 20.0 and lo.clips[1].keypoint[0, 0, 0, 0] == 20.5
    assert h.clips[-1].total_frames == 50 and w.fps == 10.0 and w.img_shape == (480, 640)
