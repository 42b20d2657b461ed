"""Bottom-up multi-person grouping of OpenPose outputs: keypoint heatmaps + part-affinity fields -> persons.

The steps (OpenPose's greedy scheme, as published by Cao et al. 2017):
1. Peaks: for each of the 18 keypoint types, local maxima of its heatmap above a threshold, thinned so that
   no two peaks of one type lie closer than `nms_radius` (the stronger one stays).
2. Limb candidates: for each limb (a pair of keypoint types joined by a part-affinity field) and each pair of
   peaks (a, b), the field is sampled along the segment a->b and projected on its direction. The pair is a
   candidate when most samples point along the segment; its score is their mean, less a penalty for segments
   longer than half the map's height.
3. Greedy assignment per limb: candidates best first, each peak used at most once per limb.
4. Persons: limbs are visited from the neck outwards (a tree), so each accepted connection either extends the
   person that holds one of its ends, joins two partial persons that share no keypoint type, or starts a new
   person. The two redundant limbs (shoulder-ear) only extend or join.
5. Persons with fewer than `min_parts` keypoints or a low mean score are dropped.

Coordinates are in the pixels of the (upsampled) maps the caller passes; `estimators/openpose_lite.py` maps
them back to the frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

NUM_KEYPOINTS = 18  # nose, neck, r_sho, r_elb, r_wri, l_sho, l_elb, l_wri, r_hip, r_knee, r_ank, l_hip, l_knee,
#                     l_ank, r_eye, l_eye, r_ear, l_ear  (layout openpose18)

# The 19 limbs of the 18-keypoint COCO OpenPose models, (keypoint a, keypoint b), ordered from the neck out
# (the last two are redundant), and the PAF channels (x, y) of each in the model's 38-channel output.
LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
    (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (2, 16), (5, 17))
PAF_CHANNELS: tuple[tuple[int, int], ...] = (
    (12, 13), (20, 21), (14, 15), (16, 17), (22, 23), (24, 25), (0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11),
    (28, 29), (30, 31), (34, 35), (32, 33), (36, 37), (18, 19), (26, 27))
TREE_LIMBS = 17  # limbs [0, 17) may start a person; the rest only extend or join


@dataclass(frozen=True)
class GroupingConfig:
    peak_threshold: float = 0.1     # heatmap value a peak must exceed
    nms_radius: float = 6.0         # map pixels; weaker peaks of one type closer than this are dropped
    paf_samples: int = 10           # points sampled along a candidate limb
    paf_min_value: float = 0.05     # a sample supports the limb when its projection exceeds this...
    paf_min_fraction: float = 0.8   # ...and a limb needs this fraction of supporting samples
    min_parts: int = 3              # persons with fewer keypoints are dropped
    min_mean_score: float = 0.2     # persons whose (peak + limb scores) / parts is lower are dropped

    def __post_init__(self) -> None:
        if self.paf_samples < 2 or self.min_parts < 1 or not 0 < self.paf_min_fraction <= 1:
            raise ValueError("paf_samples >= 2, min_parts >= 1 and 0 < paf_min_fraction <= 1 are required")


def find_peaks(heatmap: np.ndarray, threshold: float, nms_radius: float) -> np.ndarray:
    """`[N, 3]` (x, y, value) of the local maxima of one heatmap above `threshold`, strongest first."""
    hm = np.ascontiguousarray(heatmap, dtype=np.float32)
    local_max = cv2.dilate(hm, np.ones((3, 3), np.uint8))
    ys, xs = np.nonzero((hm >= local_max) & (hm > threshold))
    if len(xs) == 0:
        return np.zeros((0, 3), np.float32)
    vals = hm[ys, xs]
    order = np.argsort(-vals, kind="stable")
    pts = np.stack([xs[order], ys[order], vals[order]], axis=1).astype(np.float32)
    keep: list[int] = []
    for i in range(len(pts)):  # a plateau or a double bump gives several maxima: keep the strongest
        if all((pts[i, 0] - pts[k, 0]) ** 2 + (pts[i, 1] - pts[k, 1]) ** 2 >= nms_radius ** 2 for k in keep):
            keep.append(i)
    return pts[keep]


def limb_scores(paf_x: np.ndarray, paf_y: np.ndarray, a: np.ndarray, b: np.ndarray, cfg: GroupingConfig
                ) -> np.ndarray:
    """`[len(a), len(b)]` scores of every candidate limb a_i -> b_j (-inf where it is not a candidate)."""
    h, w = paf_x.shape
    vec = b[None, :, :2] - a[:, None, :2]                        # [A, B, 2]
    length = np.linalg.norm(vec, axis=-1)                         # [A, B]
    unit = vec / np.maximum(length, 1e-6)[..., None]
    ts = np.linspace(0.0, 1.0, cfg.paf_samples, dtype=np.float32)
    pts = a[:, None, None, :2] + ts[None, None, :, None] * vec[:, :, None, :]   # [A, B, S, 2]
    ix = np.clip(np.rint(pts[..., 0]).astype(np.int64), 0, w - 1)
    iy = np.clip(np.rint(pts[..., 1]).astype(np.int64), 0, h - 1)
    proj = paf_x[iy, ix] * unit[:, :, None, 0] + paf_y[iy, ix] * unit[:, :, None, 1]    # [A, B, S]
    support = (proj > cfg.paf_min_value).mean(-1)
    score = proj.mean(-1) + np.minimum(0.5 * h / np.maximum(length, 1e-6) - 1.0, 0.0)
    ok = (length > 1e-6) & (support >= cfg.paf_min_fraction) & (score > 0)
    return np.where(ok, score, -np.inf)


def group_persons(heatmaps: np.ndarray, pafs: np.ndarray, cfg: GroupingConfig | None = None
                  ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Persons in one image from `heatmaps [>=18, H, W]` (background channel ignored) and `pafs [38, H, W]`.

    Returns `(keypoint [18, 2], score [18])` per person, best first; a missing keypoint has coordinates 0 and
    score 0; a found one has score = its heatmap peak value (clipped to [0, 1]).
    """
    cfg = cfg or GroupingConfig()
    if heatmaps.shape[0] < NUM_KEYPOINTS or pafs.shape[0] != 2 * len(LIMBS) or heatmaps.shape[1:] != pafs.shape[1:]:
        raise ValueError(f"expected heatmaps [>=18, H, W] and pafs [38, H, W], got {heatmaps.shape}, {pafs.shape}")
    peaks = [find_peaks(heatmaps[k], cfg.peak_threshold, cfg.nms_radius) for k in range(NUM_KEYPOINTS)]
    persons: list[np.ndarray] = []   # [18] peak index per keypoint type, -1 when absent
    totals: list[float] = []         # sum of peak values and limb scores
    for li, ((ka, kb), (cx, cy)) in enumerate(zip(LIMBS, PAF_CHANNELS)):
        pa, pb = peaks[ka], peaks[kb]
        if len(pa) == 0 or len(pb) == 0:
            continue
        scores = limb_scores(pafs[cx], pafs[cy], pa, pb, cfg)
        cand = np.argwhere(np.isfinite(scores))
        cand = cand[np.argsort(-scores[cand[:, 0], cand[:, 1]], kind="stable")]
        used_a: set[int] = set()
        used_b: set[int] = set()
        for i, j in cand:
            if i in used_a or j in used_b:
                continue
            used_a.add(int(i))
            used_b.add(int(j))
            s = float(scores[i, j])
            owners = [p for p, per in enumerate(persons) if per[ka] == i or per[kb] == j]
            if len(owners) == 1:
                per = persons[owners[0]]
                if per[ka] == i and per[kb] == -1:
                    per[kb] = j
                    totals[owners[0]] += float(pb[j, 2]) + s
                elif per[kb] == j and per[ka] == -1:
                    per[ka] = i
                    totals[owners[0]] += float(pa[i, 2]) + s
                elif per[ka] == i and per[kb] == j:
                    totals[owners[0]] += s
            elif len(owners) == 2:
                p, q = owners
                if not ((persons[p] >= 0) & (persons[q] >= 0)).any():  # two halves of one person: join them
                    persons[p] = np.where(persons[p] >= 0, persons[p], persons[q])
                    totals[p] += totals[q] + s
                    del persons[q], totals[q]
            elif li < TREE_LIMBS:
                per = np.full(NUM_KEYPOINTS, -1, np.int64)
                per[ka], per[kb] = i, j
                persons.append(per)
                totals.append(float(pa[i, 2] + pb[j, 2]) + s)
    out = []
    for per, total in zip(persons, totals):
        n = int((per >= 0).sum())
        if n < cfg.min_parts or total / n < cfg.min_mean_score:
            continue
        kp = np.zeros((NUM_KEYPOINTS, 2), np.float32)
        sc = np.zeros(NUM_KEYPOINTS, np.float32)
        for k in np.nonzero(per >= 0)[0]:
            x, y, v = peaks[k][per[k]]
            kp[k] = (x, y)
            sc[k] = min(max(float(v), 1e-3), 1.0)
        out.append((kp, sc, total))
    out.sort(key=lambda o: -o[2])
    return [(kp, sc) for kp, sc, _ in out]
