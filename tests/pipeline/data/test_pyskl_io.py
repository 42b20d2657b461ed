"""pyskl / mmaction2 annotation pickle: lossless round trip and a restricted unpickler that runs nothing."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from models.contract.errors import BadInput
from models.contract.layouts import Layout
from models.contract.skeleton import Clip, SkeletonDataset
from pipeline.data.pyskl_io import load_dataset, safe_load, save_dataset

CUSTOM = Layout("stick5", ("head", "neck", "pelvis", "left_foot", "right_foot"),
                ((0, 1), (1, 2), (2, 3), (2, 4)), center=1)


def _assert_same(a: SkeletonDataset, b: SkeletonDataset) -> None:
    assert a.split == b.split and a.classes == b.classes and a.layout == b.layout
    assert a.extra == b.extra
    assert [c.frame_dir for c in a.clips] == [c.frame_dir for c in b.clips]
    for x, y in zip(a.clips, b.clips):
        assert x.label == y.label and x.img_shape == y.img_shape and x.fps == y.fps
        assert x.keypoint.dtype == y.keypoint.dtype
        np.testing.assert_array_equal(x.keypoint, y.keypoint)
        if x.keypoint_score is None:
            assert y.keypoint_score is None
        else:
            np.testing.assert_array_equal(x.keypoint_score, y.keypoint_score)
        assert x.extra.keys() == y.extra.keys()
        for k in x.extra:
            np.testing.assert_array_equal(x.extra[k], y.extra[k])


def test_round_trip_is_lossless(tiny_dataset: SkeletonDataset, tmp_path: Path):
    tiny_dataset.clips[0].extra["visibility"] = np.ones(tiny_dataset.clips[0].keypoint.shape[:3], np.uint8)
    tiny_dataset.clips[1].fps = 25.0
    tiny_dataset.extra["note"] = "made by a test"
    out = tmp_path / "ds.pkl"
    save_dataset(tiny_dataset, out)
    back = load_dataset(out)
    _assert_same(tiny_dataset, back)
    # and a second trip through the file changes nothing either
    save_dataset(back, tmp_path / "again.pkl")
    _assert_same(tiny_dataset, load_dataset(tmp_path / "again.pkl"))


def test_round_trip_custom_layout_3d_two_persons(tmp_path: Path):
    rng = np.random.default_rng(0)
    clips = [Clip(f"clip{i}", i % 2, rng.normal(size=(2, 7 + i, 5, 3)).astype(np.float32),
                  rng.uniform(size=(2, 7 + i, 5)).astype(np.float32) if i else None) for i in range(3)]
    ds = SkeletonDataset(clips, {"train": ["clip0", "clip1"], "test": ["clip2"]}, ["a", "b"], CUSTOM)
    save_dataset(ds, tmp_path / "c.pkl")
    raw = safe_load(tmp_path / "c.pkl")
    assert raw["layout"] == CUSTOM.to_dict()  # a custom layout travels inside the file
    assert raw["annotations"][1]["total_frames"] == 8
    back = load_dataset(tmp_path / "c.pkl")
    _assert_same(ds, back)


def _write(path: Path, obj: object) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=4))
    return path


def test_float16_mmaction_style_file(tmp_path: Path):
    # As pyskl ships its 2D annotations: float16 keypoints, no classes, no layout, extra keys.
    rng = np.random.default_rng(1)
    anns = [{"frame_dir": f"v{i}", "label": np.int64(i), "total_frames": 6, "img_shape": (1080, 1920),
             "original_shape": (1080, 1920), "keypoint": rng.uniform(0, 1000, (1, 6, 17, 2)).astype(np.float16),
             "keypoint_score": rng.uniform(size=(1, 6, 17)).astype(np.float16)} for i in range(3)]
    path = _write(tmp_path / "f16.pkl", {"split": {"xsub_train": ["v0", "v1"], "xsub_val": ["v2"]},
                                        "annotations": anns})
    ds = load_dataset(path)
    assert ds.layout.name == "coco17" and ds.classes == ["0", "1", "2"]
    assert ds.clips[0].keypoint.dtype == np.float16
    np.testing.assert_array_equal(ds.clips[2].keypoint, anns[2]["keypoint"])
    assert ds.clips[0].img_shape == (1080, 1920) and ds.clips[0].extra["original_shape"] == (1080, 1920)
    assert ds.split == {"xsub_train": ["v0", "v1"], "xsub_val": ["v2"]}


def test_bare_annotation_list_and_layout_argument(tmp_path: Path):
    anns = [{"frame_dir": "a", "label": 0, "keypoint": np.zeros((1, 3, 5, 2), np.float32)}]
    path = _write(tmp_path / "list.pkl", anns)
    with pytest.raises(BadInput, match="5 joints and no layout is stored; pass --layout"):
        load_dataset(path)
    ds = load_dataset(path, layout=CUSTOM)
    assert ds.layout == CUSTOM and ds.split == {}


def test_non_finite_keypoints_are_masked(tmp_path: Path):
    kp = np.ones((1, 4, 13, 2), np.float32)
    kp[0, 1, 3] = np.nan
    kp[0, 2, 5, 0] = np.inf
    path = _write(tmp_path / "nan.pkl", {"split": {}, "annotations": [{"frame_dir": "a", "label": 0,
                                                                       "keypoint": kp}]})
    clip = load_dataset(path).clips[0]
    assert np.isfinite(clip.keypoint).all()
    assert clip.keypoint_score[0, 1, 3] == 0 and clip.keypoint_score[0, 2, 5] == 0
    assert clip.keypoint_score.sum() == 4 * 13 - 2


class _RunsCode:
    """Unpickling this calls os.system: the classic pickle payload."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _Evaluates:
    def __reduce__(self):
        return eval, ("__import__('os').getcwd()",)


