"""Skeleton quality measures: LQ against HQ of the same video, predictions against ground truth (PCK), and the
per-joint corruption profile fitted from HQ/LQ pairs that `pipeline.data.corrupt` replays (`profile=FILE.json`).

All comparisons happen in one layout (converted by joint name, e.g. blazepose33 -> penn13); distances are
divided by the HQ clip's body size (`models.contract.skeleton.body_scale`: the median bounding-box diagonal), the same
scale `corrupt` multiplies the profile's jitter by.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from estimators.tracking import box_iou, keypoint_box
from models.contract.skeleton import body_scale

MIN_JOINTS = 4          # a frame "has the person" when at least this many joints were found
SAME_PERSON_IOU = 0.3   # HQ and LQ boxes overlapping less than this are different people


@dataclass
class PairStats:
    """Accumulated LQ-vs-HQ statistics over clips, per joint.

    Per frame, each person HQ has is paired with the LQ person whose box overlaps it most (IoU >= 0.3); an HQ
    person without such a partner is one LQ lost. Persons are matched per frame, so it does not matter
    whether the two tiers ranked their tracks in the same order.
    """

    num_joints: int
    frames: int = 0             # all frames
    hq_frames: int = 0          # frames where HQ has someone
    lq_frames: int = 0          # frames where LQ has someone
    hq_persons: int = 0         # (frame, HQ person) pairs
    lq_lost: int = 0            # ... without an overlapping LQ person
    hq_present: np.ndarray = field(default=None)   # [V] HQ-present joints over HQ person-frames
    lq_missing: np.ndarray = field(default=None)   # [V] of those, missing in LQ (incl. lost persons)
    sq_err: np.ndarray = field(default=None)       # [V] sum of squared per-coordinate errors / body size^2
    n_err: np.ndarray = field(default=None)        # [V] pairs in sq_err (both present)
    dists: list = field(default_factory=list)      # per (frame, person, joint) distance / body size
    coord_err: list = field(default_factory=list)  # per joint: list of per-coordinate errors / body size

    def __post_init__(self) -> None:
        z = np.zeros(self.num_joints, np.float64)
        self.hq_present, self.lq_missing, self.sq_err, self.n_err = z.copy(), z.copy(), z.copy(), z.copy()
        self.coord_err = [[] for _ in range(self.num_joints)]

    def add(self, hq_kp: np.ndarray, hq_sc: np.ndarray, lq_kp: np.ndarray, lq_sc: np.ndarray) -> None:
        """One clip: `[M, T, V, 2]` keypoints and `[M, T, V]` scores per tier (found = score > 0)."""
        scale = body_scale(hq_kp, hq_sc)
        for t in range(hq_kp.shape[1]):
            self.frames += 1
            hq = [p for p in range(hq_kp.shape[0]) if (hq_sc[p, t] > 0).sum() >= MIN_JOINTS]
            lq = [q for q in range(lq_kp.shape[0]) if (lq_sc[q, t] > 0).sum() >= MIN_JOINTS]
            self.hq_frames += bool(hq)
            self.lq_frames += bool(lq)
            pairs = []
            for p in hq:
                for q in lq:
                    iou = box_iou(keypoint_box(hq_kp[p, t], hq_sc[p, t]), keypoint_box(lq_kp[q, t], lq_sc[q, t]))
                    if iou >= SAME_PERSON_IOU:
                        pairs.append((iou, p, q))
            partner: dict[int, int] = {}
            for _, p, q in sorted(pairs, reverse=True):
                if p not in partner and q not in partner.values():
                    partner[p] = q
            for p in hq:
                self.hq_persons += 1
                h_ok = hq_sc[p, t] > 0
                self.hq_present += h_ok
                if p not in partner:
                    self.lq_lost += 1
                    self.lq_missing += h_ok
                    continue
                q = partner[p]
                l_ok = lq_sc[q, t] > 0
                self.lq_missing += h_ok & ~l_ok
                both = h_ok & l_ok
                d = (lq_kp[q, t] - hq_kp[p, t]) / scale
                self.sq_err[both] += (d[both] ** 2).sum(-1) / 2  # per coordinate, as corrupt adds noise
                self.n_err[both] += 1
                self.dists.extend(np.linalg.norm(d[both], axis=-1).tolist())
                for j in np.flatnonzero(both):
                    self.coord_err[j].extend(d[j].tolist())

    def summary(self) -> dict:
        d = np.asarray(self.dists)
        return {
            "frames": self.frames,
            "hq_coverage": self.hq_frames / max(self.frames, 1),
            "lq_coverage": self.lq_frames / max(self.frames, 1),
            "hq_persons_per_frame": self.hq_persons / max(self.hq_frames, 1),
            "lq_lost": self.lq_lost / max(self.hq_persons, 1),
            "missing_joint_rate": float(self.lq_missing.sum() / max(self.hq_present.sum(), 1)),
            "dist_mean": float(d.mean()) if d.size else float("nan"),
            "dist_median": float(np.median(d)) if d.size else float("nan"),
            "dist_p90": float(np.percentile(d, 90)) if d.size else float("nan"),
        }

    def profile(self, layout: str, joints: list[str]) -> dict:
        """`{"layout", "joints", "miss_rate": [V], "jitter": [V], ...}` for `pipeline.data.corrupt` (profile=FILE.json).

        `jitter` is a robust per-coordinate standard deviation (1.4826 x median absolute error): the spread of
        the bulk of LQ joints around HQ. The errors are heavy-tailed (a swapped or misplaced limb is off by a
        large fraction of the body), so the root-mean-square (`jitter_rms`) and the share of errors beyond 0.2
        body sizes (`outlier_rate`) are stored beside it for reference; `corrupt` reads only the first two.
        """
        miss = np.where(self.hq_present > 0, self.lq_missing / np.maximum(self.hq_present, 1), 0.0)
        rms = np.where(self.n_err > 0, np.sqrt(self.sq_err / np.maximum(self.n_err, 1)), 0.0)
        robust = np.array([1.4826 * np.median(np.abs(e)) if e else 0.0 for e in self.coord_err])
        outlier = np.array([float((np.abs(np.asarray(e)) > 0.2).mean()) if e else 0.0 for e in self.coord_err])

        def r(a: np.ndarray) -> list[float]:
            return [round(float(x), 4) for x in a]

        return {"layout": layout, "joints": list(joints), "miss_rate": r(miss), "jitter": r(robust),
                "jitter_rms": r(rms), "outlier_rate": r(outlier),
                "support": {"hq_joint_frames": [int(x) for x in self.hq_present],
                            "paired_joint_frames": [int(x) for x in self.n_err]}}


def pck(pred_kp: np.ndarray, pred_sc: np.ndarray, gt_kp: np.ndarray, gt_vis: np.ndarray, size: float,
        alpha: float = 0.2) -> tuple[int, int]:
    """(correct, labelled) joints: a labelled joint is correct when found within alpha * size of the truth."""
    lab = gt_vis > 0
    ok = lab & (pred_sc > 0) & (np.linalg.norm(pred_kp - gt_kp, axis=-1) <= alpha * size)
    return int(ok.sum()), int(lab.sum())
