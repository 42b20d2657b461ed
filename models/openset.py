"""Open-set rejection: is a clip one of the actions the model knows, or something else?

A softmax classifier puts all its mass on its K classes whatever it is shown: the bundled Penn Action student
gave arm wrestling *baseball_pitch 0.92*. The maximum probability does not separate such clips from in-class
ones here (out-of-class windows reach 0.98-1.00), so the rule works in feature space instead: class-conditional
Gaussians with one shared covariance on the pooled last-block features (Lee et al., NeurIPS 2018, "A simple
unified framework for detecting out-of-distribution samples"). A clip's score is its Mahalanobis distance to the
nearest class mean; the threshold is the `keep` quantile of the scores of held-out in-class clips, so about that
fraction of them is kept by construction and everything farther away is flagged.

The fitted rule is plain lists of floats, stored in a checkpoint's `extra["open_set"]` (loads with
`weights_only=True`). Torch-free, so the ONNX inference path can use it; fitting it to a network is
`models/training/calibration.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RULE = "mahalanobis-tied"
SHRINK = 1e-3  # ridge on the covariance (relative to its mean variance): few clips per class, many channels


@dataclass(frozen=True)
class OpenSetRule:
    means: np.ndarray       # [K, C] class means of the pooled features
    precision: np.ndarray   # [C, C] inverse of the shared (tied) covariance
    threshold: float        # distances above it are "not one of the known actions"
    keep: float             # the quantile of held-out in-class distances the threshold sits at
    n_fit: int              # clips the means and covariance came from
    n_calib: int            # held-out clips the threshold came from

    def distance(self, feats: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of each row of `feats` `[N, C]` to the nearest class mean."""
        d = feats[:, None, :].astype(np.float64) - self.means[None].astype(np.float64)
        return np.einsum("nkc,cd,nkd->nk", d, self.precision, d).min(axis=1)

    def known(self, feats: np.ndarray) -> np.ndarray:
        return self.distance(feats) <= self.threshold

    def to_dict(self) -> dict:
        return {"rule": RULE, "means": self.means.tolist(), "precision": self.precision.tolist(),
                "threshold": float(self.threshold), "keep": float(self.keep), "n_fit": int(self.n_fit),
                "n_calib": int(self.n_calib)}

    @staticmethod
    def from_dict(d: dict, num_classes: int, channels: int) -> OpenSetRule:
        """Rebuild from a checkpoint; ValueError when the stored rule does not fit the model."""
        if d.get("rule") != RULE:
            raise ValueError(f"unknown open-set rule {d.get('rule')!r}")
        means = np.asarray(d["means"], dtype=np.float64)
        prec = np.asarray(d["precision"], dtype=np.float64)
        if means.shape != (num_classes, channels) or prec.shape != (channels, channels):
            raise ValueError(f"open-set rule shapes {means.shape}/{prec.shape} do not fit the model "
                             f"({num_classes} classes, {channels} channels)")
        thr = float(d["threshold"])
        if not (np.isfinite(means).all() and np.isfinite(prec).all() and np.isfinite(thr)):
            raise ValueError("open-set rule holds non-finite numbers")
        return OpenSetRule(means, prec, thr, float(d["keep"]), int(d["n_fit"]), int(d["n_calib"]))


def fit_rule(fit_feats: np.ndarray, fit_labels: np.ndarray, calib_feats: np.ndarray, num_classes: int,
             keep: float = 0.95) -> OpenSetRule:
    """Class means and tied covariance from `fit_feats`; threshold from the held-out `calib_feats`."""
    if not 0 < keep <= 1:
        raise ValueError("keep must be in (0, 1]")
    f = fit_feats.astype(np.float64)
    c = f.shape[1]
    means = np.zeros((num_classes, c))
    for k in range(num_classes):
        sel = f[fit_labels == k]
        # A class absent from the fitting clips gets a mean no clip is near: it can never make a clip "known".
        means[k] = sel.mean(0) if len(sel) else np.full(c, 1e6)
    present = np.isin(fit_labels, np.flatnonzero(np.bincount(fit_labels, minlength=num_classes)))
    centred = f[present] - means[fit_labels[present]]
    cov = centred.T @ centred / max(1, len(centred))
    cov += SHRINK * max(float(np.trace(cov)) / c, 1e-12) * np.eye(c)
    rule = OpenSetRule(means, np.linalg.inv(cov), float("inf"), keep, len(f), len(calib_feats))
    dist = rule.distance(calib_feats)
    thr = float(np.quantile(dist, keep)) if len(dist) else float("inf")
    return OpenSetRule(means, rule.precision, thr, keep, len(f), len(calib_feats))
