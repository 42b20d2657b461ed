"""HQ/LQ pairing and the paired loader: same clips, same frames, same augmentation on both sides."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from models.contract.errors import BadInput
from models.contract.layouts import get_layout
from models.contract.skeleton import convert_dataset
from models.net.transforms import InputConfig
from pipeline.data.corrupt import corrupt_dataset, parse_spec
from pipeline.data.paired import PairedClipDataset, pair_datasets
from tests.conftest import make_dataset


def test_pairs_identical_clip_lists():
    hq = make_dataset()
    lq = corrupt_dataset(hq, parse_spec("drop=0.5"), seed=1)
    data = pair_datasets(hq, lq)
    assert data.report.paired == len(hq.clips) and data.report.problems == 0
    assert [c.frame_dir for c in data.hq] == [c.frame_dir for c in data.lq]
    tr_hq, tr_lq = data.subset("train")
    assert len(tr_hq) == len(hq.split["train"]) and [c.frame_dir for c in tr_hq] == [c.frame_dir for c in tr_lq]


def test_clips_that_do_not_pair_are_reported_not_dropped():
    hq = make_dataset()
    lq = corrupt_dataset(hq, parse_spec("drop=0.1"), seed=1)
    lq.clips = lq.clips[1:]                                        # c0_0 only in HQ
    c = lq.clips[0]
    lq.clips[0] = replace(c, keypoint=c.keypoint[:, :-2], keypoint_score=c.keypoint_score[:, :-2])  # frames
    lq.clips[1] = replace(lq.clips[1], label=(lq.clips[1].label + 1) % 3)                          # label
    with pytest.raises(BadInput) as e:
        pair_datasets(hq, lq)
    msg = str(e.value)
    assert "1 only in HQ (c0_0)" in msg and "different frame counts" in msg and "different labels" in msg
    assert "\n" not in msg
    data = pair_datasets(hq, lq, allow_unpaired=True)
    assert data.report.paired == len(hq.clips) - 3
    assert data.report.only_hq == ["c0_0"] and len(data.report.frame_mismatch) == 1


def test_lq_in_another_layout_is_converted_to_the_hq_layout():
    hq = make_dataset(layout="coco17")
    lq = convert_dataset(hq, get_layout("openpose18"))
    data = pair_datasets(hq, lq)
    assert data.layout.name == "coco17" and data.lq[0].keypoint.shape[2] == 17
    # coco17 -> openpose18 -> coco17 keeps every coco joint (openpose has them all by name)
    np.testing.assert_allclose(data.lq[0].keypoint, hq.clips[0].keypoint)


def test_2d_and_3d_do_not_pair():
    with pytest.raises(BadInput, match="2D but LQ clips are 3D"):
        pair_datasets(make_dataset(c=2), make_dataset(c=3))


def test_same_frames_and_augmentation_on_both_sides():
    hq = make_dataset(t=40)
    cfg = InputConfig(length=16, aug_rotation=30, aug_scale=0.3, aug_flip=True)
    # Identical HQ and LQ clips: any difference would come from independent sampling or augmentation.
    ds = PairedClipDataset(hq.clips, hq.clips, hq.layout, cfg, train=True, seed=3)
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            x_hq, x_lq, y = ds[i]
            assert x_hq.shape == (cfg.max_persons, 16, 17, 3) and y == hq.clips[i].label
            assert np.array_equal(x_hq.numpy(), x_lq.numpy())
    # ... and the draws do change from epoch to epoch (so the equality above is not trivial).
    ds.set_epoch(0)
    a = ds[0][0]
    ds.set_epoch(1)
    assert not np.array_equal(a.numpy(), ds[0][0].numpy())


def test_student_may_have_its_own_channels_over_the_same_windows():
    hq = make_dataset(t=40)
    cfg_t = InputConfig(length=16, use_score=False)
    ds = PairedClipDataset(hq.clips, hq.clips, hq.layout, cfg_t, train=True, seed=0,
                           lq_cfg=replace(cfg_t, use_score=True))
    x_hq, x_lq, _ = ds[2]
    assert x_hq.shape[-1] == 2 and x_lq.shape[-1] == 3
    assert np.array_equal(x_hq.numpy(), x_lq.numpy()[..., :2])
    with pytest.raises(ValueError):
        PairedClipDataset(hq.clips, hq.clips, hq.layout, cfg_t, lq_cfg=replace(cfg_t, length=8))
