"""The skeleton data contract: one clip (`keypoint [M,T,V,C]`, `keypoint_score [M,T,V]`) and a labelled set."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from models.contract.layouts import Layout, convert


@dataclass
class Clip:
    """One skeleton sequence. Coordinates are whatever the source used (pixels, normalised, metres)."""

    frame_dir: str
    label: int
    keypoint: np.ndarray                      # [M, T, V, C] float (float16 allowed on disk and in memory)
    keypoint_score: np.ndarray | None = None  # [M, T, V]; None means 1.0 everywhere (ground truth)
    img_shape: tuple[int, int] | None = None  # (h, w) where known
    fps: float | None = None
    extra: dict = field(default_factory=dict)  # other annotation keys, kept for lossless round-trips

    @property
    def num_persons(self) -> int:
        return int(self.keypoint.shape[0])

    @property
    def total_frames(self) -> int:
        return int(self.keypoint.shape[1])

    @property
    def num_channels(self) -> int:
        return int(self.keypoint.shape[3])

    def scores(self) -> np.ndarray:
        if self.keypoint_score is None:
            return np.ones(self.keypoint.shape[:3], dtype=np.float32)
        return self.keypoint_score


@dataclass
class SkeletonDataset:
    """Clips, named splits (frame_dir lists), class names, and the layout every clip is in."""

    clips: list[Clip]
    split: dict[str, list[str]]
    classes: list[str]
    layout: Layout
    extra: dict = field(default_factory=dict)  # other top-level keys of the pickle
    layout_from: str = ""  # how the layout was decided (stored, given, guessed); shown by `dataset info`, not saved
    warnings: list[str] = field(default_factory=list)  # importers' notes for the user; not saved

    def by_name(self) -> dict[str, Clip]:
        return {c.frame_dir: c for c in self.clips}

    def subset(self, split_name: str) -> list[Clip]:
        if split_name not in self.split:
            raise KeyError(split_name)
        index = self.by_name()
        return [index[n] for n in self.split[split_name] if n in index]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_channels(self) -> int:
        return self.clips[0].num_channels if self.clips else 2


def body_scale(keypoint: np.ndarray, score: np.ndarray | None = None) -> float:
    """A robust body size for a clip: the median over frames of each person's bounding-box diagonal."""
    k = keypoint[..., :2].astype(np.float32)
    valid = np.isfinite(k).all(-1)
    if score is not None:
        valid &= score > 0
    sizes = []
    for m in range(k.shape[0]):
        for t in range(k.shape[1]):
            pts = k[m, t][valid[m, t]]
            if len(pts) >= 2:
                d = float(np.linalg.norm(pts.max(0) - pts.min(0)))
                if d > 0:
                    sizes.append(d)
    return float(np.median(sizes)) if sizes else 1.0


def convert_dataset(ds: SkeletonDataset, dst: Layout) -> SkeletonDataset:
    """Every clip mapped onto `dst` by joint name (joints `dst` has and the source lacks get score 0)."""
    if dst == ds.layout:
        return ds
    clips = []
    for c in ds.clips:
        kp, sc = convert(c.keypoint, c.keypoint_score, ds.layout, dst)
        extra = {k: v for k, v in c.extra.items() if not _is_per_joint(v, c)}
        clips.append(replace(c, keypoint=kp, keypoint_score=sc, extra=extra))
    return replace(ds, clips=clips, layout=dst)


def _is_per_joint(v: object, clip) -> bool:
    # Per-joint extras (Penn's visibility flags) no longer line up after a layout change.
    return isinstance(v, np.ndarray) and v.shape[:3] == clip.keypoint.shape[:3]
