"""OpenPose PAF grouping on synthetic heatmaps/PAFs whose people are known."""

from __future__ import annotations

import numpy as np
import pytest

from estimators.paf_grouping import LIMBS, PAF_CHANNELS, GroupingConfig, find_peaks, group_persons

# An upright person in openpose18 order (nose, neck, r_sho, r_elb, r_wri, l_sho, l_elb, l_wri, r_hip, r_knee,
# r_ank, l_hip, l_knee, l_ank, r_eye, l_eye, r_ear, l_ear), map pixels relative to the hips' middle.
TEMPLATE = np.array([(0, -34), (0, -22), (-8, -22), (-12, -10), (-14, 0), (8, -22), (12, -10), (14, 0),
                     (-5, 2), (-6, 16), (-6, 30), (5, 2), (6, 16), (6, 30), (-3, -37), (3, -37), (-7, -35),
                     (7, -35)], np.float32)
H, W = 120, 200


def person(cx: float, cy: float, scale: float) -> np.ndarray:
    return TEMPLATE * scale + np.array([cx, cy], np.float32)


def render(people: list[np.ndarray], drop_joint: dict[int, int] | None = None,
           drop_limb: dict[int, int] | None = None, sigma: float = 1.5, width: float = 1.5):
    """Heatmaps [19, H, W] (Gaussian per joint, max over people) and PAFs [38, H, W] (unit vector near each limb).

    drop_joint {person: joint}: that joint gets no peak; drop_limb {person: limb index}: that limb gets no field.
    """
    drop_joint, drop_limb = drop_joint or {}, drop_limb or {}
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    hm = np.zeros((19, H, W), np.float32)
    paf = np.zeros((38, H, W), np.float32)
    for p, kp in enumerate(people):
        for k, (x, y) in enumerate(kp):
            if drop_joint.get(p) == k:
                continue
            hm[k] = np.maximum(hm[k], np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2)))
        for li, ((a, b), (cx, cy)) in enumerate(zip(LIMBS, PAF_CHANNELS)):
            if drop_limb.get(p) == li:
                continue
            va, vb = kp[a], kp[b]
            d = vb - va
            length = float(np.linalg.norm(d))
            u = d / length
            rx, ry = xx - va[0], yy - va[1]
            along = rx * u[0] + ry * u[1]
            across = np.abs(rx * u[1] - ry * u[0])
            near = (along >= -width) & (along <= length + width) & (across <= width)
            paf[cx][near], paf[cy][near] = u[0], u[1]
    hm[18] = np.clip(1 - hm[:18].max(0), 0, 1)
    return hm, paf


def match(found, truth):
    """For each true person, the found one whose neck is nearest."""
    out = []
    for kp in truth:
        d = [np.linalg.norm(f[0][1] - kp[1]) if f[1][1] > 0 else np.inf for f in found]
        out.append(found[int(np.argmin(d))])
    return out


PEOPLE = [person(35, 70, 1.0), person(100, 75, 0.8), person(160, 68, 1.1)]


def test_three_people_recovered_joint_by_joint():
    hm, paf = render(PEOPLE)
    found = group_persons(hm, paf)
    assert len(found) == 3
    for (kp, sc), truth in zip(match(found, PEOPLE), PEOPLE):
        assert (sc > 0.9).all()  # every joint found, scored by its peak (~1)
        assert np.abs(kp - truth).max() <= 1.0  # peaks sit on the nearest map pixel
    necks = sorted(float(f[0][1, 0]) for f in found)
    assert necks == pytest.approx([35, 100, 160], abs=1)


def test_missing_joint_cuts_the_branch_below_it():
    hm, paf = render(PEOPLE, drop_joint={1: 3})  # person 1 has no right elbow
    found = group_persons(hm, paf)
    assert len(found) == 3  # the orphaned wrist does not become a person
    kp, sc = match(found, PEOPLE)[1]
    assert sc[3] == 0 and sc[4] == 0 and (kp[3:5] == 0).all()  # elbow missing, so the wrist cannot attach
    others = np.ones(18, bool)
    others[[3, 4]] = False
    assert (sc[others] > 0.9).all() and np.abs(kp[others] - PEOPLE[1][others]).max() <= 1.0


def test_missing_limb_field_leaves_a_fragment_that_is_dropped():
    li = LIMBS.index((5, 6))  # left upper arm
    hm, paf = render(PEOPLE, drop_limb={2: li})
    found = group_persons(hm, paf)
    assert len(found) == 3  # elbow+wrist of person 2 form a 2-part fragment: below min_parts, dropped
    kp, sc = match(found, PEOPLE)[2]
    assert sc[6] == 0 and sc[7] == 0 and sc[5] > 0.9
    frag = group_persons(hm, paf, GroupingConfig(min_parts=2))
    assert len(frag) == 4 and sorted(int((s > 0).sum()) for _, s in frag)[0] == 2


def test_people_close_together_are_not_mixed():
    close = [person(60, 70, 1.0), person(88, 70, 1.0)]  # wrists 0 px apart horizontally: r/l arms interleave
    hm, paf = render(close)
    found = group_persons(hm, paf)
    assert len(found) == 2
    for (kp, sc), truth in zip(match(found, close), close):
        ok = sc > 0
        assert ok.sum() >= 16 and np.abs(kp[ok] - truth[ok]).max() <= 1.0


def test_no_people_and_bad_shapes():
    assert group_persons(np.zeros((19, H, W), np.float32), np.zeros((38, H, W), np.float32)) == []
    with pytest.raises(ValueError):
        group_persons(np.zeros((19, H, W), np.float32), np.zeros((36, H, W), np.float32))


def test_find_peaks_suppresses_near_duplicates():
    hm = np.zeros((40, 40), np.float32)
    hm[10, 10], hm[10, 13], hm[30, 30], hm[5, 35] = 0.9, 0.8, 0.5, 0.05
    pk = find_peaks(hm, 0.1, 6.0)
    assert pk.tolist() == [[10, 10, pytest.approx(0.9)], [30, 30, 0.5]]