def test_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path: Path):
    marker = tmp_path / "pwned"
    payload = _RunsCode(f"touch {marker}")
    # Prove the payload is live: an unrestricted load would create the marker.
    assert not marker.exists()
    hidden = {"split": {}, "annotations": [{"frame_dir": "a", "label": 0, "keypoint": payload}]}
    for n, obj in enumerate([payload, hidden]):
        path = _write(tmp_path / f"evil{n}.pkl", obj)
        with pytest.raises(BadInput) as e:
            load_dataset(path)
        msg = str(e.value)
        assert msg.startswith(str(path)) and "refused to load" in msg and "nothing was executed" in msg
        assert "system" in msg
        assert not marker.exists()
    path = _write(tmp_path / "eval.pkl", _Evaluates())
    with pytest.raises(BadInput, match=r"builtins\.eval"):
        safe_load(path)


def test_the_payload_would_run_without_the_guard(tmp_path: Path):
    # The control experiment for the test above, in a child process so nothing leaks into this one.
    import subprocess
    import sys

    marker = tmp_path / "control"
    path = _write(tmp_path / "evil.pkl", _RunsCode(f"touch {marker}"))
    subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.loads(open(sys.argv[1], 'rb').read())",
                    str(path)], check=True)
    assert marker.exists()


@pytest.mark.parametrize(("make", "reason"), [
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_bytes(pickle.dumps({"annotations": [1, 2, 3] * 100})[:40]), "not a readable pickle"),
    (lambda p: p.write_bytes(b"this is not a pickle at all"), "not a readable pickle"),
    (lambda p: p.mkdir(), "is a directory"),
    (lambda p: None, "file not found"),
    (lambda p: _write(p, {"split": {}, "annotations": [{"frame_dir": "a", "label": 0,
                                                         "keypoint": [[[[0.0, 0.0]]]]}]}),
     "keypoint is list, expected a numpy array"),
    (lambda p: _write(p, {"split": {}, "annotations": [{"frame_dir": "a", "label": 0,
                                                         "keypoint": np.array([["x"]])}]}), "expected 4 dimensions"),
    (lambda p: _write(p, {"split": {}, "annotations": [{"frame_dir": "a", "label": 0,
                                                         "keypoint": np.zeros((1, 2, 13, 2), "U1")}]}),
     "expected numbers"),
    (lambda p: _write(p, {"split": {}, "annotations": [{"frame_dir": "a", "label": -1,
                                                         "keypoint": np.zeros((1, 2, 13, 2))}]}),
     "label must be a non-negative integer"),
    (lambda p: _write(p, {"split": {}, "annotations": [{"frame_dir": "a", "label": 0,
                                                         "keypoint": np.zeros((1, 2, 13, 2)),
                                                         "keypoint_score": np.zeros((1, 2, 12))}]}),
     "keypoint_score shape"),
    (lambda p: _write(p, {"split": {}, "annotations": [{"frame_dir": "a", "label": 0}]}), "lacks 'keypoint'"),
    (lambda p: _write(p, {"split": {}, "annotations": []}), "'annotations' is empty"),
    (lambda p: _write(p, [1, 2]), "annotation 0 is int"),
    (lambda p: _write(p, "hello"), "not a pyskl annotation pickle"),
    (lambda p: _write(p, {"annotations": [{"frame_dir": "a", "label": 3, "keypoint": np.zeros((1, 2, 13, 2))}],
                          "classes": ["x"]}), "label 3 but only 1 classes"),
    (lambda p: _write(p, {"annotations": [{"frame_dir": "a", "label": 0, "keypoint": np.zeros((1, 2, 13, 2))},
                                          {"frame_dir": "a", "label": 0, "keypoint": np.zeros((1, 2, 13, 2))}]}),
     "duplicate frame_dir"),
    (lambda p: _write(p, {"annotations": [{"frame_dir": "a", "label": 0, "keypoint": np.zeros((1, 2, 13, 2))}],
                          "layout": "coco17"}), "layout coco17 has 17 joints but the clips have 13"),
])
def test_bad_pickles_are_bad_input(tmp_path: Path, make, reason: str):
    path = tmp_path / "bad.pkl"
    make(path)
    with pytest.raises(BadInput) as e:
        load_dataset(path)
    assert str(e.value).startswith(str(path) + ": ") and reason in str(e.value)


def test_save_is_atomic(tiny_dataset: SkeletonDataset, tmp_path: Path):
    out = tmp_path / "ds.pkl"
    out.write_bytes(b"old")
    tiny_dataset.clips[0].extra["bad"] = lambda: None  # unpicklable: the write fails half way
    with pytest.raises(Exception):  # noqa: B017 - pickle's own error type is what surfaces
        save_dataset(tiny_dataset, out)
    assert out.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["ds.pkl"]
