"""Pickles as PYSKL/MMAction2 write them (no `layout` key), with a custom 15-joint layout, 2D and 3D: what
`--layout` (read as, when nothing is stored and the joint count fits; else convert) and `--source-layout` do on
import, info, corrupt, export, train, eval and distill."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from models.contract.errors import BadInput
from pipeline.data.pyskl_io import load_dataset
from tests.support.cli_support import invoke, one_error_line, run_pipeline

# An MPII-like 15-joint body: a joint count no built-in layout has.
JOINTS = ["head", "neck", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
          "right_wrist", "pelvis", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"]
EDGES = [[0, 1], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7], [1, 8], [8, 9], [8, 10], [9, 11], [10, 12],
         [11, 13], [12, 14]]
SMALL = ["--epochs", "1", "--width", "0.125", "--depth", "2", "--length", "8", "--batch-size", "4", "--quiet",
         "--threads", "1"]


pytestmark = pytest.mark.usefixtures("restore_torch_threads")  # the commands set 1 thread here




def custom_layout(root: Path) -> Path:
    p = root / "mpii15.json"
    p.write_text(json.dumps({"name": "mpii15", "joints": JOINTS, "edges": EDGES, "center": 8}))
    return p


def pyskl_pickle(path: Path, v: int, dims: int, per_class: int = 4, classes: int = 2, seed: int = 0) -> Path:
    """A pickle the way PYSKL writes one: no `layout`, no `classes`, protocol 2; 2D as float16 with scores,
    img_shape and original_shape (HRNet releases); 3D as float32 without scores (the NTU 3D releases). Two
    persons, the second absent (zeros, score 0) in part of the clip; some joints with score 0."""
    rng = np.random.default_rng(seed)
    anns, train, test = [], [], []
    for k in range(classes):
        for i in range(per_class):
            t = 16 + i
            ts = np.arange(t)[:, None]
            base = rng.uniform(100, 300, size=(v, dims))
            kp = np.repeat(base[None, None], 2, 0).repeat(t, 1)
            kp[:, :, (np.arange(v) % classes) == k, 0] += 25 * np.sin(ts * (0.4 + 0.3 * k))[None]
            kp[1] += 40
            kp[1, t // 2:] = 0  # the second person leaves
            name = f"S001C001P00{k}R001A00{k + 1}_{i}"
            a = {"frame_dir": name, "label": k, "total_frames": t}
            if dims == 2:
                sc = rng.uniform(0.3, 1.0, size=(2, t, v))
                sc[1, t // 2:] = 0
                sc[0, ::5, 3] = 0  # a joint the estimator missed now and then
                a.update(keypoint=kp.astype(np.float16), keypoint_score=sc.astype(np.float16),
                         img_shape=(480, 640), original_shape=(480, 640))
            else:
                a.update(keypoint=(kp / 100).astype(np.float32))
            anns.append(a)
            (test if i == per_class - 1 else train).append(name)
    path.write_bytes(pickle.dumps({"split": {"xsub_train": train, "xsub_val": test, "train": train, "test": test},
                                   "annotations": anns}, protocol=2))
    return path


@pytest.mark.parametrize("dims", [2, 3])
def test_no_layout_custom_joint_count_through_every_command(tmp_path: Path, dims: int):
    lay = custom_layout(tmp_path)
    raw = pyskl_pickle(tmp_path / "raw.pkl", 15, dims)
    # Nothing declares what the file is: refused with what to do.
    with pytest.raises(BadInput, match="15 joints and no layout is stored; pass --layout"):
        invoke("dataset", "info", raw)
    # --layout reads it as the custom layout (it stores none and the joint count fits).
    out = invoke("dataset", "info", raw, "--layout", lay)
    assert f"layout mpii15 (15 joints, {dims}D)" in out and "layout given by --layout" in out
    # import stores it: later commands need nothing.
    mine = tmp_path / "mine.pkl"
    invoke("dataset", "import", "pyskl", raw, "--layout", lay, "--out", mine)
    stored = pickle.loads(mine.read_bytes())
    assert stored["layout"]["joints"] == JOINTS and stored["layout"]["center"] == 8
    info = json.loads(invoke("dataset", "info", mine, "--json"))
    assert info["layout"] == "mpii15" and info["layout_from"] == "stored in the file" and info["dims"] == dims
    a, b = load_dataset(raw, lay), load_dataset(mine)
    for ca, cb in zip(a.clips, b.clips):
        np.testing.assert_array_equal(ca.keypoint, cb.keypoint)
    # train on the raw file with --layout; eval both ways.
    run = tmp_path / "run"
    invoke("train", "--data", raw, "--layout", lay, "--out", run, *SMALL)
    ck = torch.load(run / "model.pt", weights_only=True)
    assert ck["layout"]["name"] == "mpii15" and ck["layout"]["joints"] == JOINTS
    r1 = json.loads(invoke("eval", "--model", run / "model.pt", "--data", raw, "--layout", lay, "--json"))
    r2 = json.loads(invoke("eval", "--model", run / "model.pt", "--data", mine, "--json"))
    assert r1 == r2 and r1["n"] == 2
    with pytest.raises(BadInput, match="15 joints and no layout is stored"):
        invoke("eval", "--model", run / "model.pt", "--data", raw)
    # calibrate (open-set rule) reads the raw file the same way
    invoke("calibrate", "--model", run / "model.pt", "--data", raw, "--layout", lay, "--out", run / "cal.pt")
    assert torch.load(run / "cal.pt", weights_only=True)["layout"]["name"] == "mpii15"
    with pytest.raises(BadInput, match="15 joints and no layout is stored"):
        invoke("calibrate", "--model", run / "model.pt", "--data", raw, "--out", run / "cal2.pt")
    # distill on the raw file: HQ read as --layout, LQ simulated with a seed in the spec.
    drun = tmp_path / "drun"
    invoke("distill", "--hq", raw, "--layout", lay, "--corrupt", "drop=0.3,seed=7", "--epochs", "1",
           "--teacher-epochs", "1", "--student-width", "0.1", "--teacher-width", "0.15", "--depth", "2", "--length",
           "8", "--batch-size", "4", "--quiet", "--out", drun)
    m = json.loads((drun / "metrics.json").read_text())
    assert m["layout"] == "mpii15" and m["lq_source"].endswith("seed=7")
    # LQ as a second raw pickle (same clips): both sides read as --layout.
    lq = tmp_path / "lq.pkl"
    invoke("dataset", "corrupt", raw, "--layout", lay, "--spec", "drop=0.4", "--seed", "1", "--out", lq)
    assert load_dataset(lq).layout.name == "mpii15"  # the LQ file stores it too
    raw_lq = tmp_path / "raw_lq.pkl"
    obj = pickle.loads(lq.read_bytes())
    del obj["layout"]
    raw_lq.write_bytes(pickle.dumps(obj, protocol=2))
    invoke("distill", "--hq", raw, "--lq", raw_lq, "--layout", lay, "--teacher", drun / "teacher.pt", "--epochs",
           "1", "--student-width", "0.1", "--depth", "2", "--length", "8", "--batch-size", "4", "--quiet", "--out",
           tmp_path / "drun2")
    # export round trip: pickle and npz.
    back = tmp_path / "back.pkl"
    invoke("dataset", "export", mine, "--out", back)
    for ca, cb in zip(load_dataset(mine).clips, load_dataset(back).clips):
        np.testing.assert_array_equal(ca.keypoint, cb.keypoint)
        np.testing.assert_array_equal(ca.scores(), cb.scores())
        assert (ca.frame_dir, ca.label) == (cb.frame_dir, cb.label)
    npz = tmp_path / "npz"
    invoke("dataset", "export", raw, "--layout", lay, "--out", npz)
    f = np.load(npz / "S001C001P001R001A002_0.npz")
    assert f["keypoint"].shape == (2, 16, 15, dims) and str(f["layout"]) == "mpii15" and int(f["label"]) == 1


def test_source_layout_converts_a_pickle_that_stores_none(tmp_path: Path):
    lay = custom_layout(tmp_path)
    raw = pyskl_pickle(tmp_path / "coco.pkl", 17, 2)  # HRNet COCO-17, stored without a layout
    # 17 joints and no layout: guessed coco17, said so.
    assert json.loads(invoke("dataset", "info", raw, "--json"))["layout_from"] == "guessed from 17 joints (none stored)"
    out = tmp_path / "mpii.pkl"
    invoke("dataset", "export", raw, "--source-layout", "coco17", "--layout", lay, "--out", out)
    src, dst = load_dataset(raw).clips[0], load_dataset(out).clips[0]
    assert load_dataset(out).layout.name == "mpii15"
    # by name: left_wrist is coco index 9, mpii index 6; neck = shoulder midpoint; pelvis unknown to coco -> score 0
    np.testing.assert_array_equal(dst.keypoint[:, :, 6], src.keypoint[:, :, 9])
    np.testing.assert_allclose(dst.keypoint[0, 0, 1], src.keypoint[0, 0, [5, 6]].astype(np.float32).mean(0),
                               rtol=1e-3)
    assert (dst.scores()[:, :, 8] == 0).all()
    # --source-layout wins over what the file stores, and must fit the joint count.
    with pytest.raises(BadInput, match="layout mpii15 has 15 joints but the clips have 17"):
        invoke("dataset", "info", raw, "--source-layout", lay)
    # a layout that shares no joint name cannot be converted to: refused, pointing at --source-layout
    five = tmp_path / "five.json"
    five.write_text(json.dumps({"name": "five", "joints": list("abcde"), "edges": [[0, 1]], "center": 0}))
    with pytest.raises(BadInput, match="shares no joint name with the clips' layout coco17"):
        invoke("dataset", "info", raw, "--layout", five)


def test_exit_2_lines(tmp_path: Path):
    raw = pyskl_pickle(tmp_path / "raw.pkl", 15, 2, per_class=2)
    line = one_error_line(run_pipeline("dataset", "import", "pyskl", raw, "--out", tmp_path / "o.pkl"))
    assert line.startswith(f"Error: {raw}: clips have 15 joints and no layout is stored"), line
    assert not (tmp_path / "o.pkl").exists()
    line = one_error_line(run_pipeline("train", "--data", raw, "--layout", "coco17", "--out", tmp_path / "r"))
    assert line == (f"Error: {raw}: clips have 15 joints and no layout is stored, and --layout coco17 has 17: say "
                    f"what the file is with --source-layout NAME|FILE.json naming a 15-joint layout"), line
    assert not (tmp_path / "r").exists()
