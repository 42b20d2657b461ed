"""A corruption profile that replays how a fast estimator really fails, measured from HQ/LQ extraction pairs.

Real misses are not independent draws: a tracker loses a person for a run of frames, and joints near the frame
edge go missing together. So the profile keeps the misses as they happened, in *episodes*: an episode is a
maximal run of consecutive frames in which the LQ tier misses at least one joint that HQ found, stored as the
list of its frames' missing-joint sets (bit masks over the layout's joints). Its length is the miss-run length
and its masks are the co-occurrence. Between episodes come gaps of frames without a miss; replay draws a gap
(geometric with the measured episode start rate), then an episode from the measured list, and so on, so the
miss rate, the run lengths and which joints go together all follow the real LQ.

Coordinates: per joint, the LQ-minus-HQ error in body-size units, replayed as its mean (systematic offset) plus
AR(1) Gaussian noise with the measured standard deviation and frame-to-frame correlation (LQ errors are
smooth: every 4th frame is interpolated). Optionally `annotation_offset` [V, 2]: the mean estimator-minus-
annotation position per joint on annotated photos, added when the clean skeletons are human annotations
(Penn Action) rather than an estimator's output.

File (JSON): {"format": "miss-episodes/1", "layout", "joints", "miss_rate" [V], "jitter" [V] (the old
independent-miss fields, so older readers still work), "episode_start_rate", "episodes": [[mask, ...], ...],
"error_mean" [V, 2], "error_std" [V, 2], "error_rho" [V], "annotation_offset" [V, 2] (optional), "support",
"source", "command"}.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from models.contract.errors import BadInput
from models.contract.jsonio import read_json
from models.contract.paths import vet_input
from models.contract.skeleton import body_scale

FORMAT = "miss-episodes/1"
MIN_JOINTS = 4  # a person is "there" in a frame with at least this many joints
SAME_PERSON = 0.5  # LQ person within this mean joint distance (body sizes) of HQ's is the same person


def track_pair(hq_kp: np.ndarray, hq_sc: np.ndarray, lq_kp: np.ndarray, lq_sc: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HQ person 0 against the LQ person nearest to it per frame: (hq_present [T,V], lq_missing [T,V], err [T,V,2]).

    `err` is (LQ - HQ) / HQ body size where both have the joint, NaN elsewhere. A frame where HQ has no person
    counts for nothing (`hq_present` all False).
    """
    t, v = hq_kp.shape[1], hq_kp.shape[2]
    scale = body_scale(hq_kp[:1], hq_sc[:1])
    hq_p = hq_sc[0] > 0
    hq_p &= (hq_p.sum(-1) >= MIN_JOINTS)[:, None]
    lq_k = np.zeros((t, v, 2), np.float32)
    lq_p = np.zeros((t, v), bool)
    for f in range(t):
        if not hq_p[f].any():
            continue
        best, best_d = None, np.inf
        for q in range(lq_kp.shape[0]):
            both = hq_p[f] & (lq_sc[q, f] > 0)
            if not both.any():
                continue
            d = float(np.linalg.norm(lq_kp[q, f, both] - hq_kp[0, f, both], axis=-1).mean())
            if d < best_d:
                best, best_d = q, d
        if best is not None and best_d < SAME_PERSON * scale:  # farther: another person, i.e. ours is lost
            lq_k[f], lq_p[f] = lq_kp[best, f, :, :2], lq_sc[best, f] > 0
    missing = hq_p & ~lq_p
    both = hq_p & lq_p
    err = np.where(both[..., None], (lq_k - hq_kp[0, :, :, :2]) / scale, np.nan)
    return hq_p, missing, err


def _masks(missing: np.ndarray) -> list[int]:
    return [int(sum(1 << j for j in np.flatnonzero(row))) for row in missing]


@dataclass
class ProfileBuilder:
    """Accumulates clips (see `track_pair`) and fits the profile."""

    num_joints: int
    episodes: list[list[int]] = field(default_factory=list)
    starts: int = 0            # episodes that started inside a clip
    open_frames: int = 0       # frames at which an episode could start (HQ person there, no episode running)
    present: np.ndarray = field(default=None)
    missed: np.ndarray = field(default=None)
    errs: list[np.ndarray] = field(default_factory=list)   # per clip [T, V, 2]

    def __post_init__(self) -> None:
        self.present = np.zeros(self.num_joints)
        self.missed = np.zeros(self.num_joints)

    def add(self, hq_present: np.ndarray, missing: np.ndarray, err: np.ndarray) -> None:
        self.present += hq_present.sum(0)
        self.missed += missing.sum(0)
        self.errs.append(err)
        frames = np.flatnonzero(hq_present.any(-1))  # frames where HQ has the person; others are skipped over
        masks = _masks(missing[frames])
        run: list[int] = []
        for m in masks + [0]:
            if m:
                run.append(m)
                continue
            if run:
                self.episodes.append(run)
                self.starts += 1
                run = []
            self.open_frames += 1
        self.open_frames -= 1  # the sentinel

    def fit(self) -> dict:
        v = self.num_joints
        if not self.errs or self.present.sum() == 0:
            raise BadInput("no frame where both tiers had the person: nothing to fit a profile from")
        err = np.concatenate(self.errs, axis=0)  # [T, V, 2]
        with warnings.catch_warnings():  # a joint LQ never had: NaN here, 0 in the file
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(err, axis=0)
            std = np.nanstd(err, axis=0)
        rho = np.zeros(v)
        for j in range(v):
            num = den = 0.0
            for e in self.errs:
                a, b = e[1:, j] - mean[j], e[:-1, j] - mean[j]
                ok = np.isfinite(a).all(-1) & np.isfinite(b).all(-1)
                num += float((a[ok] * b[ok]).sum())
                den += float((b[ok] ** 2).sum())
            rho[j] = np.clip(num / den, 0.0, 0.99) if den > 0 else 0.0
        miss_rate = self.missed / np.maximum(self.present, 1)
        return {"format": FORMAT,
                "miss_rate": np.round(miss_rate, 4).tolist(),
                "jitter": np.round(np.nan_to_num(std).mean(-1), 4).tolist(),
                "episode_start_rate": round(self.starts / max(self.open_frames, 1), 5),
                "episodes": self.episodes,
                "error_mean": np.round(np.nan_to_num(mean), 4).tolist(),
                "error_std": np.round(np.nan_to_num(std), 4).tolist(),
                "error_rho": np.round(rho, 3).tolist(),
                "support": {"hq_joint_frames": self.present.astype(int).tolist(), "episodes": len(self.episodes),
                            "open_frames": self.open_frames}}


