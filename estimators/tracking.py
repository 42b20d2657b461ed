"""Keep up to M persons across frames: match detections to tracks, rank tracks, fill skipped frames.

Detections are matched to the tracks seen in the last `max_age` frames by keypoint-box overlap and mean joint
distance (cheapest pairs first); a detection that matches nothing starts a new track. At the end the tracks
are ranked by how long and how confidently each person was seen (the sum over frames of the mean joint
score) and the best `max_persons` become the output persons, in that order.

Frames the estimator skipped (LQ: every 4th frame is processed) are filled by linear interpolation, per
joint, between two processed frames that both found the person and the joint, and only when no processed
frame in between lost it. Frames after the last processed frame hold its pose (what a live system that
skips frames would show).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TrackerConfig:
    max_persons: int = 1
    min_iou: float = 0.1          # keypoint boxes overlapping at least this much may continue a track...
    max_distance: float = 0.5     # ...or a mean joint distance below this fraction of the track's box diagonal
    max_age: int = 60             # frames a track may go unseen and still be continued
    min_score: float = 0.0        # joints scored above this count as found (for boxes, distances, filling)
    interpolate: bool = True
    hold_tail: bool = True


@dataclass
class _Track:
    frames: list[int]
    keypoints: list[np.ndarray]
    scores: list[np.ndarray]

    def confidence(self) -> float:
        return float(sum(s.mean() for s in self.scores))


def keypoint_box(kp: np.ndarray, score: np.ndarray, min_score: float = 0.0) -> np.ndarray | None:
    """`[x0, y0, x1, y1]` of the found joints, or None when fewer than two were found."""
    pts = kp[score > min_score, :2]
    if len(pts) < 2:
        return None
    return np.concatenate([pts.min(0), pts.max(0)]).astype(np.float64)


def _boxes(kp: np.ndarray, found: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`keypoint_box` of each of `kp [N, V, 2]` at once: (`[N, 4]` boxes, `[N]` whether two joints were found)."""
    big = np.finfo(np.float64).max
    k = kp.astype(np.float64)
    lo = np.where(found[..., None], k, big).min(1)
    hi = np.where(found[..., None], k, -big).max(1)
    ok = found.sum(1) >= 2
    return np.where(ok[:, None], np.concatenate([lo, hi], 1), 0.0), ok


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class PersonTracker:
    """Streaming: `update` once per processed frame, `finalize` once at the end."""

    def __init__(self, cfg: TrackerConfig, num_joints: int, channels: int = 2):
        if cfg.max_persons < 1:
            raise ValueError("max_persons must be >= 1")
        self.cfg = cfg
        self.num_joints = num_joints
        self.channels = channels
        self.tracks: list[_Track] = []
        self.processed: list[int] = []

    def update(self, t: int, detections: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Record processed frame `t` and its detections, each `(keypoint [V, C], score [V])`."""
        if self.processed and t <= self.processed[-1]:
            raise ValueError(f"frames must come in order (got {t} after {self.processed[-1]})")
        self.processed.append(t)
        dets = [(np.asarray(k, np.float32), np.asarray(s, np.float32)) for k, s in detections]
        dets = [d for d in dets if (d[1] > self.cfg.min_score).any()]
        active = [i for i, tr in enumerate(self.tracks) if t - tr.frames[-1] <= self.cfg.max_age]
        matched: dict[int, int] = {}
        if active and dets:
            cost = self._costs([self.tracks[i] for i in active], dets)
            # Greedy, cheapest pair first: with a handful of people it matches what an optimal assignment
            # would, and it avoids importing scipy.optimize (~0.8 s) into every extraction process. The pairs
            # are sorted once (stable, so ties keep track-then-detection order) and the walk stops when either
            # side runs out: O(A D log(A D)) per frame, not a Python loop over every pair.
            rows, cols = np.nonzero(np.isfinite(cost))
            order = np.argsort(cost[rows, cols], kind="stable")
            used_a = np.zeros(len(active), bool)
            used_d = np.zeros(len(dets), bool)
            left = min(len(active), len(dets))
            for a, d in zip(rows[order].tolist(), cols[order].tolist()):
                if not used_a[a] and not used_d[d]:
                    used_a[a] = used_d[d] = True
                    matched[d] = active[a]
                    left -= 1
                    if not left:
                        break
        for d, (kp, sc) in enumerate(dets):
            if d in matched:
                tr = self.tracks[matched[d]]
                tr.frames.append(t)
                tr.keypoints.append(kp)
                tr.scores.append(sc)
            else:
                self.tracks.append(_Track([t], [kp], [sc]))

    def _costs(self, tracks: list[_Track], dets: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """`[tracks, detections]` matching costs, all pairs at once: the mean distance of the joints both found,
        over the track's box diagonal, plus 1 - IoU of the keypoint boxes; inf where a pair may not match (fewer
        than two found joints on either side, no joint in common, or too little overlap and too far apart)."""
        mins = self.cfg.min_score
        ka = np.stack([tr.keypoints[-1][:, :2] for tr in tracks])       # [A, V, 2]
        sa = np.stack([tr.scores[-1] for tr in tracks]) > mins          # [A, V]
        kb = np.stack([kp[:, :2] for kp, _ in dets])                    # [D, V, 2]
        sb = np.stack([sc for _, sc in dets]) > mins                    # [D, V]
        box_a, ok_a = _boxes(ka, sa)
        box_b, ok_b = _boxes(kb, sb)
        both = sa[:, None, :] & sb[None, :, :]                          # [A, D, V]
        n_both = both.sum(-1)
        dx = ka[:, None, :, 0] - kb[None, :, :, 0]
        dy = ka[:, None, :, 1] - kb[None, :, :, 1]
        dist = np.sqrt(dx * dx + dy * dy)                               # [A, D, V], float32 like the poses
        dist *= both
        mean = dist.sum(-1, dtype=np.float64) / np.maximum(n_both, 1)
        diag = np.maximum(np.hypot(box_a[:, 2] - box_a[:, 0], box_a[:, 3] - box_a[:, 1]), 1e-6)
        dist = mean / diag[:, None]
        lo = np.maximum(box_a[:, None, :2], box_b[None, :, :2])         # [A, D, 2] overlap corners
        hi = np.minimum(box_a[:, None, 2:], box_b[None, :, 2:])
        iw, ih = np.clip(hi - lo, 0, None).transpose(2, 0, 1)
        inter = iw * ih
        area_a = (box_a[:, 2] - box_a[:, 0]) * (box_a[:, 3] - box_a[:, 1])
        area_b = (box_b[:, 2] - box_b[:, 0]) * (box_b[:, 3] - box_b[:, 1])
        union = area_a[:, None] + area_b[None, :] - inter
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
        cost = dist + (1.0 - iou)
        far = (iou < self.cfg.min_iou) & (dist > self.cfg.max_distance)
        cost[far | ~ok_a[:, None] | ~ok_b[None, :] | (n_both == 0)] = np.inf
        return cost

    def ranked(self) -> list[_Track]:
        """Tracks best first: most total confidence (length x mean score), then earliest seen."""
        return sorted(self.tracks, key=lambda tr: (-tr.confidence(), tr.frames[0]))

    def finalize(self, total_frames: int) -> tuple[np.ndarray, np.ndarray]:
        """`keypoint [M, T, V, C]`, `keypoint_score [M, T, V]` with M = min(max_persons, tracks), at least 1."""
        keep = self.ranked()[: self.cfg.max_persons]
        m = max(1, len(keep))
        kp = np.zeros((m, total_frames, self.num_joints, self.channels), np.float32)
        sc = np.zeros((m, total_frames, self.num_joints), np.float32)
        processed = np.asarray(self.processed, dtype=np.int64)
        for p, tr in enumerate(keep):
            for t, k, s in zip(tr.frames, tr.keypoints, tr.scores):
                kp[p, t], sc[p, t] = k, s
            if self.cfg.interpolate:
                self._fill_gaps(kp[p], sc[p], tr, processed)
            if self.cfg.hold_tail and len(processed) and tr.frames[-1] == processed[-1]:
                kp[p, tr.frames[-1] + 1:] = tr.keypoints[-1]
                sc[p, tr.frames[-1] + 1:] = tr.scores[-1]
        # A joint is found only above min_score; below it, coordinates go to 0 like any missing joint.
        lost = sc <= self.cfg.min_score
        kp[lost] = 0
        sc[lost] = 0
        return kp, sc

    def _fill_gaps(self, kp: np.ndarray, sc: np.ndarray, tr: _Track, processed: np.ndarray) -> None:
        for (t0, k0, s0), (t1, k1, s1) in zip(zip(tr.frames, tr.keypoints, tr.scores),
                                              zip(tr.frames[1:], tr.keypoints[1:], tr.scores[1:])):
            if t1 - t0 < 2:
                continue
            # A processed frame between them that did not see this person: it was really lost, keep the gap.
            if np.searchsorted(processed, t1) - np.searchsorted(processed, t0, side="right") > 0:
                continue
            ok = (s0 > self.cfg.min_score) & (s1 > self.cfg.min_score)
            w = (np.arange(t0 + 1, t1, dtype=np.float32) - t0) / (t1 - t0)
            kp[t0 + 1:t1, ok] = (1 - w)[:, None, None] * k0[ok] + w[:, None, None] * k1[ok]
            sc[t0 + 1:t1, ok] = (1 - w)[:, None] * s0[ok] + w[:, None] * s1[ok]


def temporal_smooth(kp: np.ndarray, score: np.ndarray, half_window: int) -> np.ndarray:
    """Score-weighted moving average of `kp [M, T, V, C]` over +-half_window frames, over found joints only.

    Missing joints stay missing; a found joint is averaged only with found neighbours.
    """
    if half_window <= 0 or kp.shape[1] < 2:
        return kp
    t = kp.shape[1]
    w = np.where(score > 0, score, 0).astype(np.float64)
    wx = kp.astype(np.float64) * w[..., None]
    cw = np.concatenate([np.zeros_like(w[:, :1]), np.cumsum(w, axis=1)], axis=1)
    cwx = np.concatenate([np.zeros_like(wx[:, :1]), np.cumsum(wx, axis=1)], axis=1)
    lo = np.clip(np.arange(t) - half_window, 0, t)
    hi = np.clip(np.arange(t) + half_window + 1, 0, t)
    den = cw[:, hi] - cw[:, lo]
    num = cwx[:, hi] - cwx[:, lo]
    out = np.where((score > 0)[..., None], num / np.maximum(den, 1e-12)[..., None], kp)
    return out.astype(np.float32)
