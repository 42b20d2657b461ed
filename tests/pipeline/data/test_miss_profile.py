"""Miss-episode profiles: fitted from known HQ/LQ pairs, replayed by `corrupt` with the same runs and co-misses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.contract.errors import BadInput
from models.contract.layouts import get_layout
from models.contract.skeleton import Clip, SkeletonDataset
from pipeline.data.corrupt import CorruptSpec, corrupt_dataset
from pipeline.data.miss_profile import ProfileBuilder, load_replay, miss_runs, track_pair


def _pair(t: int = 40) -> tuple[np.ndarray, ...]:
    """HQ: one person, 4 joints on a square of side 100; LQ: the same + 2 px to the right, with known misses."""
    base = np.array([[0, 0], [100, 0], [0, 100], [100, 100]], np.float32)
    hq = np.repeat(base[None, None], t, axis=1)
    hq_sc = np.ones((1, t, 4), np.float32)
    lq = hq + np.array([2, 0], np.float32)
    lq_sc = hq_sc.copy()
    lq_sc[0, 5:8, :2] = 0      # joints 0 and 1 go together for 3 frames (an edge)
    lq_sc[0, 20, 3] = 0        # joint 3 alone, one frame
    hq_sc[0, 30:32] = 0        # HQ has nobody: frames that count for nothing
    return hq, hq_sc, lq, lq_sc


def _fit(t: int = 40) -> dict:
    b = ProfileBuilder(4)
    b.add(*track_pair(*_pair(t)))
    return b.fit()


def test_fit_keeps_episodes_rates_and_offsets():
    prof = _fit()
    assert prof["episodes"] == [[3, 3, 3], [8]]            # bit masks: joints {0,1} x3 frames, then {3}
    assert prof["episode_start_rate"] == pytest.approx(2 / (38 - 4), abs=1e-5)  # 38 HQ frames, 4 of them in episodes
    assert prof["miss_rate"] == pytest.approx([3 / 38, 3 / 38, 0, 1 / 38], abs=1e-4)
    scale = 100 * np.sqrt(2)  # body size: the box diagonal of the square
    assert np.allclose(np.asarray(prof["error_mean"])[:, 0], 2 / scale, atol=1e-4)
    assert np.allclose(prof["error_std"], 0, atol=1e-6)


def test_lost_person_is_every_joint_missing():
    hq, hq_sc, lq, lq_sc = _pair()
    lq[0, 10:14] += 500  # LQ follows somebody else, far away: ours is lost
    present, missing, _ = track_pair(hq, hq_sc, lq, lq_sc)
    assert missing[10:14].all() and present[10:14].all() and not missing[30:32].any()


def test_replay_reproduces_runs_and_co_missing_joints(tmp_path: Path):
    prof = _fit()
    path = tmp_path / "p.json"
    path.write_text(json.dumps(prof))
    rep = load_replay(str(path), 4)
    miss = rep.missing(20000, np.random.default_rng(0))
    assert np.array_equal(miss[:, 0], miss[:, 1]) and not miss[:, 2].any()  # {0,1} always together
    assert not (miss[:, 0] & miss[:, 3]).any()
    runs01, runs3 = miss_runs(miss[:, :1], np.ones((20000, 1), bool)), miss_runs(miss[:, 3:], np.ones((20000, 1), bool))
    assert set(runs01[1:-1]) == {3} and set(runs3) == {1}   # (a run cut by the clip's ends may be shorter)
    assert miss.mean(0) == pytest.approx(prof["miss_rate"], abs=0.01)
    # independent drops at the same rates would give runs of 1 mostly
    indep = np.random.default_rng(0).random(20000) < prof["miss_rate"][0]
    assert miss_runs(indep[:, None], np.ones((20000, 1), bool)).mean() < 1.2


def test_corrupt_replays_the_profile(tmp_path: Path):
    layout = get_layout("coco17")
    b = ProfileBuilder(17)
    rng = np.random.default_rng(1)
    hq = rng.uniform(100, 300, size=(1, 60, 17, 2)).astype(np.float32)
    hq_sc = np.ones((1, 60, 17), np.float32)
    lq_sc = hq_sc.copy()
    lq_sc[0, 10:16, 13:] = 0  # the legs (knees, ankles) leave the frame together for 6 frames
    b.add(*track_pair(hq, hq_sc, hq + 1.0, lq_sc))
    path = tmp_path / "legs.json"
    path.write_text(json.dumps(b.fit()))
    clips = [Clip(f"c{i}", 0, hq.copy(), hq_sc.copy()) for i in range(30)]
    ds = SkeletonDataset(clips, {"train": [c.frame_dir for c in clips]}, ["a"], layout, {})
    out = corrupt_dataset(ds, CorruptSpec(profile=str(path), impute=0, seed=3))
    gone = np.stack([c.keypoint_score[0] == 0 for c in out.clips])  # [N, T, V]
    assert gone.any() and not gone[..., :13].any()                  # only the legs ever go
    assert (gone[..., 13:] == gone[..., 13:14]).all()               # and always together
    runs = np.concatenate([miss_runs(g[:, 13:14], np.ones((60, 1), bool)) for g in gone])
    assert (runs[runs < 6].size / runs.size) < 0.5                  # mostly whole 6-frame runs (ends cut some)
    shift = np.stack([c.keypoint[0] for c in out.clips]) - hq[0]
    assert np.nanmean(np.where(gone[..., None], np.nan, shift)) == pytest.approx(1.0, abs=0.05)


def test_bad_profile_is_one_line(tmp_path: Path):
    prof = _fit()
    path = tmp_path / "p.json"
    path.write_text(json.dumps(prof))
    with pytest.raises(BadInput, match="profile is not for 17 joints"):
        load_replay(str(path), 17)
    prof["episodes"] = [[1 << 9]]
    path.write_text(json.dumps(prof))
    with pytest.raises(BadInput, match="out of range"):
        load_replay(str(path), 4)
    del prof["episodes"]
    path.write_text(json.dumps(prof))
    with pytest.raises(BadInput, match="not a miss-episode profile"):
        load_replay(str(path), 4)
