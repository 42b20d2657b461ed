"""Input transform: temporal sampling, normalisation (unit-free), masking, flip/rotation/scale, features, dataset."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from models.contract.layouts import get_layout
from models.contract.skeleton import Clip
from models.net.transforms import (
    AugmentParams,
    InputConfig,
    bone_parents,
    clip_stats,
    draw_augment,
    in_channels,
    make_input,
    sample_indices,
    train_indices,
)
from pipeline.data.clips import ClipDataset


def _clip(t: int = 30, m: int = 1, layout: str = "coco17", c: int = 2, seed: int = 0, offset: float = 300.0,
          scale: float = 100.0) -> Clip:
    lay = get_layout(layout)
    rng = np.random.default_rng(seed)
    kp = rng.normal(0, 1, size=(m, t, lay.num_joints, c)).astype(np.float32) * scale + offset
    return Clip("c", 1, kp, np.ones((m, t, lay.num_joints), np.float32))


# ------------------------------------------------------------------------------------------------ sampling


def test_sample_indices_train_picks_one_frame_per_segment() -> None:
    rng = np.random.default_rng(0)
    idx = sample_indices(100, 10, True, rng)
    assert idx.shape == (1, 10)
    seg = np.arange(10) * 10
    assert ((idx[0] >= seg) & (idx[0] < seg + 10)).all()
    assert not np.array_equal(idx, sample_indices(100, 10, True, rng))  # random


def test_sample_indices_test_is_centred_and_deterministic() -> None:
    a = sample_indices(100, 10, False)
    assert np.array_equal(a[0], np.arange(10) * 10 + 5)
    assert np.array_equal(a, sample_indices(100, 10, False))
    multi = sample_indices(100, 10, False, num_clips=4)
    assert multi.shape == (4, 10)
    assert len({tuple(r) for r in multi}) == 4  # the windows differ
    assert (np.diff(multi, axis=1) > 0).all()


def test_short_clip_repeats_frames_in_order() -> None:
    for train in (True, False):
        idx = sample_indices(5, 16, train, np.random.default_rng(1))[0]
        assert idx.min() >= 0 and idx.max() <= 4
        assert (np.diff(idx) >= 0).all()
        assert set(idx) == set(range(5))  # the whole action is seen


def test_sample_indices_rejects_empty() -> None:
    with pytest.raises(ValueError):
        sample_indices(0, 8, False)


# ------------------------------------------------------------------------------------------- normalisation


def test_channels_and_shape() -> None:
    lay = get_layout("coco17")
    cfg = InputConfig(length=8, features=("joint", "bone", "motion"), max_persons=2)
    assert in_channels(cfg, 2) == 7 and in_channels(cfg, 3) == 10
    assert in_channels(InputConfig(use_score=False), 3) == 3
    x = make_input(_clip(m=1), lay, cfg, np.arange(8))
    assert x.shape == (2, 8, 17, 7) and x.dtype == np.float32
    assert not x[1].any()  # the missing second person is zeros


def test_normalisation_makes_units_irrelevant() -> None:
    """Pixels, normalised image coordinates and metres give the same model input."""
    lay = get_layout("coco17")
    cfg = InputConfig(length=10, features=("joint", "bone", "motion"))
    px = _clip(offset=400.0, scale=80.0)
    norm = Clip("c", 1, (px.keypoint - 17.0) / 640.0, px.keypoint_score)
    a = make_input(px, lay, cfg, np.arange(10))
    b = make_input(norm, lay, cfg, np.arange(10))
    assert np.allclose(a, b, atol=1e-4)
    assert np.abs(a[..., :2]).max() < 5  # body-sized, not pixel-sized


def test_centre_and_scale() -> None:
    lay = get_layout("penn13")
    clip = _clip(layout="penn13")
    st = clip_stats(clip, lay, 1)
    assert np.allclose(st.center, clip.keypoint[0, :, lay.center].mean(0), atol=1e-3)
    x = make_input(clip, lay, InputConfig(length=30, use_score=False), np.arange(30), stats=st)
    assert np.allclose(x[0, :, lay.center].mean(0), 0, atol=1e-5)  # clip-level centre on the centre joint
    kp = x[0]
    diag = np.linalg.norm(kp.max(1) - kp.min(1), axis=-1)
    assert np.median(diag) == pytest.approx(1.0, rel=1e-4)  # median body box diagonal = 1


def test_missing_joints_are_masked_everywhere() -> None:
    lay = get_layout("coco17")
    clip = _clip()
    clip.keypoint[0, 3, 9] = np.nan  # left wrist, non-finite
    clip.keypoint_score[0, 4, 7] = 0  # left elbow, score 0
    cfg = InputConfig(length=30, features=("joint", "bone", "motion"))
    x = make_input(clip, lay, cfg, np.arange(30))
    assert np.isfinite(x).all()
    assert not x[0, 3, 9, :6].any() and x[0, 3, 9, 6] == 0
    assert not x[0, 4, 7].any()
    parent = bone_parents(lay)
    assert parent[9] == 7  # wrist's bone starts at the elbow
    assert not x[0, 4, 9, 2:4].any()  # wrist bone at the frame its parent is missing
    assert not x[0, 2, 9, 4:6].any() and not x[0, 3, 9, 4:6].any()  # motion into / out of the missing frame
    assert (x[0, :, :, 6].sum() == 30 * 17 - 2)


def test_all_joints_missing_gives_zeros() -> None:
    lay = get_layout("penn13")
    clip = _clip(layout="penn13")
    clip.keypoint_score[:] = 0
    x = make_input(clip, lay, InputConfig(length=6), np.arange(6))
    assert not x.any()


# ---------------------------------------------------------------------------------------------- features


def test_bone_and_motion_features() -> None:
    lay = get_layout("coco17")
    cfg_j = InputConfig(length=30, features=("joint",), use_score=False)
    cfg_b = InputConfig(length=30, features=("bone",), use_score=False)
    cfg_m = InputConfig(length=30, features=("motion",), use_score=False)
    clip = _clip()
    j = make_input(clip, lay, cfg_j, np.arange(30))[0]
    b = make_input(clip, lay, cfg_b, np.arange(30))[0]
    mo = make_input(clip, lay, cfg_m, np.arange(30))[0]
    parent = bone_parents(lay)
    assert parent[lay.center] == -1 and (parent[np.arange(17) != lay.center] >= 0).all()
    assert not b[:, lay.center].any()
    for v in range(17):
        if parent[v] >= 0:
            assert np.allclose(b[:, v], j[:, v] - j[:, parent[v]], atol=1e-5)
    assert np.allclose(mo[:-1], j[1:] - j[:-1], atol=1e-5) and not mo[-1].any()


def test_bone_parents_point_towards_the_centre() -> None:
    lay = get_layout("ntu25")
    parent = bone_parents(lay)
    assert parent[lay.center] == -1
    for v, p in enumerate(parent):
        if p >= 0:
            assert (v, p) in lay.edges or (p, v) in lay.edges


# ------------------------------------------------------------------------------------------- augmentation


def test_flip_swaps_left_and_right_and_mirrors_x() -> None:
    lay = get_layout("coco17")
    cfg = InputConfig(length=5, use_score=False)
    clip = _clip(t=5)
    plain = make_input(clip, lay, cfg, np.arange(5))
    flipped = make_input(clip, lay, cfg, np.arange(5), AugmentParams(flip=True))
    lw, rw = lay.index("left_wrist"), lay.index("right_wrist")
    assert np.allclose(flipped[0, :, rw, 0], -plain[0, :, lw, 0])
    assert np.allclose(flipped[0, :, rw, 1], plain[0, :, lw, 1])
    nose = lay.index("nose")
    assert np.allclose(flipped[0, :, nose], plain[0, :, nose] * [-1, 1])


def test_rotation_and_scale_2d_and_3d() -> None:
    lay = get_layout("ntu25")
    cfg = InputConfig(length=4, use_score=False)
    clip = _clip(t=4, layout="ntu25", c=3)
    plain = make_input(clip, lay, cfg, np.arange(4))
    rot = make_input(clip, lay, cfg, np.arange(4), AugmentParams(rotation=0.3))
    assert np.allclose(rot[..., 1], plain[..., 1], atol=1e-5)  # 3D rotates about the vertical axis
    assert np.allclose(np.linalg.norm(rot[..., [0, 2]], axis=-1), np.linalg.norm(plain[..., [0, 2]], axis=-1),
                       atol=1e-4)
    sc = make_input(clip, lay, cfg, np.arange(4), AugmentParams(scale=(2.0, 0.5, 1.0)))
    assert np.allclose(sc[0], plain[0] * [2.0, 0.5, 1.0], atol=1e-5)
    lay2 = get_layout("coco17")
    clip2 = _clip(t=4)
    p2 = make_input(clip2, lay2, cfg, np.arange(4))
    r2 = make_input(clip2, lay2, cfg, np.arange(4), AugmentParams(rotation=np.pi / 2))
    assert np.allclose(r2[0, ..., 0], -p2[0, ..., 1], atol=1e-5)


def test_same_params_give_the_same_augmentation_for_two_views() -> None:
    """A paired HQ/LQ loader draws once and applies to both."""
    lay = get_layout("coco17")
    cfg = InputConfig(length=12, features=("joint", "bone"))
    rng = np.random.default_rng(3)
    aug = draw_augment(rng, cfg)
    assert aug is not None
    clip = _clip()
    copy = Clip("c", 1, clip.keypoint.copy(), clip.keypoint_score.copy())
    idx = sample_indices(30, 12, True, rng)[0]
    assert np.array_equal(make_input(clip, lay, cfg, idx, aug), make_input(copy, lay, cfg, idx, aug))
    assert draw_augment(rng, InputConfig(aug_scale=0, aug_rotation=0, aug_flip=False)) is None


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        InputConfig(features=("joint", "speed"))
    with pytest.raises(ValueError):
        InputConfig(features=())
    cfg = InputConfig(features=["bone", "joint"])
    assert cfg.features == ("bone", "joint")
    assert InputConfig.from_dict(cfg.to_dict()) == cfg


def test_extra_persons_keep_the_most_complete() -> None:
    lay = get_layout("coco17")
    clip = _clip(m=3)
    clip.keypoint_score[0] = 0  # person 0 is empty
    st = clip_stats(clip, lay, 2)
    assert list(st.persons) == [1, 2]


# ------------------------------------------------------------------------------------------------ dataset


def test_clip_dataset_deterministic_per_seed_epoch_index() -> None:
    lay = get_layout("coco17")
    clips = [_clip(seed=i) for i in range(3)]
    cfg = InputConfig(length=8, features=("joint", "bone"))
    a = ClipDataset(clips, lay, cfg, train=True, seed=5)
    b = pickle.loads(pickle.dumps(a))  # what a DataLoader worker gets
    x1, y1 = a[1]
    x2, y2 = b[1]
    assert isinstance(x1, torch.Tensor) and x1.shape == (2, 8, 17, 5) and y1 == 1
    assert torch.equal(x1, x2)
    a.set_epoch(1)
    assert not torch.equal(a[1][0], x1)
    c = ClipDataset(clips, lay, cfg, train=True, seed=6)
    assert not torch.equal(c[1][0], x1)


def test_clip_dataset_test_mode_windows() -> None:
    lay = get_layout("coco17")
    clips = [_clip(seed=i) for i in range(2)]
    cfg = InputConfig(length=8)
    one = ClipDataset(clips, lay, cfg, train=False)
    three = ClipDataset(clips, lay, cfg, train=False, num_test_clips=3)
    assert one[0][0].shape == (2, 8, 17, 3)
    assert three[0][0].shape == (3, 2, 8, 17, 3)
    assert torch.equal(one[0][0], one[0][0])


# ------------------------------------------------------------------------------- issue 23: run-like training


def _standing(t: int = 40, legs: bool = True) -> Clip:
    """A penn13 person standing in image coordinates (y down), waving; without `legs` the knees and ankles are out
    of the frame (score 0), as in an upper-body close-up."""
    lay = get_layout("penn13")
    pos = {"head": (0, -80), "left_shoulder": (20, -60), "right_shoulder": (-20, -60), "left_elbow": (30, -30),
           "right_elbow": (-30, -30), "left_wrist": (35, 0), "right_wrist": (-35, 0), "left_hip": (15, 0),
           "right_hip": (-15, 0), "left_knee": (15, 50), "right_knee": (-15, 50), "left_ankle": (15, 100),
           "right_ankle": (-15, 100)}
    base = np.array([pos[j] for j in lay.joints], np.float32) + 300
    kp = np.repeat(base[None, None], t, axis=1)
    kp[0, :, lay.joints.index("left_wrist"), 1] -= 20 * np.abs(np.sin(np.arange(t) / 3))  # waving, upwards
    sc = np.ones((1, t, lay.num_joints), np.float32)
    if not legs:
        sc[0, :, [lay.joints.index(j) for j in ("left_knee", "right_knee", "left_ankle", "right_ankle")]] = 0
    return Clip("s", 1, kp, sc)


def test_train_indices_off_is_the_whole_clip_sampling() -> None:
    cfg = InputConfig(length=16)
    a = train_indices(50, cfg, np.random.default_rng(3))
    b = sample_indices(50, 16, True, np.random.default_rng(3))[0]
    np.testing.assert_array_equal(a, b)


def test_train_indices_cut_sub_windows_and_hold_the_ends() -> None:
    cfg = InputConfig(length=16, aug_window=0.3, aug_idle=1.0)
    rng = np.random.default_rng(0)
    draws = [train_indices(60, cfg, rng) for _ in range(200)]
    assert all(d.shape == (16,) and d.min() >= 0 and d.max() < 60 and (np.diff(d) >= 0).all() for d in draws)
    assert any(d.max() - d.min() < 30 for d in draws)  # a part of the clip only
    assert any((d == 0).sum() >= 3 for d in draws)  # still frames before the action (the first frame held)
    assert any((d == 59).sum() >= 3 for d in draws)


def test_torso_norm_ignores_legs_leaving_the_frame_bbox_does_not() -> None:
    lay = get_layout("penn13")
    upper = [lay.joints.index(j) for j in ("head", "left_shoulder", "right_elbow", "left_wrist", "right_hip")]
    idx = np.arange(0, 40, 5)
    for norm, same in (("torso", True), ("bbox", False)):
        cfg = InputConfig(length=8, use_score=False, max_persons=1, aug_flip=False, norm=norm)
        full = make_input(_standing(), lay, cfg, idx)[..., upper, :]
        close = make_input(_standing(legs=False), lay, cfg, idx)[..., upper, :]
        assert np.allclose(full, close, atol=1e-5) == same, norm


def test_torso_norm_falls_back_to_the_box_without_shoulders() -> None:
    lay = get_layout("penn13")
    c = _standing()
    c.keypoint_score[..., [1, 2]] = 0
    assert clip_stats(c, lay, 1, "torso").scale == clip_stats(c, lay, 1, "bbox").scale


def test_upper_body_crop_drops_the_legs_and_renormalises() -> None:
    lay = get_layout("penn13")
    cfg = InputConfig(length=8, use_score=True, max_persons=1, aug_flip=False)
    idx = np.arange(0, 40, 5)
    x = make_input(_standing(), lay, cfg, idx, AugmentParams(crop=(0.0, 0.0, 1.0, 0.5)))
    legs = [lay.joints.index(j) for j in ("left_knee", "right_knee", "left_ankle", "right_ankle")]
    assert (x[..., legs, :] == 0).all()
    assert (x[..., lay.joints.index("head"), -1] == 1).all()
    # Normalised from what is left: the same as a video in which the legs were never seen.
    np.testing.assert_allclose(x, make_input(_standing(legs=False), lay, cfg, idx), atol=1e-5)


def test_framing_draws_and_shear() -> None:
    cfg = InputConfig(aug_crop=1.0, aug_shear=0.3, aug_flip=False, aug_scale=0, aug_rotation=0)
    rng = np.random.default_rng(0)
    params = [draw_augment(rng, cfg) for _ in range(50)]
    assert all(p.crop is not None and abs(p.shear) <= 0.3 for p in params)
    assert any(p.crop[3] < 0.8 and p.crop[:3] == (0.0, 0.0, 1.0) for p in params)  # close-ups
    lay = get_layout("penn13")
    c, idx = _standing(), np.arange(8)
    plain = make_input(c, lay, InputConfig(length=8, use_score=False, max_persons=1), idx)
    sheared = make_input(c, lay, InputConfig(length=8, use_score=False, max_persons=1), idx, AugmentParams(shear=0.5))
    np.testing.assert_allclose(sheared[..., 0], plain[..., 0] + 0.5 * plain[..., 1], atol=1e-6)
    np.testing.assert_allclose(sheared[..., 1], plain[..., 1])


def test_new_input_options_round_trip_and_old_checkpoints_default() -> None:
    cfg = InputConfig(norm="torso", aug_window=0.5, aug_idle=0.5, aug_crop=0.5, aug_shear=0.2)
    assert InputConfig.from_dict(cfg.to_dict()) == cfg
    old = {k: v for k, v in InputConfig().to_dict().items() if k not in ("norm", "aug_window", "aug_idle",
                                                                        "aug_crop", "aug_shear")}
    assert InputConfig.from_dict(old).norm == "bbox"
    for bad in ({"norm": "hips"}, {"aug_window": 1.5}, {"aug_crop": -0.1}, {"aug_shear": 2.0}):
        with pytest.raises(ValueError):
            InputConfig(**bad)
