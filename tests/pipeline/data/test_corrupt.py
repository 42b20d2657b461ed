"""Low-quality simulation: the SKD paper's drop + windowed mean imputation, jitter, frame drops."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from models.contract.errors import BadInput
from models.contract.skeleton import Clip, SkeletonDataset, body_scale
from pipeline.cli import cli
from pipeline.data.corrupt import CorruptSpec, corrupt_clip, corrupt_dataset, impute_missing, parse_spec
from pipeline.data.pyskl_io import load_dataset, save_dataset


def test_impute_window_by_hand():
    kp = np.arange(1, 8, dtype=np.float32).reshape(1, 7, 1, 1)  # values 1..7 over 7 frames
    present = np.array([1, 1, 0, 1, 0, 0, 0], bool).reshape(1, 7, 1)
    # w=1: frame 2 <- mean(2, 4); frame 4 <- 4 (frame 5 missing); frames 5, 6 see nothing present -> 0
    np.testing.assert_allclose(impute_missing(kp, present, 1)[0, :, 0, 0], [1, 2, 3, 4, 4, 0, 0])
    # w=2: frame 2 <- mean(1, 2, 4); frames 4, 5 <- 4; frame 6 sees frames 4..6, none present -> 0
    np.testing.assert_allclose(impute_missing(kp, present, 2)[0, :, 0, 0], [1, 2, 7 / 3, 4, 4, 4, 0], rtol=1e-6)
    # w=0: no imputation, missing entries are 0
    np.testing.assert_allclose(impute_missing(kp, present, 0)[0, :, 0, 0], [1, 2, 0, 4, 0, 0, 0])


def test_impute_matches_a_brute_force_reference():
    rng = np.random.default_rng(0)
    kp = rng.normal(size=(2, 30, 5, 3)).astype(np.float32)
    present = rng.random((2, 30, 5)) > 0.6
    w = 3
    got = impute_missing(kp, present, w)
    for m, t, v in np.ndindex(2, 30, 5):
        if present[m, t, v]:
            expected = kp[m, t, v]
        else:
            lo, hi = max(0, t - w), min(30, t + w + 1)
            ok = present[m, lo:hi, v]
            expected = kp[m, lo:hi, v][ok].mean(0) if ok.any() else np.zeros(3)
        np.testing.assert_allclose(got[m, t, v], expected, rtol=1e-5, atol=1e-6)


def test_dataset_shapes_ids_labels_unchanged_and_no_nan(tiny_dataset: SkeletonDataset):
    spec = parse_spec("drop=0.6,impute=3,jitter=0.02,framedrop=0.1")
    lq = corrupt_dataset(tiny_dataset, spec, seed=1)
    assert lq.split == tiny_dataset.split and lq.classes == tiny_dataset.classes and lq.layout == tiny_dataset.layout
    assert lq.extra["corruption"] == "drop=0.6,impute=3,jitter=0.02,framedrop=0.1,seed=1"  # the seed used is recorded
    for hq, c in zip(tiny_dataset.clips, lq.clips):
        assert (c.frame_dir, c.label, c.img_shape) == (hq.frame_dir, hq.label, hq.img_shape)
        assert c.keypoint.shape == hq.keypoint.shape and c.keypoint_score.shape == hq.keypoint.shape[:3]
        assert c.keypoint.dtype == np.float32 and np.isfinite(c.keypoint).all()
        assert np.isfinite(c.keypoint_score).all() and c.keypoint_score.min() >= 0
    # the input is not modified
    assert all(c.keypoint_score.min() == 1 for c in tiny_dataset.clips)


def test_drop_rate_is_close_to_p(tiny_dataset: SkeletonDataset):
    for p in (0.2, 0.6):
        lq = corrupt_dataset(tiny_dataset, CorruptSpec(drop=p, impute=0), seed=3)
        scores = np.concatenate([c.keypoint_score.ravel() for c in lq.clips])
        assert scores.size >= 4000  # standard error of the rate < 0.008
        assert abs(np.mean(scores == 0) - p) < 0.03
        # without imputation a dropped entry is 0, a kept one untouched
        for hq, c in zip(tiny_dataset.clips, lq.clips):
            gone = c.keypoint_score == 0
            np.testing.assert_array_equal(c.keypoint[gone], 0)
            np.testing.assert_array_equal(c.keypoint[~gone], hq.keypoint[~gone])


def test_missing_entries_of_the_input_are_imputed_with_a_low_score():
    kp = np.arange(1, 8, dtype=np.float32).reshape(1, 7, 1, 1).repeat(2, axis=3)
    score = np.array([1, 1, 0, 1, 0, 0, 0], np.float32).reshape(1, 7, 1)
    clip = Clip("c", 0, kp, score)
    out = corrupt_clip(clip, CorruptSpec(drop=0.0, impute=1), np.random.default_rng(0))
    np.testing.assert_allclose(out.keypoint[0, :, 0, 0], [1, 2, 3, 4, 4, 0, 0])
    np.testing.assert_allclose(out.keypoint_score[0, :, 0], [1, 1, 0.1, 1, 0.1, 0, 0])


def _person(t: int, scale: float) -> Clip:
    rng = np.random.default_rng(5)
    kp = (rng.uniform(0, 1, size=(1, t, 17, 2)) * scale).astype(np.float32)
    return Clip("p", 0, kp, None)


def test_jitter_scales_with_body_size():
    small, large = _person(200, 1.0), _person(200, 10.0)
    spec = CorruptSpec(jitter=0.05, impute=0)
    out_s = corrupt_clip(small, spec, np.random.default_rng(7))
    out_l = corrupt_clip(large, spec, np.random.default_rng(7))
    noise_s = out_s.keypoint - small.keypoint
    noise_l = out_l.keypoint - large.keypoint
    np.testing.assert_allclose(noise_l, 10 * noise_s, rtol=1e-3, atol=1e-4)
    expected_sd = 0.05 * body_scale(small.keypoint)
    assert abs(noise_s.std() / expected_sd - 1) < 0.05
    assert abs(noise_s.mean()) < 0.1 * expected_sd


def test_framedrop_holds_the_last_kept_frame():
    t = 1000
    kp = np.arange(t, dtype=np.float32)[None, :, None, None] * np.ones((1, t, 3, 2), np.float32)
    out = corrupt_clip(Clip("f", 0, kp, None), CorruptSpec(framedrop=0.3, impute=0), np.random.default_rng(2))
    src = out.keypoint[0, :, 0, 0].astype(int)  # which input frame each output frame shows
    assert out.keypoint.shape == kp.shape and src[0] == 0
    held = src != np.arange(t)
    assert np.all(np.diff(src) >= 0) and np.all(src <= np.arange(t))
    assert np.all(src[held] == src[np.flatnonzero(held) - 1])  # a dropped frame repeats the previous output
    assert abs(held.mean() - 0.3) < 0.05
    np.testing.assert_array_equal(out.keypoint, kp[:, src])  # whole frames, every joint alike


def test_deterministic_for_a_seed(tiny_dataset: SkeletonDataset):
    spec = parse_spec("drop=0.5,impute=2,jitter=0.03,framedrop=0.2")
    a = corrupt_dataset(tiny_dataset, spec, seed=11)
    b = corrupt_dataset(tiny_dataset, spec, seed=11)
    c = corrupt_dataset(tiny_dataset, spec, seed=12)
    for x, y in zip(a.clips, b.clips):
        np.testing.assert_array_equal(x.keypoint, y.keypoint)
        np.testing.assert_array_equal(x.keypoint_score, y.keypoint_score)
    assert any(not np.array_equal(x.keypoint, z.keypoint) for x, z in zip(a.clips, c.clips))
    # a seed in the spec is used when no seed is passed
    d = corrupt_dataset(tiny_dataset, replace(spec, seed=11))
    np.testing.assert_array_equal(d.clips[3].keypoint, a.clips[3].keypoint)


def test_parse_spec():
    s = parse_spec(" drop=0.6, impute=3,jitter=0.02,framedrop=0.1,seed=4 ")
    assert s == CorruptSpec(drop=0.6, impute=3, jitter=0.02, framedrop=0.1, seed=4)
    assert parse_spec("") == CorruptSpec()


@pytest.mark.parametrize(("text", "reason"), [
    ("drop=1.5", r"bad value for drop: '1.5' \(expected a probability in \[0, 1\]\)"),
    ("drop=-0.1", "bad value for drop"),
    ("drop=nan", "bad value for drop"),
    ("jitter=abc", "bad value for jitter"),
    ("impute=-1", "bad value for impute"),
    ("impute=1.5", "bad value for impute"),
    ("framedrop=2", "bad value for framedrop"),
    ("drop", "is not key=value"),
    ("blur=3", "unknown corruption key 'blur'"),
])
def test_bad_spec_strings(text: str, reason: str):
    with pytest.raises(BadInput, match=reason):
        parse_spec(text)


def test_measured_profile(tiny_dataset: SkeletonDataset, tmp_path: Path):
    v = tiny_dataset.layout.num_joints
    miss = [0.0] * v
    miss[9] = 1.0  # this joint is always lost
    path = tmp_path / "profile.json"
    path.write_text(json.dumps({"layout": "coco17", "miss_rate": miss, "jitter": [0.0] * v}))
    lq = corrupt_dataset(tiny_dataset, parse_spec(f"impute=0,profile={path}"), seed=0)
    for hq, c in zip(tiny_dataset.clips, lq.clips):
        np.testing.assert_array_equal(c.keypoint_score[..., 9], 0)
        others = np.delete(np.arange(v), 9)
        np.testing.assert_array_equal(c.keypoint_score[..., others], 1)
        np.testing.assert_array_equal(c.keypoint[..., others, :], hq.keypoint[..., others, :])
    path.write_text(json.dumps({"miss_rate": [0.1] * 5, "jitter": [0.0] * 5}))
    with pytest.raises(BadInput, match="profile has"):
        corrupt_dataset(tiny_dataset, parse_spec(f"profile={path}"))
    with pytest.raises(BadInput, match="not found"):
        corrupt_dataset(tiny_dataset, parse_spec(f"profile={tmp_path / 'absent.json'}"))
    path.write_text("[]")
    with pytest.raises(BadInput, match="not a corruption profile"):
        corrupt_dataset(tiny_dataset, parse_spec(f"profile={path}"))


def test_spec_seed_wins_over_the_run_seed_and_is_recorded(tiny_dataset: SkeletonDataset, tmp_path: Path):
    def kp(ds: SkeletonDataset) -> np.ndarray:
        return np.concatenate([c.keypoint.ravel() for c in ds.clips])

    a = corrupt_dataset(tiny_dataset, parse_spec("drop=0.5,jitter=0.05,seed=1"), seed=5)
    b = corrupt_dataset(tiny_dataset, parse_spec("drop=0.5,jitter=0.05,seed=1"), seed=7)
    c = corrupt_dataset(tiny_dataset, parse_spec("drop=0.5,jitter=0.05,seed=2"), seed=5)
    d = corrupt_dataset(tiny_dataset, parse_spec("drop=0.5,jitter=0.05"), seed=1)
    np.testing.assert_array_equal(kp(a), kp(b))  # same spec seed, other run seeds: same output
    assert not np.array_equal(kp(a), kp(c))
    np.testing.assert_array_equal(kp(a), kp(d))  # seed=1 in the spec is the run seed 1
    assert a.extra["corruption"].endswith("seed=1") and d.extra["corruption"].endswith("seed=1")
    hq = tmp_path / "hq.pkl"
    save_dataset(tiny_dataset, hq)
    outs = []
    for spec, seed in (("drop=0.5,seed=1", "0"), ("drop=0.5,seed=1", "9"), ("drop=0.5,seed=2", "0")):
        out = tmp_path / f"lq_{len(outs)}.pkl"
        res = CliRunner().invoke(cli, ["dataset", "corrupt", str(hq), "--spec", spec, "--seed", seed, "--out",
                                       str(out)], standalone_mode=False)
        assert res.exception is None and f"(seed {spec[-1]})" in res.output
        outs.append(kp(load_dataset(out)))
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])
