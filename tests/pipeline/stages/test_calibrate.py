"""`calibrate_checkpoint`: the open-set threshold from simulated clips, or from real in-class clips of one split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from estimators import DEFAULT
from estimators.base import PoseResult
from models.checkpoint import load_checkpoint
from models.contract.errors import BadInput
from models.openset import OpenSetRule
from pipeline.data.pyskl_io import save_dataset
from pipeline.data.synthetic import make_clip, make_dataset
from pipeline.extract.cache import PoseCache, hash_file
from pipeline.infer.prediction import TorchPredictor, classify
from pipeline.stages.calibrate import RealClips, calibrate_checkpoint
from tests.support.run_files import tiny_checkpoint


def _cache_video(root: Path, cache: PoseCache, name: str, action: int, seed: int, quality: str = "low") -> Path:
    """A stand-in video file and a cache entry of its skeletons (a synthetic person) under its content hash."""
    video = root / name
    video.write_bytes(f"not a real video {name}".encode())
    clip = make_clip(action, np.random.default_rng(seed))
    settings = {"quality": quality}
    entry = cache.entry_path(hash_file(video), DEFAULT, settings)
    entry.parent.mkdir(parents=True, exist_ok=True)
    pose = PoseResult(clip.keypoint, clip.keypoint_score, "penn13", (480, 640), 30.0)
    cache.save(entry, pose, {"estimator": DEFAULT, "quality": quality, "settings": settings, "source": name})
    return video


@pytest.fixture
def setup(tmp_path: Path):
    ckpt = tiny_checkpoint(tmp_path / "tiny.pt")  # 4 classes: wave, squat, jump, spin (penn13)
    data = tmp_path / "syn.pkl"
    save_dataset(make_dataset(clips_per_class=4, test_fraction=0.5, seed=0, actions=[0, 3, 2, 4]), data)
    cache = PoseCache(tmp_path / "cache")
    rows = ["video,label,split"]
    for i, (label, split) in enumerate([("wave", "dev"), ("squat", "dev"), ("spin", "dev"), ("other", "dev"),
                                        ("jump", "val")]):
        _cache_video(tmp_path, cache, f"v{i}.mp4", [0, 3, 4, 5, 2][i], seed=i)
        rows.append(f"v{i}.mp4,{label},{split}")
    (tmp_path / "nocache.mp4").write_bytes(b"never extracted")
    rows.append("nocache.mp4,wave,dev")
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    return tmp_path, ckpt, data, labels


def _distance(ckpt: Path, root: Path, name: str) -> float:
    pred = TorchPredictor(ckpt)
    pose = PoseCache(root / "cache").load(PoseCache(root / "cache").entries_for(hash_file(root / name))[0]).result
    res = classify(pose.keypoint, pose.keypoint_score, pose.fps, pred)
    return float(np.median(res.distance))


def test_threshold_from_real_dev_in_class_clips_only(setup):
    root, ckpt, data, labels = setup
    out = root / "cal.pt"
    r = calibrate_checkpoint(ckpt, data, out, keep=0.9, real=RealClips(labels, root / "cache", "dev"))
    # The three in-class dev clips with skeletons; not the `other` one, not the val one, not the missing one.
    assert r["n_calib"] == 3 and r["calibrated_on"].startswith("real dev clips (low)")
    assert r["skipped"] == ["nocache.mp4 (no --quality low skeletons of blazepose in the cache)"]
    dists = [_distance(out, root, f"v{i}.mp4") for i in range(3)]
    assert r["threshold"] == pytest.approx(np.quantile(dists, 0.9), rel=1e-4)
    model, meta = load_checkpoint(out)
    rule = OpenSetRule.from_dict(meta["extra"]["open_set"], 4, model.feature_channels)
    assert rule.threshold == pytest.approx(r["threshold"], rel=1e-4) and rule.n_calib == 3
    # The simulated calibration of the same means sets another threshold.
    sim = calibrate_checkpoint(ckpt, data, root / "sim.pt", keep=0.9)
    assert sim["calibrated_on"] == "test split" and sim["threshold"] != r["threshold"]


def test_real_split_without_in_class_skeletons_is_refused(setup):
    root, ckpt, data, labels = setup
    with pytest.raises(BadInput, match="no in-class clip of split 'val' has high skeletons"):
        calibrate_checkpoint(ckpt, data, root / "x.pt", keep=0.9,
                             real=RealClips(labels, root / "cache", "val", quality="high"))

