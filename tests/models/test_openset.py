"""The open-set rule: Mahalanobis distance to the nearest class mean, threshold at a held-out quantile."""

from __future__ import annotations

import numpy as np
import pytest

from models.openset import OpenSetRule, fit_rule


def blobs(rng: np.random.Generator, n: int, centres: np.ndarray, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, len(centres), n)
    return centres[labels] + rng.normal(0, scale, (n, centres.shape[1])), labels


def test_distance_is_the_hand_computed_mahalanobis():
    rule = OpenSetRule(means=np.array([[0.0, 0.0], [10.0, 0.0]]), precision=np.diag([1.0, 4.0]), threshold=5.0,
                       keep=0.95, n_fit=2, n_calib=2)
    d = rule.distance(np.array([[1.0, 1.0], [9.0, 0.5]]))
    # (1, 1) nearest (0, 0): 1*1 + 4*1 = 5; (9, 0.5) nearest (10, 0): 1 + 4*0.25 = 2
    np.testing.assert_allclose(d, [5.0, 2.0])
    assert rule.known(np.array([[1.0, 1.0], [1.0, 1.2]])).tolist() == [True, False]


def test_threshold_keeps_the_asked_fraction_and_flags_far_clips():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 8, (5, 16))
    f_fit, y_fit = blobs(rng, 2000, centres)
    f_cal, _ = blobs(rng, 1000, centres)
    rule = fit_rule(f_fit, y_fit, f_cal, 5, keep=0.9)
    assert rule.known(f_cal).mean() == pytest.approx(0.9, abs=0.002)
    f_new, _ = blobs(rng, 1000, centres)  # unseen in-class clips: about the same fraction kept
    assert rule.known(f_new).mean() == pytest.approx(0.9, abs=0.04)
    far = rng.normal(0, 8, (200, 16)) + 40.0  # another "action": far from every class mean
    assert rule.known(far).mean() < 0.02
    # The tied covariance is learnt: the squared distance of in-class points is about chi-square(16), mean 16.
    assert np.median(rule.distance(f_new)) == pytest.approx(15.3, rel=0.15)


def test_round_trip_and_refusals():
    rng = np.random.default_rng(1)
    centres = rng.normal(0, 5, (3, 4))
    f, y = blobs(rng, 300, centres)
    rule = fit_rule(f, y, f[:100], 3)
    back = OpenSetRule.from_dict(rule.to_dict(), num_classes=3, channels=4)
    np.testing.assert_allclose(back.distance(f), rule.distance(f))
    with pytest.raises(ValueError, match="do not fit"):
        OpenSetRule.from_dict(rule.to_dict(), num_classes=4, channels=4)
    bad = rule.to_dict() | {"threshold": float("nan")}
    with pytest.raises(ValueError, match="non-finite"):
        OpenSetRule.from_dict(bad, num_classes=3, channels=4)
    with pytest.raises(ValueError, match="rule"):
        OpenSetRule.from_dict(rule.to_dict() | {"rule": "energy"}, num_classes=3, channels=4)


def test_a_class_missing_from_the_fitting_clips_never_makes_a_clip_known():
    rng = np.random.default_rng(2)
    centres = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])
    f, y = blobs(rng, 300, centres[:2])  # labels 0 and 1 only
    rule = fit_rule(f, y, f, 3, keep=0.99)
    assert not rule.known(np.array([[0.0, 20.0]]))[0]
