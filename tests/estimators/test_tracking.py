"""Person tracking, ranking and gap filling on hand-made detections (no model involved)."""

from __future__ import annotations

import numpy as np
import pytest

from estimators.tracking import PersonTracker, TrackerConfig, box_iou, keypoint_box, temporal_smooth

V = 4


def person(x: float, y: float, score: float = 0.9, size: float = 40.0) -> tuple[np.ndarray, np.ndarray]:
    """A 4-joint 'person' whose joints span a size x size square at (x, y)."""
    kp = np.array([[x, y], [x + size, y], [x, y + size], [x + size, y + size]], np.float32)
    return kp, np.full(V, score, np.float32)


def test_interpolation_between_processed_frames_is_linear():
    tr = PersonTracker(TrackerConfig(max_persons=1), V)
    tr.update(0, [person(0, 0)])
    tr.update(4, [person(8, 4)])
    tr.update(8, [person(16, 8)])
    kp, sc = tr.finalize(9)
    assert kp.shape == (1, 9, V, 2) and sc.shape == (1, 9, V)
    # Frame 1 is 1/4 of the way from frame 0 (x=0) to frame 4 (x=8); frame 6 halfway from 4 to 8.
    np.testing.assert_allclose(kp[0, 1, 0], [2, 1])
    np.testing.assert_allclose(kp[0, 6, 0], [12, 6])
    np.testing.assert_allclose(sc[0], 0.9, rtol=1e-6)


def test_no_interpolation_across_a_processed_frame_that_lost_the_person():
    tr = PersonTracker(TrackerConfig(max_persons=1), V)
    tr.update(0, [person(0, 0)])
    tr.update(4, [])               # processed, person not found: a real loss, not a skipped frame
    tr.update(8, [person(4, 0)])
    kp, sc = tr.finalize(10)
    assert (sc[0, 1:8] == 0).all() and (kp[0, 1:8] == 0).all()
    assert (sc[0, 0] > 0).all() and (sc[0, 8] > 0).all()
    # Tail: frame 9 was never processed; it holds the last processed frame's pose.
    np.testing.assert_allclose(kp[0, 9], kp[0, 8])


def test_joint_missing_at_one_end_stays_missing_in_the_gap():
    tr = PersonTracker(TrackerConfig(max_persons=1), V)
    a_kp, a_sc = person(0, 0)
    b_kp, b_sc = person(4, 0)
    b_sc[2] = 0
    tr.update(0, [(a_kp, a_sc)])
    tr.update(4, [(b_kp, b_sc)])
    kp, sc = tr.finalize(5)
    assert (sc[0, 1:4, 2] == 0).all() and (kp[0, 1:4, 2] == 0).all()
    assert (sc[0, 1:4, [0, 1, 3]] > 0).all()


def test_tracks_follow_identity_and_rank_by_length_and_confidence():
    rng = np.random.default_rng(0)
    tr = PersonTracker(TrackerConfig(max_persons=2), V)
    for t in range(20):
        dets = [person(10 + t, 100)]                 # A: every frame, moving right
        if t % 2 == 0:
            dets.append(person(300, 50 + t, 0.8))    # B: every other frame, moving down
        if t == 5:
            dets.append(person(600, 300, 0.99))      # C: one confident glimpse
        rng.shuffle(dets)                            # detector output order carries no identity
        tr.update(t, dets)
    kp, sc = tr.finalize(20)
    assert kp.shape[0] == 2
    assert (sc[0] > 0).all()                         # A, seen longest, comes first
    np.testing.assert_allclose(kp[0, :, 0, 0], 10 + np.arange(20))
    np.testing.assert_allclose(kp[1, ::2, 0, 1], 50 + np.arange(0, 20, 2))  # B second, C dropped
    assert len(tr.tracks) == 3


def test_max_persons_one_keeps_the_person_seen_most():
    tr = PersonTracker(TrackerConfig(max_persons=1), V)
    for t in range(10):
        # Per-frame detection that jumps between two people: A in 7 frames, B in 3.
        tr.update(t, [person(0, 0) if t % 3 else person(500, 500)])
    kp, sc = tr.finalize(10)
    assert kp.shape[0] == 1
    found = sc[0].any(-1)
    assert found.sum() == 6  # frames 1, 2, 4, 5, 7, 8 see A; frames that saw B are not filled in for A
    assert (kp[0, found, 0] == [0, 0]).all()


def test_far_jump_starts_a_new_track_and_old_tracks_expire():
    tr = PersonTracker(TrackerConfig(max_persons=3, max_age=5), V)
    tr.update(0, [person(0, 0)])
    tr.update(1, [person(1000, 0)])   # no overlap, far away: another person
    tr.update(20, [person(0, 0)])     # the first track is older than max_age: a new track
    assert len(tr.tracks) == 3


def test_no_detection_gives_one_empty_person():
    tr = PersonTracker(TrackerConfig(max_persons=2), V)
    tr.update(0, [])
    kp, sc = tr.finalize(3)
    assert kp.shape == (1, 3, V, 2) and not sc.any()


def test_out_of_order_frames_are_refused():
    tr = PersonTracker(TrackerConfig(), V)
    tr.update(3, [])
    with pytest.raises(ValueError):
        tr.update(3, [])


def test_boxes():
    kp, sc = person(10, 20, size=10)
    np.testing.assert_allclose(keypoint_box(kp, sc), [10, 20, 20, 30])
    sc[1:] = 0
    assert keypoint_box(kp, sc) is None
    assert box_iou(np.array([0, 0, 10, 10]), np.array([5, 0, 15, 10])) == pytest.approx(50 / 150)


def test_temporal_smooth_reduces_noise_keeps_missing():
    rng = np.random.default_rng(1)
    t = 200
    truth = np.zeros((1, t, V, 2), np.float32) + 100
    noisy = truth + rng.normal(0, 2, truth.shape).astype(np.float32)
    sc = np.ones((1, t, V), np.float32)
    sc[0, 50:60, 1] = 0
    noisy[0, 50:60, 1] = 0
    out = temporal_smooth(noisy, sc, 3)
    assert (out[0, 50:60, 1] == 0).all()
    ok = sc > 0
    assert np.abs(out - truth)[ok].std() < 0.5 * np.abs(noisy - truth)[ok].std()
    assert temporal_smooth(noisy, sc, 0) is noisy
