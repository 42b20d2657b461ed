"""The open-set rule: Mahalanobis distance to the nearest class mean or energy of the logits, threshold at a
held-out quantile; both kinds round-trip through the checkpoint dict, and a malformed dict is refused."""

from __future__ import annotations

import numpy as np
import pytest

from models.openset import ENERGY, RULE, OpenSetRule, energy, fit_energy_rule, fit_rule


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
        OpenSetRule.from_dict(rule.to_dict() | {"rule": "gaussian-full"}, num_classes=3, channels=4)


def test_a_class_missing_from_the_fitting_clips_never_makes_a_clip_known():
    rng = np.random.default_rng(2)
    centres = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])
    f, y = blobs(rng, 300, centres[:2])  # labels 0 and 1 only
    rule = fit_rule(f, y, f, 3, keep=0.99)
    assert not rule.known(np.array([[0.0, 20.0]]))[0]


def test_an_old_mahalanobis_dict_loads_unchanged():
    """A dict as checkpoints stored it before the energy kind existed: the same rule, the same distances."""
    old = {"rule": "mahalanobis-tied", "means": [[0.0, 0.0], [10.0, 0.0]], "precision": [[1.0, 0.0], [0.0, 4.0]],
           "threshold": 5.0, "keep": 0.95, "n_fit": 7, "n_calib": 3}
    rule = OpenSetRule.from_dict(old, num_classes=2, channels=2)
    assert rule.kind == RULE and (rule.threshold, rule.keep, rule.n_fit, rule.n_calib) == (5.0, 0.95, 7, 3)
    feats = np.array([[1.0, 1.0], [9.0, 0.5]])
    np.testing.assert_allclose(rule.score(feats), [5.0, 2.0])
    np.testing.assert_allclose(rule.score(feats, np.zeros((2, 2))), rule.distance(feats))  # logits ignored
    assert rule.to_dict() == old


def test_energy_is_the_hand_computed_minus_logsumexp():
    logits = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [1000.0, 1000.0, -1000.0]], dtype=np.float32)
    want = [-np.log(3.0), -(10.0 + np.log(1.0 + 2.0 * np.exp(-10.0))), -(1000.0 + np.log(2.0))]
    got = energy(logits)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12)  # stable where exp(1000) overflows
    rule = OpenSetRule(None, None, -5.0, 0.95, 0, 3, ENERGY)
    np.testing.assert_allclose(rule.score(None, logits), want, rtol=1e-12)
    # Flat logits (-log 3 = -1.10) are above the threshold: flagged; a peaked one (-10.0) is kept.
    assert rule.known(logits=logits).tolist() == [False, True, True]
    with pytest.raises(ValueError, match="logits"):
        rule.score(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="no class means"):
        rule.distance(np.zeros((3, 2)))


def test_energy_threshold_is_the_keep_quantile_of_the_held_out_scores():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 3, (101, 5))
    rule = fit_energy_rule(logits, keep=0.9)
    scores = -np.log(np.exp(logits).sum(axis=1))
    assert rule.threshold == pytest.approx(np.sort(scores)[90], rel=1e-12)  # 101 points: the 0.9 quantile is one
    assert (rule.kind, rule.keep, rule.n_fit, rule.n_calib, rule.means, rule.precision) == (ENERGY, 0.9, 0, 101,
                                                                                              None, None)
    assert rule.known(logits=logits).sum() == 91
    with pytest.raises(ValueError, match="keep"):
        fit_energy_rule(logits, keep=0.0)


def test_energy_round_trip_and_refusals():
    rule = fit_energy_rule(np.random.default_rng(4).normal(0, 2, (40, 4)), keep=0.8)
    d = rule.to_dict()
    assert set(d) == {"rule", "threshold", "keep", "n_fit", "n_calib"} and d["rule"] == "energy"
    back = OpenSetRule.from_dict(d, num_classes=4, channels=None)  # no features needed
    assert back == rule
    assert OpenSetRule.from_dict(d, num_classes=4, channels=16) == rule  # whatever the model's channels
    with pytest.raises(ValueError, match="unknown open-set rule 'Energy'"):
        OpenSetRule.from_dict(d | {"rule": "Energy"}, num_classes=4, channels=16)
    with pytest.raises(ValueError, match="non-finite"):
        OpenSetRule.from_dict(d | {"threshold": float("inf")}, num_classes=4, channels=16)
    with pytest.raises(ValueError, match="the energy rule lacks threshold"):
        OpenSetRule.from_dict({k: v for k, v in d.items() if k != "threshold"}, num_classes=4, channels=16)
    with pytest.raises(TypeError, match="not a dict"):
        OpenSetRule.from_dict([d], num_classes=4, channels=16)


def test_a_mahalanobis_rule_needs_its_fields_and_the_features():
    d = {"rule": RULE, "means": [[0.0]], "precision": [[1.0]], "threshold": 1.0, "keep": 0.9, "n_fit": 1,
         "n_calib": 1}
    assert OpenSetRule.from_dict(d, num_classes=1, channels=1).kind == RULE
    with pytest.raises(ValueError, match="the mahalanobis-tied rule lacks precision"):
        OpenSetRule.from_dict({k: v for k, v in d.items() if k != "precision"}, num_classes=1, channels=1)
    with pytest.raises(ValueError, match="measures pooled features the model does not output"):
        OpenSetRule.from_dict(d, num_classes=1, channels=None)
    with pytest.raises(ValueError, match="needs its class means"):
        OpenSetRule(None, None, 1.0, 0.9, 1, 1, RULE)