@dataclass(frozen=True)
class Replay:
    """A loaded profile: draws miss masks and coordinate errors for clips of its layout."""

    num_joints: int
    start_rate: float
    episodes: tuple[tuple[int, ...], ...]
    err_mean: np.ndarray   # [V, 2]
    err_std: np.ndarray    # [V, 2]
    err_rho: np.ndarray    # [V]
    offset: np.ndarray     # [V, 2] annotation -> estimator (zeros when absent)

    def missing(self, t: int, rng: np.random.Generator) -> np.ndarray:
        """[T, V] bool: gaps and episodes in turn; the clip starts at a random point of that sequence."""
        out = np.zeros((t, self.num_joints), bool)
        if not self.episodes or self.start_rate <= 0:
            return out
        mean_ep = float(np.mean([len(e) for e in self.episodes]))
        # Start inside an episode with the stationary probability, else inside a gap.
        in_ep = rng.random() < mean_ep / (mean_ep + 1 / self.start_rate)
        f = 0
        if in_ep:
            ep = self.episodes[rng.integers(len(self.episodes))]
            cut = int(rng.integers(len(ep)))
            f = self._put(out, f, ep[cut:])
        while f < t:
            f += int(rng.geometric(self.start_rate)) - 1  # frames without a miss before the next episode
            if f >= t:
                break
            f = self._put(out, f, self.episodes[rng.integers(len(self.episodes))])
            f += 1  # an episode is maximal: at least one clean frame follows it
        return out

    def _put(self, out: np.ndarray, f: int, ep) -> int:
        for m in ep:
            if f >= out.shape[0]:
                break
            out[f] = [(m >> j) & 1 for j in range(self.num_joints)]
            f += 1
        return f

    def error(self, t: int, rng: np.random.Generator) -> np.ndarray:
        """[T, V, 2] error in body-size units: systematic offset + AR(1) noise with the measured std and rho."""
        rho = self.err_rho[:, None]
        innov = np.sqrt(1 - rho ** 2)
        e = np.empty((t, self.num_joints, 2))
        e[0] = rng.normal(size=(self.num_joints, 2))
        for f in range(1, t):
            e[f] = rho * e[f - 1] + innov * rng.normal(size=(self.num_joints, 2))
        return self.err_mean + self.offset + e * self.err_std


def is_episode_profile(path: str) -> bool:
    try:  # vetted: a FIFO or /dev/urandom behind the name must not hang or fill memory
        d = read_json(path, "profile")
    except BadInput:
        return False  # the old reader reports what is wrong with the file
    return isinstance(d, dict) and d.get("format") == FORMAT


def load_replay(path: str, num_joints: int) -> Replay:
    p = vet_input(path, "profile")
    d = read_json(p, "profile")
    try:
        eps = tuple(tuple(int(m) for m in e) for e in d["episodes"])
        arrs = [np.asarray(d[k], np.float64) for k in ("error_mean", "error_std", "error_rho")]
        offset = np.asarray(d.get("annotation_offset", np.zeros((num_joints, 2))), np.float64)
        rate = float(d["episode_start_rate"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BadInput(f"not a miss-episode profile ({e})", p) from None
    shapes = [(num_joints, 2), (num_joints, 2), (num_joints,), (num_joints, 2)]
    if any(a.shape != s for a, s in zip([*arrs, offset], shapes)):
        raise BadInput(f"profile is not for {num_joints} joints", p)
    if not all(np.isfinite(a).all() for a in [*arrs, offset]) or not 0 <= rate <= 1 or (arrs[1] < 0).any() \
            or any(not e or any(m < 0 or m >= 1 << num_joints for m in e) for e in eps):
        raise BadInput("profile values out of range", p)
    return Replay(num_joints, rate, eps, arrs[0], arrs[1], np.clip(arrs[2], 0, 0.99), offset)


def apply(kp: np.ndarray, present: np.ndarray, scale: float, replay: Replay, rng: np.random.Generator
          ) -> tuple[np.ndarray, np.ndarray]:
    """Corrupt `kp [M,T,V,C]` (present [M,T,V]): replayed misses and errors per person. Returns (kp, dropped)."""
    m, t = kp.shape[:2]
    kp = kp.copy()
    dropped = np.zeros(present.shape, bool)
    for p in range(m):
        dropped[p] = replay.missing(t, rng)
        kp[p, :, :, :2] += (replay.error(t, rng) * scale).astype(np.float32)
    return kp, dropped


def miss_runs(missing: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Lengths of the runs of consecutive missing frames of each joint, over the `valid` frames ([T,V] each)."""
    out = []
    for j in range(missing.shape[1]):
        col = missing[valid[:, j], j].astype(np.int8)
        if not col.size:
            continue
        edges = np.diff(np.concatenate([[0], col, [0]]))
        out.extend((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).tolist())
    return np.asarray(out, int)
