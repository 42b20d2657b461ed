"""`pipeline calibrate --score energy`: the rule it writes (the energy kind, no class statistics) and its
threshold, the --keep quantile of clip scores computed here independently, on the simulated test split and on
real in-class clips; without --score the Mahalanobis rule as before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from models.checkpoint import load_checkpoint
from models.contract.skeleton import Clip
from models.net.transforms import make_input, sample_indices
from models.openset import ENERGY, RULE, OpenSetRule
from pipeline.cli import cli
from pipeline.data.pyskl_io import load_dataset, save_dataset
from pipeline.data.synthetic import make_dataset
from pipeline.extract.cache import PoseCache, hash_file
from tests.pipeline.stages.test_calibrate import _cache_video
from tests.support.run_files import tiny_checkpoint


def invoke(*args: str | Path) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args], standalone_mode=False, catch_exceptions=True)
    if result.exception is not None:
        raise result.exception
    return result.stdout


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("calibrate")
    ckpt = tiny_checkpoint(d / "tiny.pt")  # 4 classes: wave, squat, jump, spin (penn13)
    data = d / "syn.pkl"
    save_dataset(make_dataset(clips_per_class=6, test_fraction=0.5, seed=0, actions=[0, 3, 2, 4]), data)
    cache = PoseCache(d / "cache")
    rows = ["video,label,split"]
    for i, (label, action) in enumerate([("wave", 0), ("squat", 3), ("spin", 4), ("jump", 2), ("other", 5)]):
        _cache_video(d, cache, f"v{i}.mp4", action, seed=i)
        rows.append(f"v{i}.mp4,{label},dev")
    labels = d / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    return {"ckpt": ckpt, "data": data, "labels": labels, "cache": d / "cache", "dir": d}


def energies(ckpt: Path, clips: list[Clip]) -> np.ndarray:
    """-logsumexp of the logits of one whole-clip window per clip, as `classify` samples a clip of at most 10 s
    (written out here, independently of models/openset.py and pipeline/infer)."""
    model, meta = load_checkpoint(ckpt)
    icfg = meta["input_config"]
    x = np.stack([make_input(c, meta["layout"], icfg, sample_indices(c.total_frames, icfg.length, False)[0])
                  for c in clips])
    with torch.no_grad():
        logits = model.eval()(torch.from_numpy(x)).double()
    return (-torch.logsumexp(logits, dim=1)).numpy()


def stored_rule(path: Path) -> OpenSetRule:
    model, meta = load_checkpoint(path)
    return OpenSetRule.from_dict(meta["extra"]["open_set"], len(meta["classes"]), model.feature_channels)


def test_energy_on_the_simulated_test_split(files):
    out = files["dir"] / "sim_energy.pt"
    text = invoke("calibrate", "--model", files["ckpt"], "--data", files["data"], "--score", "energy",
                  "--keep", "0.8", "--out", out)
    rule = stored_rule(out)
    assert rule.kind == ENERGY and rule.means is None and rule.precision is None
    _, meta = load_checkpoint(out)
    assert set(meta["extra"]["open_set"]) == {"rule", "threshold", "keep", "n_fit", "n_calib", "data", "corrupt",
                                              "calibrated_on"}
    test = load_dataset(files["data"]).subset("test")
    want = np.quantile(energies(files["ckpt"], test), 0.8)
    assert rule.threshold == pytest.approx(want, abs=1e-5) and rule.n_calib == len(test) == 12
    assert text.startswith(f"wrote {out}: energy threshold {round(rule.threshold, 3)} keeps 80% of 12 clips of the "
                           "test split (")


def test_energy_on_real_in_class_clips(files):
    out = files["dir"] / "real_energy.pt"
    invoke("calibrate", "--model", files["ckpt"], "--data", files["data"], "--score", "energy", "--keep", "0.9",
           "--real", files["labels"], "--cache", files["cache"], "--real-split", "dev", "--out", out)
    rule = stored_rule(out)
    cache = PoseCache(files["cache"])
    clips = []
    for i in range(4):  # the in-class dev clips (2-3 s: one window each); not v4 (other)
        pose = cache.load(cache.entries_for(hash_file(files["dir"] / f"v{i}.mp4"))[0]).result
        clips.append(Clip(f"v{i}", 0, pose.keypoint, pose.keypoint_score))
    want = np.quantile(energies(files["ckpt"], clips), 0.9)
    assert rule.kind == ENERGY and rule.n_calib == 4
    assert rule.threshold == pytest.approx(want, abs=1e-5)
    _, meta = load_checkpoint(out)
    assert meta["extra"]["open_set"]["calibrated_on"].startswith("real dev clips (low)")


def test_without_score_the_mahalanobis_rule_as_before(files):
    out = files["dir"] / "maha.pt"
    text = invoke("calibrate", "--model", files["ckpt"], "--data", files["data"], "--out", out)
    rule = stored_rule(out)
    assert rule.kind == RULE and rule.means.shape == (4, rule.precision.shape[0])
    assert text.startswith(f"wrote {out}: mahalanobis-tied threshold ")
    with pytest.raises(Exception, match="'gauss' is not one of 'mahalanobis', 'energy'"):
        invoke("calibrate", "--model", files["ckpt"], "--data", files["data"], "--score", "gauss", "--out", out)
