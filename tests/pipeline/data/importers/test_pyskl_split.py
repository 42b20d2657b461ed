"""PYSKL's split-keypoint annotations (its Kinetics-400 HRNet release): a table of contents without `keypoint`
(`frame_inds`, `box_score`, `img_shape`, `original_shape`, `valid`, `raw_file`) and kpfiles
`{frame_dir: {"keypoint": [N, V, 3]}}` beside it."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from models.contract.errors import BadInput
from pipeline.data.importers.pyskl_split import import_pyskl
from pipeline.data.pyskl_io import load_dataset
from tests.support.cli_support import one_error_line, run_pipeline


def make_release(root: Path) -> tuple[Path, Path, dict]:
    """k400_hrnet.pkl and kpfiles/part_{0,1}.pkl; clip 'abc' has 3 people in frame 1, nobody in frames 2-3."""
    rng = np.random.default_rng(0)
    kpdir = root / "kpfiles"
    kpdir.mkdir(parents=True)
    anns, parts, truth = [], {0: {}, 1: {}}, {}
    for n, (vid, label, inds) in enumerate([("abc", 5, [0, 0, 1, 1, 1, 4, 5]), ("def", 0, [0, 1, 2, 3]),
                                             ("ghi", 399, [2, 2])]):
        kp = np.concatenate([rng.uniform(0, 340, (len(inds), 17, 2)), rng.uniform(0.1, 1, (len(inds), 17, 1))], -1)
        kp[1, :, 2] = 0.95  # in frame 0 the second skeleton is the most confident
        parts[n % 2][vid] = {"keypoint": kp.astype(np.float16)}
        truth[vid] = (np.array(inds), kp.astype(np.float16))
        total = 6 if vid != "ghi" else 3
        anns.append({"frame_dir": vid, "label": label, "img_shape": (256, 340), "original_shape": (256, 340),
                     "total_frames": total, "frame_inds": np.array(inds, np.int16),
                     "box_score": rng.uniform(0.5, 1, len(inds)).astype(np.float16), "valid": {0.5: len(set(inds))},
                     "raw_file": f"kpfiles/part_{n % 2}.pkl"})
    for k, d in parts.items():
        (kpdir / f"part_{k}.pkl").write_bytes(pickle.dumps(d, protocol=2))
    toc = root / "k400_hrnet.pkl"
    toc.write_bytes(pickle.dumps({"split": {"train": ["abc", "def"], "val": ["ghi"]}, "annotations": anns},
                                 protocol=2))
    return toc, kpdir, truth


def test_reads_kpfiles_into_dense_clips(tmp_path: Path):
    toc, kpdir, truth = make_release(tmp_path)
    out = tmp_path / "k400.pkl"
    proc = run_pipeline("dataset", "import", "pyskl", toc, "--keypoints", kpdir, "--out", out)
    assert proc.returncode == 0, proc.stderr
    ds = load_dataset(out)
    assert ds.layout.name == "coco17" and ds.layout_from == "stored in the file"  # guessed, then stored
    assert ds.num_classes == 400 and ds.split["val"] == ["ghi"]
    abc = ds.by_name()["abc"]
    inds, kp = truth["abc"]
    assert abc.keypoint.shape == (2, 6, 17, 2) and abc.img_shape == (256, 340)
    # frame 0: the more confident skeleton (index 1) first; frame 1: the best two of three
    np.testing.assert_array_equal(abc.keypoint[0, 0], kp[1, :, :2].astype(np.float32))
    np.testing.assert_array_equal(abc.keypoint[1, 0], kp[0, :, :2].astype(np.float32))
    best = sorted([2, 3, 4], key=lambda i: -kp[i, :, 2].astype(np.float32).sum())[:2]
    np.testing.assert_array_equal(abc.keypoint[:, 1], kp[best, :, :2].astype(np.float32))
    np.testing.assert_array_equal(abc.keypoint_score[:, 1], kp[best, :, 2].astype(np.float32))
    assert (abc.scores()[:, 2:4] == 0).all() and (abc.scores()[1, 4:] == 0).all()  # nobody / one person
    raw = pickle.loads(out.read_bytes())["annotations"][0]
    assert "frame_inds" not in raw and "raw_file" not in raw and raw["valid"] == {0.5: 4}  # a normal pyskl file
    # round trip through dataset export: the same clips, as a normal pickle and as npz files
    proc = run_pipeline("dataset", "export", out, "--out", tmp_path / "again.pkl")
    assert proc.returncode == 0, proc.stderr
    for a, b in zip(ds.clips, load_dataset(tmp_path / "again.pkl").clips):
        np.testing.assert_array_equal(a.keypoint, b.keypoint)
        np.testing.assert_array_equal(a.scores(), b.scores())
        assert (a.frame_dir, a.label, a.img_shape) == (b.frame_dir, b.label, b.img_shape)
    assert run_pipeline("dataset", "export", out, "--out", tmp_path / "npz").returncode == 0
    assert int(np.load(tmp_path / "npz" / "ghi.npz")["label"]) == 399
    # above, raw_file 'kpfiles/part_0.pkl' was found by its name in --keypoints; here by the path under it
    ds2 = import_pyskl(toc, keypoints=tmp_path, max_persons=1)
    assert ds2.by_name()["abc"].keypoint.shape[0] == 1


def test_what_is_missing_is_said(tmp_path: Path):
    toc, kpdir, _ = make_release(tmp_path)
    line = one_error_line(run_pipeline("dataset", "import", "pyskl", toc, "--out", tmp_path / "o.pkl"))
    assert line.startswith(f"Error: {toc}: annotation 0 ('abc') holds no 'keypoint'"), line
    assert "kpfile 'kpfiles/part_0.pkl'" in line and "--keypoints DIR" in line and "3 such annotations" in line
    # every other command says the same
    line = one_error_line(run_pipeline("dataset", "info", toc))
    assert "PYSKL split-keypoint annotation" in line and "--keypoints" in line, line
    (kpdir / "part_1.pkl").unlink()
    with pytest.raises(BadInput, match="kpfile 'kpfiles/part_1.pkl' of clip 'def' not found"):
        import_pyskl(toc, keypoints=kpdir)
    (kpdir / "part_1.pkl").write_bytes(pickle.dumps({"zzz": {"keypoint": np.zeros((1, 17, 3))}}))
    with pytest.raises(BadInput, match="kpfile has no entry for clip 'def'"):
        import_pyskl(toc, keypoints=kpdir)
    (kpdir / "part_1.pkl").write_bytes(pickle.dumps({"def": {"keypoint": np.zeros((3, 17, 3))}}))
    with pytest.raises(BadInput, match="3 skeletons in the kpfile but frame_inds has shape"):
        import_pyskl(toc, keypoints=kpdir)
    (kpdir / "part_1.pkl").write_bytes(pickle.dumps({"def": {"keypoint": np.zeros((4, 17, 2))}}))
    with pytest.raises(BadInput, match=r"expected an array \[N, V, 3\]"):
        import_pyskl(toc, keypoints=kpdir)
    with pytest.raises(BadInput, match="--keypoints must be the folder"):
        import_pyskl(toc, keypoints=tmp_path / "nope")


def test_annotations_without_raw_file_are_found_in_any_kpfile(tmp_path: Path):
    toc, kpdir, truth = make_release(tmp_path)
    obj = pickle.loads(toc.read_bytes())
    for a in obj["annotations"]:
        del a["raw_file"]
    toc.write_bytes(pickle.dumps(obj, protocol=2))
    ds = import_pyskl(toc, keypoints=kpdir)
    assert sorted(ds.by_name()) == ["abc", "def", "ghi"]
    inds, kp = truth["def"]  # one skeleton per frame 0..3, frames 4-5 empty
    np.testing.assert_array_equal(ds.by_name()["def"].keypoint[0, :4], kp[:, :, :2])
    assert ds.by_name()["def"].keypoint.shape == (1, 6, 17, 2)
    (kpdir / "part_1.pkl").unlink()
    with pytest.raises(BadInput, match="clip 'def' \\(no raw_file\\) is in none of the kpfiles"):
        import_pyskl(toc, keypoints=kpdir)


def test_unscored_clips_warn(tmp_path: Path):
    kp = np.ones((1, 4, 17, 2), np.float16) * 50
    anns = [{"frame_dir": "a", "label": 0, "keypoint": kp, "keypoint_score": np.zeros((1, 4, 17), np.float16)},
            {"frame_dir": "b", "label": 1, "keypoint": kp, "keypoint_score": np.ones((1, 4, 17), np.float16)}]
    (tmp_path / "p.pkl").write_bytes(pickle.dumps({"split": {"train": ["a", "b"]}, "annotations": anns}))
    proc = run_pipeline("dataset", "import", "pyskl", tmp_path / "p.pkl", "--out", tmp_path / "o.pkl")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == (f"warning: {tmp_path / 'p.pkl'}: 1 clips have every score 0 but non-zero "
                                   f"coordinates (every joint reads as missing): a")
