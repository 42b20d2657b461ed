"""The model's input transform: temporal sampling, normalisation, augmentation, joint/bone/motion features.

Normalisation belongs to the model, not the data file, so one model works on pixels, normalised image
coordinates or metres alike:
- centre: the mean position of the layout's centre joint over every valid (person, frame) of the clip. One shared
  centre per clip (not per frame) keeps global motion (a jump, a squat) and where the people stand relative to
  each other; if the centre joint is never valid, the mean of all valid joints stands in.
- scale: the median over valid (person, frame) of the diagonal of the bounding box of the valid joints. The median
  ignores the odd frame where a detector found only two joints or a far-flung outlier.
- `norm="torso"` instead: centre on the mid-shoulder point and scale by the torso (shoulders and hips, or the
  shoulder width or head-to-neck length when the hips are gone). A bounding box shrinks by half when the legs
  leave the frame (an upper-body close-up); the torso does not.
Missing joints (non-finite coordinates or score 0) become zeros after normalisation and in every feature that
depends on them, and their score channel is 0.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from models.contract.layouts import Layout
from models.contract.numbers import ARCH_LIMITS, check_number
from models.contract.skeleton import Clip
from models.net.graph import center_distance

FEATURES = ("joint", "bone", "motion")
NORMS = ("bbox", "torso")
TORSO_PER_BBOX = 3.0  # torso length x this ~ a standing person's bounding-box diagonal: similar input ranges


@dataclass
class InputConfig:
    length: int = 64
    features: tuple[str, ...] = ("joint",)  # any of joint, bone, motion, concatenated on channels
    use_score: bool = True  # append the keypoint score as a channel
    max_persons: int = 2
    # Training augmentation, drawn per sample by `draw_augment`.
    aug_scale: float = 0.1  # each axis scaled by a factor in [1 - s, 1 + s]
    aug_rotation: float = 10.0  # degrees; 2D: in the image plane, 3D: about the vertical (y) axis
    aug_flip: bool = True  # left-right mirror with joints swapped by name, half of the time
    norm: str = "bbox"  # "bbox" or "torso" (see the module docstring); part of the model's input, kept at run time
    # Windows cut as `pipeline run` cuts a video (0 = off: the whole trimmed clip): the training window covers a
    # random fraction in [aug_window, 1] of the clip padded with up to aug_idle x its length of still frames
    # (the first and last frame held) at each end. Together they also change the apparent speed.
    aug_window: float = 0.0
    aug_idle: float = 0.0
    # Framing: with probability aug_crop the clip is seen through a camera frame that cuts the body (joints outside
    # go missing, and the normalisation is taken from what is left): half of the time an upper-body close-up,
    # else random edges pulled in. aug_shear: a random shear +-s (x += s * y), a change of view.
    aug_crop: float = 0.0
    aug_shear: float = 0.0

    def __post_init__(self) -> None:
        self.features = tuple(self.features)
        bad = [f for f in self.features if f not in FEATURES]
        if bad or not self.features:
            raise ValueError(f"features must be a non-empty subset of {FEATURES}, got {self.features}")
        if len(set(self.features)) != len(self.features):
            raise ValueError(f"duplicate features in {self.features}")
        check_number("length", self.length, 1, 100_000, integer=True)
        check_number("max_persons", self.max_persons, 1, ARCH_LIMITS["max_persons"], integer=True)
        check_number("aug_scale", self.aug_scale, 0, 1, hi_open=True)
        check_number("aug_rotation", self.aug_rotation, 0, 180)
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        for name in ("aug_window", "aug_crop"):
            check_number(name, getattr(self, name), 0, 1)
        check_number("aug_idle", self.aug_idle, 0, 4)
        check_number("aug_shear", self.aug_shear, 0, 1)

    def to_dict(self) -> dict:
        return {"length": self.length, "features": list(self.features), "use_score": self.use_score,
                "max_persons": self.max_persons, "aug_scale": self.aug_scale, "aug_rotation": self.aug_rotation,
                "aug_flip": self.aug_flip, "norm": self.norm, "aug_window": self.aug_window,
                "aug_idle": self.aug_idle, "aug_crop": self.aug_crop, "aug_shear": self.aug_shear}

    @staticmethod
    def from_dict(d: dict) -> InputConfig:
        known = set(InputConfig.__dataclass_fields__)
        kw = {k: v for k, v in d.items() if k in known}
        if "features" in kw:
            kw["features"] = tuple(kw["features"])
        return InputConfig(**kw)


def in_channels(cfg: InputConfig, coord_dims: int) -> int:
    return len(cfg.features) * coord_dims + (1 if cfg.use_score else 0)


def sample_indices(total: int, length: int, train: bool, rng: np.random.Generator | None = None,
                   num_clips: int = 1) -> np.ndarray:
    """`[num_clips, length]` frame indices: the clip cut into `length` equal segments, one frame from each.

    Training picks a random frame in each segment; test picks, for clip j of `num_clips`, the frame at fraction
    (j + 0.5) / num_clips of each segment (the centre when there is one clip). A clip shorter than `length`
    repeats frames in order, so the whole action is always seen.
    """
    if total < 1 or length < 1:
        raise ValueError("total and length must be >= 1")
    seg = total / length
    starts = np.arange(length) * seg
    if train:
        rng = rng if rng is not None else np.random.default_rng()
        frac = rng.random((num_clips, length))
    else:
        frac = np.repeat(((np.arange(num_clips) + 0.5) / num_clips)[:, None], length, axis=1)
    idx = np.floor(starts[None] + frac * seg).astype(np.int64)
    return np.clip(idx, 0, total - 1)


def train_indices(total: int, cfg: InputConfig, rng: np.random.Generator) -> np.ndarray:
    """`[length]` frame indices of one training window: the whole clip (`sample_indices`), or, with
    `cfg.aug_window`, a random sub-window of the clip padded with still frames, as `run` cuts a real video."""
    if cfg.aug_window <= 0 and cfg.aug_idle <= 0:
        return sample_indices(total, cfg.length, True, rng)[0]
    pre, post = (int(round(f * cfg.aug_idle * total)) for f in rng.random(2))
    padded = pre + total + post
    lo = cfg.aug_window if cfg.aug_window > 0 else 1.0
    span = max(1, int(round(rng.uniform(lo, 1.0) * padded)))
    start = int(rng.integers(0, padded - span + 1))
    idx = start + sample_indices(span, cfg.length, True, rng)[0]
    return np.clip(idx - pre, 0, total - 1)  # the padding holds the first and the last frame


@dataclass
class AugmentParams:
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    rotation: float = 0.0  # radians
    flip: bool = False
    shear: float = 0.0
    # Camera frame as fractions of the clip's joint extent (left, top, right, bottom; 0 0 1 1 = all of it),
    # None: no cut.
    crop: tuple[float, float, float, float] | None = None


def draw_augment(rng: np.random.Generator, cfg: InputConfig) -> AugmentParams | None:
    """One draw of augmentation parameters; share it between an HQ and an LQ view of the same clip."""
    if cfg.aug_scale <= 0 and cfg.aug_rotation <= 0 and not cfg.aug_flip and cfg.aug_crop <= 0 \
            and cfg.aug_shear <= 0:
        return None
    scale = tuple(float(s) for s in rng.uniform(1 - cfg.aug_scale, 1 + cfg.aug_scale, 3)) \
        if cfg.aug_scale > 0 else (1.0, 1.0, 1.0)
    rot = float(np.deg2rad(rng.uniform(-cfg.aug_rotation, cfg.aug_rotation))) if cfg.aug_rotation > 0 else 0.0
    flip = bool(rng.random() < 0.5) if cfg.aug_flip else False
    shear = float(rng.uniform(-cfg.aug_shear, cfg.aug_shear)) if cfg.aug_shear > 0 else 0.0
    crop = _draw_crop(rng) if cfg.aug_crop > 0 and rng.random() < cfg.aug_crop else None
    return AugmentParams(scale, rot, flip, shear, crop)  # type: ignore[arg-type]


def _draw_crop(rng: np.random.Generator) -> tuple[float, float, float, float]:
    """A camera frame that cuts the body: an upper-body close-up (bottom edge between the chest and the knees,
    image y pointing down) half of the time, else each edge pulled in by up to a third with probability 1/2."""
    if rng.random() < 0.5:
        return 0.0, 0.0, 1.0, float(rng.uniform(0.35, 0.75))
    cut = np.where(rng.random(4) < 0.5, rng.uniform(0.0, 1 / 3, 4), 0.0)
    return float(cut[0]), float(cut[1]), float(1 - cut[2]), float(1 - cut[3])


@functools.lru_cache(maxsize=64)
def bone_parents(layout: Layout) -> np.ndarray:
    """For each joint, its neighbour one hop nearer the centre (lowest index on ties); -1 for the centre and
    for joints with no nearer neighbour (their bone feature is 0)."""
    dist = center_distance(layout)
    parent = np.full(layout.num_joints, -1, dtype=np.int64)
    for i, j in sorted(layout.edges):
        for child, par in ((i, j), (j, i)):
            if dist[par] < dist[child] and (parent[child] < 0 or par < parent[child]):
                parent[child] = par
    parent.flags.writeable = False  # cached and shared
    return parent


@functools.lru_cache(maxsize=64)
def _flip_perm(layout: Layout) -> np.ndarray:
    return layout.flip_permutation()


@dataclass
class ClipStats:
    """Per-clip normalisation: persons kept (best first), centre `[C]` and body scale."""

    persons: np.ndarray
    center: np.ndarray
    scale: float


def clip_stats(clip: Clip, layout: Layout, max_persons: int, norm: str = "bbox") -> ClipStats:
    kp = np.asarray(clip.keypoint, dtype=np.float32)
    return _stats(kp, _valid_mask(kp, clip.keypoint_score), layout, max_persons, norm)


def _stats(kp: np.ndarray, valid: np.ndarray, layout: Layout, max_persons: int, norm: str) -> ClipStats:
    # Keep the persons with the most valid joints (a pose estimator's spurious extra people have few).
    order = np.argsort(-valid.reshape(valid.shape[0], -1).sum(1), kind="stable")[:max_persons]
    kp, valid = kp[order], valid[order]
    torso = _torso_stats(kp, valid, layout) if norm == "torso" else None
    if torso is not None:
        return ClipStats(np.sort(order), *torso)
    c = layout.center
    cv = valid[:, :, c]
    if cv.any():
        center = kp[:, :, c][cv].mean(0)
    elif valid.any():
        center = kp[valid].mean(0)
    else:
        center = np.zeros(kp.shape[-1], np.float32)
    # Bounding-box diagonal per (person, frame) over valid joints, vectorised.
    big = np.float32(np.inf)
    lo = np.where(valid[..., None], kp, big).min(2)
    hi = np.where(valid[..., None], kp, -big).max(2)
    enough = valid.sum(2) >= 2
    diag = np.linalg.norm(np.where(enough[..., None], hi - lo, 0), axis=-1)
    diag = diag[enough & (diag > 0)]
    scale = float(np.median(diag)) if diag.size else 1.0
    return ClipStats(np.sort(order), center.astype(np.float32), scale if np.isfinite(scale) and scale > 0 else 1.0)


@functools.lru_cache(maxsize=64)
def _torso_joints(layout: Layout) -> tuple[int, int, int, int, int | None] | None:
    """(left/right shoulder, left/right hip, head or None) by name; None when the layout lacks any of the four."""
    names = {n: i for i, n in enumerate(layout.joints)}
    want = ("left_shoulder", "right_shoulder", "left_hip", "right_hip")
    if not all(n in names for n in want):
        return None
    head = next((names[n] for n in ("head", "nose") if n in names), None)
    return (*(names[n] for n in want), head)  # type: ignore[return-value]


def _torso_stats(kp: np.ndarray, valid: np.ndarray, layout: Layout) -> tuple[np.ndarray, float] | None:
    """Centre (mean mid-shoulder point) and scale (TORSO_PER_BBOX x the median torso size) of `[M, T, V, C]`, or
    None when the shoulders are never both seen (the caller falls back to the bounding box).

    Per frame the torso size is the largest of: shoulder-to-hip midpoint distance, 1.5 x the shoulder width, 3 x
    the head-to-neck distance, over those whose joints are seen: each shrinks under its own foreshortening (side
    view, bending), the largest rarely all at once, and none needs the legs."""
    joints = _torso_joints(layout)
    if joints is None:
        return None
    ls, rs, lh, rh, head = joints
    sh = valid[..., ls] & valid[..., rs]
    if not sh.any():
        return None
    neck = (kp[..., ls, :] + kp[..., rs, :]) / 2
    sizes = [np.where(sh, 1.5 * np.linalg.norm(kp[..., ls, :] - kp[..., rs, :], axis=-1), 0)]
    hips = sh & valid[..., lh] & valid[..., rh]
    pelvis = (kp[..., lh, :] + kp[..., rh, :]) / 2
    sizes.append(np.where(hips, np.linalg.norm(neck - pelvis, axis=-1), 0))
    if head is not None:
        hd = sh & valid[..., head]
        sizes.append(np.where(hd, 3.0 * np.linalg.norm(kp[..., head, :] - neck, axis=-1), 0))
    size = np.max(np.stack(sizes), axis=0)[sh]
    size = size[np.isfinite(size) & (size > 0)]
    if not size.size:
        return None
    return neck[sh].mean(0).astype(np.float32), TORSO_PER_BBOX * float(np.median(size))


def _valid_mask(kp: np.ndarray, score: np.ndarray | None) -> np.ndarray:
    valid = np.isfinite(kp).all(-1)
    if score is not None:
        score = np.asarray(score)
        valid &= np.isfinite(score) & (score > 0)  # an infinite score is as broken as a NaN one
    return valid


def make_input(clip: Clip, layout: Layout, cfg: InputConfig, indices: np.ndarray,
               augment: AugmentParams | None = None, stats: ClipStats | None = None) -> np.ndarray:
    """float32 `[max_persons, len(indices), V, in_channels]` for the frames `indices` of `clip`."""
    v = layout.num_joints
    if clip.keypoint.shape[2] != v:
        raise ValueError(f"clip {clip.frame_dir!r} has {clip.keypoint.shape[2]} joints, layout {layout.name} {v}")
    indices = np.asarray(indices, dtype=np.int64)
    if augment is not None and augment.crop is not None:
        # The frame cuts the body: what falls outside is missing, and the normalisation comes from what is left,
        # as it would from a real estimator's output of such a video.
        full = np.asarray(clip.keypoint, dtype=np.float32)
        score_all = np.where(_crop_mask(full, _valid_mask(full, clip.keypoint_score), augment.crop),
                             clip.scores(), 0).astype(np.float32)
        stats = _stats(full, score_all > 0, layout, cfg.max_persons, cfg.norm)
    else:
        score_all = clip.scores()
        stats = stats if stats is not None else clip_stats(clip, layout, cfg.max_persons, cfg.norm)
    kp = np.asarray(clip.keypoint[stats.persons][:, indices], dtype=np.float32)  # [M', T, V, C]
    score = score_all[stats.persons][:, indices].astype(np.float32)
    valid = np.isfinite(kp).all(-1) & np.isfinite(score) & (score > 0)
    kp = np.where(valid[..., None], (kp - stats.center) / stats.scale, 0).astype(np.float32)
    cdim = kp.shape[-1]
    if augment is not None:
        if augment.flip:
            perm = _flip_perm(layout)
            kp, valid, score = kp[:, :, perm], valid[:, :, perm], score[:, :, perm]
            kp[..., 0] = -kp[..., 0]
        if augment.rotation:
            kp = kp @ _rotation(augment.rotation, cdim).T
        if augment.shear:
            kp[..., 0] = kp[..., 0] + augment.shear * kp[..., 1]
        kp = kp * np.asarray(augment.scale[:cdim], np.float32)
        kp = np.where(valid[..., None], kp, 0).astype(np.float32)
    feats = []
    for name in cfg.features:
        if name == "joint":
            feats.append(kp)
        elif name == "bone":
            parent = bone_parents(layout)
            has = parent >= 0
            p = np.where(has, parent, 0)
            ok = valid & valid[:, :, p] & has
            feats.append(np.where(ok[..., None], kp - kp[:, :, p], 0))
        else:  # motion: to the next sampled frame; 0 at the end and where either end is missing
            mo = np.zeros_like(kp)
            ok = valid[:, 1:] & valid[:, :-1]
            mo[:, :-1] = np.where(ok[..., None], kp[:, 1:] - kp[:, :-1], 0)
            feats.append(mo)
    if cfg.use_score:
        feats.append(np.where(valid, score, 0)[..., None])
    x = np.concatenate(feats, axis=-1).astype(np.float32)
    out = np.zeros((cfg.max_persons,) + x.shape[1:], np.float32)
    out[: x.shape[0]] = x
    return out


def _crop_mask(kp: np.ndarray, valid: np.ndarray, crop: tuple[float, float, float, float]) -> np.ndarray:
    """`valid` less the joints outside the frame `crop` (fractions of the extent of the valid x, y over the clip)."""
    if not valid.any():
        return valid
    pts = kp[..., :2][valid]
    lo, hi = pts.min(0), pts.max(0)
    ext = np.maximum(hi - lo, 1e-6)
    box_lo = lo + ext * np.asarray(crop[:2], np.float32)
    box_hi = lo + ext * np.asarray(crop[2:], np.float32)
    with np.errstate(invalid="ignore"):
        inside = ((kp[..., :2] >= box_lo) & (kp[..., :2] <= box_hi)).all(-1)
    return valid & inside


def _rotation(theta: float, dims: int) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    if dims == 2:
        return np.array([[c, -s], [s, c]], np.float32)
    # 3D: about the vertical (y) axis, a change of viewpoint.
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], np.float32)
