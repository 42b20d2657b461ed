"""Open-set rejection: is a clip one of the actions the model knows, or something else?

A softmax classifier puts all its mass on its K classes whatever it is shown: the bundled Penn Action student
gave arm wrestling *baseball_pitch 0.92*. The maximum probability does not separate such clips from in-class
ones here (out-of-class windows reach 0.98-1.00), so a rule scores each window another way, and a clip whose
score is above the rule's threshold is "not one of the known actions". Two kinds (`KINDS`):

- `RULE` ("mahalanobis-tied"): class-conditional Gaussians with one shared covariance on the pooled last-block
  features (Lee et al., NeurIPS 2018, "A simple unified framework for detecting out-of-distribution samples");
  the score is the squared Mahalanobis distance to the nearest class mean. What `train`/`distill` fit.
- `ENERGY` ("energy"): the energy of the logits, E(x) = -logsumexp(logits) (Liu et al., NeurIPS 2020,
  "Energy-based out-of-distribution detection"); higher means more likely unknown. It needs no features and
  fits nothing but its threshold. Chosen at `pipeline calibrate --score energy`: on the project's real-video set
  the Mahalanobis distance separates in-class clips from other actions at AUROC ~0.53-0.65, the energy of the
  same windows at 0.70-0.72 (dev split).

Either way the threshold is the `keep` quantile of the scores of held-out in-class clips (`threshold_at`), so
about that fraction of them is kept by construction and everything scoring higher is flagged.

The fitted rule is plain lists of floats, stored in a checkpoint's `extra["open_set"]` (loads with
`weights_only=True`); a Mahalanobis dict reads exactly as before the energy kind existed. Torch-free, so the
ONNX inference path can use it; fitting it to a network is `models/training/calibration.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RULE = "mahalanobis-tied"
ENERGY = "energy"
KINDS = (RULE, ENERGY)  # what a stored rule's "rule" field may say
SHRINK = 1e-3  # ridge on the covariance (relative to its mean variance): few clips per class, many channels


@dataclass(frozen=True)
class OpenSetRule:
    means: np.ndarray | None      # [K, C] class means of the pooled features (None for ENERGY)
    precision: np.ndarray | None  # [C, C] inverse of the shared (tied) covariance (None for ENERGY)
    threshold: float        # scores above it are "not one of the known actions"
    keep: float             # the quantile of held-out in-class scores the threshold sits at
    n_fit: int              # clips the means and covariance came from (0 for ENERGY: nothing is fitted)
    n_calib: int            # held-out clips the threshold came from
    kind: str = RULE        # one of KINDS

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown open-set rule {str(self.kind)[:40]!r}")
        if self.kind == RULE and (self.means is None or self.precision is None):
            raise ValueError(f"a {RULE} rule needs its class means and precision")

    def score(self, feats: np.ndarray | None = None, logits: np.ndarray | None = None) -> np.ndarray:
        """One score per row, float64, higher = less like the known actions: the Mahalanobis distance of the
        pooled features `[N, C]`, or the energy of the logits `[N, K]`, as the rule's kind says."""
        if self.kind == ENERGY:
            if logits is None:
                raise ValueError("the energy rule scores the logits; none were given")
            return energy(logits)
        if feats is None:
            raise ValueError(f"the {RULE} rule scores the pooled features; none were given")
        return self.distance(feats)

    def distance(self, feats: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of each row of `feats` `[N, C]` to the nearest class mean (RULE only)."""
        if self.means is None or self.precision is None:
            raise ValueError(f"a {self.kind} rule has no class means to measure a distance to")
        d = feats[:, None, :].astype(np.float64) - self.means[None].astype(np.float64)
        return np.einsum("nkc,cd,nkd->nk", d, self.precision, d).min(axis=1)

    def known(self, feats: np.ndarray | None = None, logits: np.ndarray | None = None) -> np.ndarray:
        return self.score(feats, logits) <= self.threshold

    def to_dict(self) -> dict:
        d = {"rule": self.kind, "threshold": float(self.threshold), "keep": float(self.keep),
             "n_fit": int(self.n_fit), "n_calib": int(self.n_calib)}
        if self.kind == RULE:
            d |= {"means": self.means.tolist(), "precision": self.precision.tolist()}
        return d

    @staticmethod
    def from_dict(d: dict, num_classes: int, channels: int | None) -> OpenSetRule:
        """Rebuild from a checkpoint; ValueError/TypeError when the stored rule is malformed or does not fit the
        model. `channels` None: the model gives no pooled features (only an energy rule fits it)."""
        if not isinstance(d, dict):
            raise TypeError(f"the open-set rule is a {type(d).__name__}, not a dict")
        kind = d.get("rule")
        if kind not in KINDS:
            raise ValueError(f"unknown open-set rule {str(kind)[:40]!r}")
        fields = ("threshold", "keep", "n_fit", "n_calib") + (("means", "precision") if kind == RULE else ())
        missing = [k for k in fields if k not in d]
        if missing:
            raise ValueError(f"the {kind} rule lacks {', '.join(missing)}")
        thr = float(d["threshold"])
        if not np.isfinite(thr):
            raise ValueError("open-set rule holds non-finite numbers")
        means = prec = None
        if kind == RULE:
            if channels is None:
                raise ValueError(f"the {RULE} rule measures pooled features the model does not output")
            means = np.asarray(d["means"], dtype=np.float64)
            prec = np.asarray(d["precision"], dtype=np.float64)
            if means.shape != (num_classes, channels) or prec.shape != (channels, channels):
                raise ValueError(f"open-set rule shapes {means.shape}/{prec.shape} do not fit the model "
                                 f"({num_classes} classes, {channels} channels)")
            if not (np.isfinite(means).all() and np.isfinite(prec).all()):
                raise ValueError("open-set rule holds non-finite numbers")
        return OpenSetRule(means, prec, thr, float(d["keep"]), int(d["n_fit"]), int(d["n_calib"]), kind)


def energy(logits: np.ndarray) -> np.ndarray:
    """-logsumexp over the classes of each row of `logits` `[N, K]`, in float64 (stable for large logits)."""
    z = np.asarray(logits, dtype=np.float64)
    if not len(z):
        return np.zeros(0)
    m = z.max(axis=1)
    return -(m + np.log(np.exp(z - m[:, None]).sum(axis=1)))


def threshold_at(scores: np.ndarray | list[float], keep: float) -> float:
    """The `keep` quantile of held-out in-class scores (numpy's linear interpolation); +inf when there are none.
    Every kind and every calibration path sets its threshold here."""
    return float(np.quantile(scores, keep)) if len(scores) else float("inf")


def _check_keep(keep: float) -> None:
    if not 0 < keep <= 1:
        raise ValueError("keep must be in (0, 1]")


def fit_rule(fit_feats: np.ndarray, fit_labels: np.ndarray, calib_feats: np.ndarray, num_classes: int,
             keep: float = 0.95) -> OpenSetRule:
    """Class means and tied covariance from `fit_feats`; threshold from the held-out `calib_feats`."""
    _check_keep(keep)
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
    thr = threshold_at(rule.distance(calib_feats), keep)
    return OpenSetRule(means, rule.precision, thr, keep, len(f), len(calib_feats))


def fit_energy_rule(calib_logits: np.ndarray, keep: float = 0.95) -> OpenSetRule:
    """The energy rule: only its threshold, from the logits `[N, K]` of held-out in-class clips."""
    _check_keep(keep)
    return OpenSetRule(None, None, threshold_at(energy(calib_logits), keep), keep, 0, len(calib_logits), ENERGY)
