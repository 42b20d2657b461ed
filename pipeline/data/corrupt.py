"""Low-quality skeleton simulation for skeleton-only datasets (no video to run a fast estimator on).

Spec string, e.g. `drop=0.6,impute=3,jitter=0.02,framedrop=0.1,seed=0`:
- `drop`: each (person, frame, joint) entry goes missing with this probability (the SKD paper code's protocol);
- `impute`: missing coordinates are filled with the mean of the present values within +-w frames, else 0
  (0 disables imputation: missing entries stay 0 with score 0);
- `jitter`: Gaussian noise, standard deviation as a fraction of the clip's body size;
- `framedrop`: each frame is dropped with this probability and held from the last kept frame (as a tracker
  that skips frames would);
- `profile=FILE.json`: per-joint miss rates and jitter measured from real HQ/LQ extraction pairs
  (`{"layout", "miss_rate": [V], "jitter": [V]}`), applied on top of the other settings; a profile in the
  `miss-episodes/1` format (pipeline/data/miss_profile.py) instead replays the real miss runs, which joints go
  missing together, and the per-joint error (offset, spread, frame-to-frame correlation).
Frame counts, clip ids and labels are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from models.contract.errors import BadInput
from models.contract.jsonio import read_json
from models.contract.paths import vet_input
from models.contract.skeleton import Clip, SkeletonDataset, body_scale
from pipeline.data.miss_profile import Replay, apply, is_episode_profile, load_replay


@dataclass(frozen=True)
class CorruptSpec:
    drop: float = 0.0
    impute: int = 3
    jitter: float = 0.0
    framedrop: float = 0.0
    seed: int | None = None
    profile: str | None = None

    def __str__(self) -> str:
        parts = [f"drop={self.drop:g}", f"impute={self.impute}", f"jitter={self.jitter:g}",
                 f"framedrop={self.framedrop:g}"]
        if self.seed is not None:
            parts.append(f"seed={self.seed}")
        if self.profile:
            parts.append(f"profile={self.profile}")
        return ",".join(parts)

    def effective_seed(self, run_seed: int | None) -> int:
        """The seed a corruption uses: the spec's `seed=` wins over the run's seed."""
        return self.seed if self.seed is not None else (0 if run_seed is None else run_seed)

    def with_seed(self, run_seed: int | None) -> CorruptSpec:
        """This spec with the seed it is applied with written in (what metrics and files record)."""
        return replace(self, seed=self.effective_seed(run_seed))


# What each key of a spec accepts, as the error says it.
ALLOWED = {"drop": "a probability in [0, 1]", "framedrop": "a probability in [0, 1]",
           "jitter": "a finite number >= 0 (times the body size)", "impute": "a whole number of frames >= 0",
           "seed": "a whole number >= 0"}


def parse_spec(text: str) -> CorruptSpec:
    """Parse `key=value,...`; unknown keys or out-of-range values are a BadInput."""
    kwargs: dict = {}
    for part in filter(None, (s.strip() for s in text.split(","))):
        if "=" not in part:
            raise BadInput(f"--corrupt/--spec item {part!r} is not key=value")
        key, value = (s.strip() for s in part.split("=", 1))
        try:
            if key in ("drop", "jitter", "framedrop"):
                v = float(value)
                if not np.isfinite(v) or v < 0 or (key != "jitter" and v > 1):
                    raise ValueError
                kwargs[key] = v
            elif key in ("impute", "seed"):
                v = int(value)
                if v < 0:
                    raise ValueError
                kwargs[key] = v
            elif key == "profile":
                kwargs[key] = value
            else:
                raise BadInput(f"unknown corruption key {key!r} (drop, impute, jitter, framedrop, seed, profile)")
        except ValueError:
            raise BadInput(f"bad value for {key}: {value!r} (expected {ALLOWED[key]})") from None
    return CorruptSpec(**kwargs)


def load_profile(path: str, num_joints: int) -> tuple[np.ndarray, np.ndarray]:
    p = vet_input(path, "profile")
    d = read_json(p, "profile")
    try:
        miss = np.asarray(d["miss_rate"], dtype=np.float64)
        jit = np.asarray(d["jitter"], dtype=np.float64)
    except (ValueError, KeyError, TypeError) as e:
        raise BadInput(f"not a corruption profile ({e})", p) from None
    if miss.shape != (num_joints,) or jit.shape != (num_joints,):
        raise BadInput(f"profile has {miss.shape} joints, the data has {num_joints}", p)
    if not (np.isfinite(miss).all() and np.isfinite(jit).all()) or (miss < 0).any() or (miss > 1).any():
        raise BadInput("profile values must be finite, miss rates in [0, 1]", p)
    return miss, np.maximum(jit, 0)


def impute_missing(kp: np.ndarray, present: np.ndarray, window: int) -> np.ndarray:
    """Fill missing entries of `kp [M,T,V,C]` with the mean of present values within +-window frames, else 0."""
    out = np.where(present[..., None], kp, 0).astype(np.float32)
    if window <= 0:
        return out
    t = kp.shape[1]
    # Windowed sums along time via cumulative sums: O(T) however wide the window.
    pres = present.astype(np.float32)
    csum_v = np.concatenate([np.zeros_like(out[:, :1]), np.cumsum(out, axis=1)], axis=1)
    csum_n = np.concatenate([np.zeros_like(pres[:, :1]), np.cumsum(pres, axis=1)], axis=1)
    lo = np.clip(np.arange(t) - window, 0, t)
    hi = np.clip(np.arange(t) + window + 1, 0, t)
    sum_v = csum_v[:, hi] - csum_v[:, lo]
    cnt = csum_n[:, hi] - csum_n[:, lo]
    mean = np.where(cnt[..., None] > 0, sum_v / np.maximum(cnt, 1)[..., None], 0)
    return np.where(present[..., None], out, mean).astype(np.float32)


def corrupt_clip(clip: Clip, spec: CorruptSpec, rng: np.random.Generator,
                 profile: tuple[np.ndarray, np.ndarray] | None = None, replay: Replay | None = None) -> Clip:
    kp = clip.keypoint.astype(np.float32)
    score = clip.scores().astype(np.float32)
    m, t, v, c = kp.shape
    # Non-finite coordinates or scores are missing entries (as pyskl_io masks them): never propagated.
    present = np.isfinite(kp).all(-1) & np.isfinite(score) & (score > 0)
    kp = np.where(present[..., None], kp, 0).astype(np.float32)
    score = np.where(present, score, 0).astype(np.float32)
    scale = body_scale(kp, score)
    if spec.framedrop > 0 and t > 1:
        keep = rng.random(t) >= spec.framedrop
        keep[0] = True
        src = np.maximum.accumulate(np.where(keep, np.arange(t), 0))
        kp, score, present = kp[:, src], score[:, src], present[:, src]
    if spec.jitter > 0:
        kp = kp + rng.normal(0, spec.jitter * scale, size=kp.shape).astype(np.float32)
    miss_p = np.full(v, spec.drop)
    if profile is not None:
        miss_p = 1 - (1 - miss_p) * (1 - profile[0])
        kp = kp + (rng.normal(0, 1, size=kp.shape) * (profile[1] * scale)[None, None, :, None]).astype(np.float32)
    dropped = rng.random((m, t, v)) < miss_p[None, None, :]
    if replay is not None:
        kp, replayed = apply(kp, present, scale, replay, rng)
        dropped |= replayed
    present = present & ~dropped
    kp = impute_missing(kp, present, spec.impute)
    # Imputed entries are estimates: score 0 marks them missing as an estimator would, unless imputation
    # recovered a value, in which case they get a low score.
    if spec.impute > 0:
        new_score = np.where(present, score, np.where(np.abs(kp).sum(-1) > 0, 0.1, 0.0))
    else:
        new_score = np.where(present, score, 0.0)
    return replace(clip, keypoint=kp.astype(np.float32), keypoint_score=new_score.astype(np.float32))


def corrupt_dataset(ds: SkeletonDataset, spec: CorruptSpec, seed: int | None = None) -> SkeletonDataset:
    """A new dataset with every clip corrupted; reproducible from (seed, clip order). `spec.seed` wins."""
    spec = spec.with_seed(seed)
    rng = np.random.default_rng(spec.seed)
    episodes = bool(spec.profile) and is_episode_profile(spec.profile)
    replay = load_replay(spec.profile, ds.layout.num_joints) if episodes else None
    profile = load_profile(spec.profile, ds.layout.num_joints) if spec.profile and not episodes else None
    clips = [corrupt_clip(c, spec, rng, profile, replay) for c in ds.clips]
    extra = dict(ds.extra)
    extra["corruption"] = str(spec)
    return SkeletonDataset(clips, {k: list(v) for k, v in ds.split.items()}, list(ds.classes), ds.layout, extra)
