"""LQ-vs-HQ statistics, PCK and the corruption profile on hand-made skeletons; the committed profile replays."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from models.contract.layouts import PENN13
from pipeline.data.corrupt import load_profile, parse_spec
from pipeline.extract.quality import PairStats, pck

V = 13


def skeleton(t: int, x0: float = 100.0, size: float = 100.0) -> np.ndarray:
    """[T, V, 2]: joints spread over a size x size box (diagonal size*sqrt(2)), standing still."""
    grid = np.stack(np.meshgrid(np.linspace(0, 1, 4), np.linspace(0, 1, 4)), -1).reshape(-1, 2)[:V]
    return np.repeat((grid * size + [x0, 50])[None], t, 0).astype(np.float32)


def test_pair_stats_distances_misses_and_lost_persons():
    t = 10
    hq = skeleton(t)[None]
    lq = hq.copy()
    lq[0, :, 0, 0] += 0.1 * 100 * np.sqrt(2)   # joint 0 off by 0.1 body size in x, every frame
    hs = np.ones((1, t, V), np.float32)
    ls = hs.copy()
    ls[0, :5, 1] = 0                            # joint 1 missing in half the frames
    ls[0, 8:] = 0                               # LQ lost the person in the last two frames
    st = PairStats(V)
    st.add(hq, hs, lq, ls)
    s = st.summary()
    assert s["frames"] == 10 and s["hq_coverage"] == 1.0 and s["lq_coverage"] == 0.8
    assert s["lq_lost"] == pytest.approx(0.2)
    # Missing: joint 1 in frames 0-4, plus all 13 joints in the 2 frames where LQ lost the person.
    assert s["missing_joint_rate"] == pytest.approx((5 + 2 * V) / (t * V))
    prof = st.profile("penn13", list(PENN13.joints))
    assert prof["miss_rate"][1] == pytest.approx(7 / 10) and prof["miss_rate"][2] == pytest.approx(2 / 10)
    # Joint 0: error (0.1, 0) body sizes -> per-coordinate RMS sqrt((0.01 + 0) / 2); robust sd of |0.1|, |0|.
    assert prof["jitter_rms"][0] == pytest.approx(np.sqrt(0.01 / 2), rel=1e-3)
    assert prof["jitter"][0] == pytest.approx(1.4826 * 0.05, rel=1e-3)
    assert prof["jitter"][2] == 0 and prof["outlier_rate"][0] == 0


def test_persons_are_paired_by_overlap_not_by_order():
    t = 4
    a, b = skeleton(t, 0), skeleton(t, 1000)
    hq = np.stack([a, b])
    lq = np.stack([b, a])                     # LQ ranked the two people the other way round
    sc = np.ones((2, t, V), np.float32)
    st = PairStats(V)
    st.add(hq, sc, lq, sc)
    s = st.summary()
    assert s["lq_lost"] == 0 and s["dist_mean"] == 0 and s["hq_persons_per_frame"] == 2


def test_pck():
    gt = np.array([[0, 0], [10, 0], [0, 10]], np.float32)
    vis = np.array([2, 2, 0], np.float32)
    pred = np.array([[1, 0], [10, 5], [100, 100]], np.float32)
    assert pck(pred, np.ones(3), gt, vis, size=20) == (1, 2)   # 0.2 * 20 = 4 px: joint 0 in, joint 1 out
    assert pck(pred, np.array([0, 1, 1]), gt, vis, size=30) == (1, 2)  # a missing joint is never correct


def test_committed_profile_replays_in_corrupt():
    path = Path(str(resources.files("models") / "zoo" / "lq_profile_penn13.json"))
    d = json.loads(path.read_text())
    assert d["layout"] == "penn13" and d["joints"] == list(PENN13.joints) and "command" in d
    miss, jit = load_profile(str(path), PENN13.num_joints)
    assert (miss > 0).all() and (miss < 0.5).all() and (jit > 0).all() and (jit < 0.1).all()
    from pipeline.data.corrupt import corrupt_dataset
    from tests.conftest import make_dataset

    ds = make_dataset(layout="penn13", t=200)
    out = corrupt_dataset(ds, parse_spec(f"profile={path},impute=0"), seed=0)
    assert [c.total_frames for c in out.clips] == [c.total_frames for c in ds.clips]
    lost = np.concatenate([(c.scores() == 0).reshape(-1, V) for c in out.clips])
    np.testing.assert_allclose(lost.mean(0), miss, atol=0.03)  # the measured per-joint miss rates come back
