"""HRNet through MMPose: the real call path (config -> registry model -> checkpoint -> test pipeline -> test_step)
with random weights the test writes. Skips when the optional extra is not installed."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from estimators.mmpose_hrnet import MMPoseConfig, MMPoseHRNet, mmpose_available
from models.contract.errors import BadInput
from pipeline.extract.video import VideoReader

OK, WHY = mmpose_available()
pytestmark = pytest.mark.skipif(not OK, reason=f"optional mmpose extra not importable ({WHY}); install it as the "
                                               f"README says (pip install -e '.[mmpose]' + the --no-deps step)")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine, spinning OpenMP threads slow a busy run down tenfold."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory) -> Path:
    """An MMPose-style checkpoint ({'meta', 'state_dict'}) of the default HRNet-W32 with random weights."""
    import torch

    torch.manual_seed(0)
    est = MMPoseHRNet(MMPoseConfig(checkpoint=None))
    est.load()
    path = tmp_path_factory.mktemp("ckpt") / "hrnet_random.pth"
    state = {f"module.{k}": v for k, v in est.net.state_dict().items()}  # as DataParallel training saves it
    torch.save({"meta": {"epoch": 0, "note": "random weights for tests"}, "state_dict": state}, path)
    return path


def test_real_call_path_shapes_layout(shared_data: Path, random_checkpoint: Path):
    est = MMPoseHRNet(MMPoseConfig(checkpoint=str(random_checkpoint), min_person_score=0.0, flip_test=False))
    with VideoReader(shared_data / "videos" / "mmpose_demo_5frames.mp4") as r:
        res = est.estimate(itertools.islice(r.frames(est.needs_frame), 2), r.fps, r.img_shape)
    assert res.layout == "coco17" and est.net.head.out_channels == 17
    assert res.keypoint.shape == (1, 2, 17, 2) and res.keypoint_score.shape == (1, 2, 17)
    assert res.img_shape == (540, 960) and res.timing["processed"] == 2
    assert np.isfinite(res.keypoint).all() and ((res.keypoint_score >= 0) & (res.keypoint_score <= 1)).all()
    # Predictions are decoded back into frame pixels (the whole frame is the box), not heatmap cells.
    found = res.keypoint[res.keypoint_score > 0]
    assert found[:, 0].max() > 64 and (found[:, 0] < 960 * 1.3).all()
    # The checkpoint's weights are the ones in the model (the 'module.' prefix was stripped).
    import torch

    sd = torch.load(random_checkpoint, weights_only=True)["state_dict"]
    k = next(iter(est.net.state_dict()))
    assert torch.equal(est.net.state_dict()[k], sd[f"module.{k}"])
    s = est.settings()
    assert s["checkpoint"].startswith("hrnet_random.pth:") and s["config"].startswith("td-hm_hrnet-w32")


def test_stride_and_no_person_threshold(shared_data: Path, random_checkpoint: Path):
    # A box whose mean keypoint score is below min_person_score holds no person (random weights never reach 0.99).
    est = MMPoseHRNet(MMPoseConfig(checkpoint=str(random_checkpoint), stride=4, flip_test=False,
                                   min_person_score=0.99))
    with VideoReader(shared_data / "videos" / "mmpose_demo_5frames.mp4") as r:
        res = est.estimate(r.frames(est.needs_frame), r.fps, r.img_shape)
    assert res.timing == {**res.timing, "frames": 5, "processed": 2}
    assert res.found_frames() == 0


def test_bad_checkpoints(tmp_path: Path):
    import torch

    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(BadInput, match="not a loadable tensor checkpoint"):
        MMPoseHRNet(MMPoseConfig(checkpoint=str(text))).load()
    other = tmp_path / "other.pth"
    torch.save({"state_dict": {"backbone.conv1.weight": torch.zeros(3)}}, other)
    with pytest.raises(BadInput, match="does not fit"):
        MMPoseHRNet(MMPoseConfig(checkpoint=str(other))).load()
    code = tmp_path / "code.pth"
    torch.save({"state_dict": {}, "hook": Path("x")}, code)  # an arbitrary object: refused, never executed
    with pytest.raises(BadInput, match="not a loadable tensor checkpoint"):
        MMPoseHRNet(MMPoseConfig(checkpoint=str(code))).load()
    with pytest.raises(BadInput, match="not found"):
        MMPoseHRNet(MMPoseConfig(checkpoint=str(tmp_path / "missing.pth"))).settings()
    with pytest.raises(BadInput, match="config not found"):
        MMPoseHRNet(MMPoseConfig(config="no_such_config.py"))
