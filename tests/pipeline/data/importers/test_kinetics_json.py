"""Kinetics-skeleton (ST-GCN json) reader on small files the tests write."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.contract.errors import BadInput
from pipeline.data.importers.kinetics_json import import_kinetics_json
from pipeline.data.pyskl_io import load_dataset
from tests.support.cli_support import run_pipeline
from tests.support.native_files import kinetics_frame, kinetics_person, make_kinetics_folder, write_kinetics


@pytest.fixture
def kinetics_folder(tmp_path: Path) -> Path:
    return make_kinetics_folder(tmp_path / "kinetics-skeleton")


def test_single_file_keeps_the_two_most_confident_persons_per_frame(tmp_path: Path):
    rng = np.random.default_rng(1)
    weak, strong, middle = kinetics_person(rng, 0.2), kinetics_person(rng, 0.9), kinetics_person(rng, 0.5)
    lone = kinetics_person(rng, 0.7)
    frames = [kinetics_frame(1, [weak, strong, middle]),
              kinetics_frame(2, [middle, weak]),
              # frame 3 has nobody (absent from the file); frame 4 one person
              kinetics_frame(4, [lone])]
    path = write_kinetics(tmp_path / "abc123.json", frames, "dancing", 3)
    ds = import_kinetics_json(path, progress=False)
    assert ds.layout.name == "openpose18" and ds.num_channels == 2
    assert ds.split == {"train": ["abc123"], "test": []}
    assert ds.classes == ["class_0", "class_1", "class_2", "dancing"]
    clip = ds.clips[0]
    assert clip.label == 3 and clip.keypoint.shape == (2, 4, 18, 2) and clip.keypoint_score.shape == (2, 4, 18)
    np.testing.assert_allclose(clip.keypoint[0, 0], strong[0], atol=1e-6)
    np.testing.assert_allclose(clip.keypoint[1, 0], middle[0], atol=1e-6)
    np.testing.assert_allclose(clip.keypoint_score[0, 0], strong[1], atol=1e-6)
    np.testing.assert_allclose(clip.keypoint[0, 1], middle[0], atol=1e-6)  # slot 0 = the frame's best
    np.testing.assert_allclose(clip.keypoint[1, 1], weak[0], atol=1e-6)
    np.testing.assert_array_equal(clip.keypoint_score[:, 2], 0)  # missing frame
    np.testing.assert_array_equal(clip.keypoint[:, 2], 0)
    np.testing.assert_allclose(clip.keypoint[0, 3], lone[0], atol=1e-6)
    np.testing.assert_array_equal(clip.keypoint_score[1, 3], 0)
    assert 0 <= clip.keypoint.min() and clip.keypoint.max() <= 1  # normalised coordinates kept as they are


def test_stgcn_release_folder(kinetics_folder: Path):
    ds = import_kinetics_json(kinetics_folder, progress=False)
    assert ds.split == {"train": ["vid_a", "vid_b", "vid_c"], "test": ["vid_d", "vid_e"]}
    assert ds.classes == ["abseiling", "class_1", "applauding"]
    assert [c.label for c in ds.clips] == [0, 2, 0, 0, 2]
    assert ds.extra["skipped"] == ["vid_empty"]
    assert all(c.keypoint.shape == (2, 10, 18, 2) for c in ds.clips)


def test_flat_folder_uses_label_indexes_for_split_and_labels(tmp_path: Path):
    rng = np.random.default_rng(2)
    frames = [kinetics_frame(i + 1, [kinetics_person(rng, 0.6)]) for i in range(3)]
    write_kinetics(tmp_path / "v1.json", frames, "archery", 1)
    write_kinetics(tmp_path / "v2.json", frames, None, None)  # label only in the index
    write_kinetics(tmp_path / "v3.json", frames, "archery", 1)  # in no index: train
    (tmp_path / "my_val_label.json").write_text(json.dumps(
        {"v2": {"has_skeleton": True, "label": "bowling", "label_index": 0}}))
    (tmp_path / "my_train_label.json").write_text(json.dumps(
        {"v1": {"has_skeleton": True, "label": "archery", "label_index": 1}}))
    ds = import_kinetics_json(tmp_path, progress=False)
    assert ds.split == {"train": ["v1", "v3"], "test": ["v2"]}
    assert ds.classes == ["bowling", "archery"] and ds.by_name()["v2"].label == 0
    assert ds.by_name()["v2"].keypoint.shape == (1, 3, 18, 2)


def test_frame_index_from_zero(tmp_path: Path):
    rng = np.random.default_rng(3)
    p = kinetics_person(rng, 0.5)
    path = write_kinetics(tmp_path / "z.json", [kinetics_frame(0, [p]), kinetics_frame(2, [p])])
    clip = import_kinetics_json(path, progress=False).clips[0]
    assert clip.total_frames == 3
    np.testing.assert_array_equal(clip.keypoint_score[0, 1], 0)


def _bad(tmp_path: Path, obj: object | str) -> Path:
    path = tmp_path / "bad.json"
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


_PERSON = {"pose": [0.5] * 36, "score": [0.9] * 18}


@pytest.mark.parametrize(("obj", "reason"), [
    ("{not json", "not valid JSON"),
    ({"name": "coco17", "joints": ["a"], "edges": [], "center": 0}, "not a Kinetics-skeleton file"),
    ([1, 2, 3], "not a Kinetics-skeleton file"),
    ({"data": [{"skeleton": [_PERSON]}], "label_index": 0}, "data[0] is not"),
    ({"data": [{"frame_index": 1, "skeleton": [{"pose": [0.5] * 34, "score": [0.9] * 17}]}], "label_index": 0},
     "pose has 34 values and score 17, expected 36 and 18"),
    ({"data": [{"frame_index": 1, "skeleton": [{"pose": ["a"] * 36, "score": [1] * 18}]}], "label_index": 0},
     "not lists of numbers"),
    ({"data": [{"frame_index": 1, "skeleton": [{"pose": [0.5] * 36}]}], "label_index": 0}, "lacks 'pose' or"),
    ({"data": [{"frame_index": -3, "skeleton": [_PERSON]}], "label_index": 0}, "frame_index -3 is out of range"),
    ({"data": [{"frame_index": 1.5, "skeleton": [_PERSON]}], "label_index": 0}, "not an integer"),
    ({"data": [{"frame_index": 1, "skeleton": [_PERSON]}]}, "no label_index"),
    ({"data": [{"frame_index": 1, "skeleton": [_PERSON]}], "label_index": -1}, "unlabelled"),
])
def test_not_kinetics_skeleton_is_bad_input_naming_the_file(tmp_path: Path, obj, reason: str):
    path = _bad(tmp_path, obj)
    with pytest.raises(BadInput) as e:
        import_kinetics_json(tmp_path, progress=False)
    assert str(e.value).startswith(str(path) + ": ") and reason in str(e.value)


def test_no_clips_missing_folder_and_conflicting_names(tmp_path: Path):
    with pytest.raises(BadInput, match="no Kinetics-skeleton .json clip files"):
        import_kinetics_json(tmp_path, progress=False)
    with pytest.raises(BadInput, match="not found"):
        import_kinetics_json(tmp_path / "nope", progress=False)
    rng = np.random.default_rng(4)
    frames = [kinetics_frame(1, [kinetics_person(rng, 0.5)])]
    write_kinetics(tmp_path / "a.json", frames, "x", 0)
    write_kinetics(tmp_path / "b.json", frames, "y", 0)
    with pytest.raises(BadInput, match="label_index 0 is 'y' here but 'x' elsewhere"):
        import_kinetics_json(tmp_path, progress=False)


def test_only_empty_clips_is_bad_input(tmp_path: Path):
    write_kinetics(tmp_path / "a.json", [{"frame_index": 1, "skeleton": []}], "x", 0)
    with pytest.raises(BadInput, match="holds a person"):
        import_kinetics_json(tmp_path, progress=False)


def test_classes_come_from_the_label_index_and_unscored_clips_warn(tmp_path: Path):
    """As the official validation index beside a handful of its clips: the index names all 400 classes."""
    root = tmp_path / "k"
    rng = np.random.default_rng(0)
    index = {f"other_{k:03d}": {"has_skeleton": True, "label": f"action {k}", "label_index": k} for k in range(400)}
    for vid, k in (("v1", 7), ("v2", 12), ("v3", 7)):
        frames = [kinetics_frame(i + 1, [kinetics_person(rng, 0.8)]) for i in range(6)]
        if vid == "v3":  # written without scores: every score 0, coordinates present
            for fr in frames:
                fr["skeleton"][0]["score"] = [0.0] * 18
        write_kinetics(root / "kinetics_val" / f"{vid}.json", frames, f"action {k}", k)
        index[vid] = {"has_skeleton": True, "label": f"action {k}", "label_index": k}
    (root / "kinetics_val_label.json").write_text(json.dumps(index))
    ds = import_kinetics_json(root, progress=False)
    assert ds.num_classes == 400 and ds.classes[0] == "action 0" and ds.classes[399] == "action 399"
    assert ds.by_name()["v2"].label == 12 and ds.split["test"] == ["v1", "v2", "v3"]
    assert len(ds.warnings) == 1 and "1 clips have every score 0" in ds.warnings[0] and "v3" in ds.warnings[0]
    out = tmp_path / "k.pkl"
    proc = run_pipeline("dataset", "import", "kinetics-json", root, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert [ln for ln in proc.stderr.splitlines() if ln.strip()] == [f"warning: {ds.warnings[0]}"]
    back = load_dataset(out)
    assert back.classes == ds.classes
    proc = run_pipeline("dataset", "export", out, "--out", tmp_path / "b.pkl")
    assert proc.returncode == 0, proc.stderr
    again = load_dataset(tmp_path / "b.pkl")
    assert again.classes == ds.classes and again.split == ds.split and again.layout == ds.layout
    for a, b in zip(ds.clips, again.clips):
        np.testing.assert_array_equal(a.keypoint, b.keypoint)
        np.testing.assert_array_equal(a.scores(), b.scores())
    # an index that names one class twice differently is malformed
    index["other_007"]["label"] = "something else"
    (root / "kinetics_val_label.json").write_text(json.dumps(index))
    with pytest.raises(BadInput, match="label_index 7 is"):
        import_kinetics_json(root, progress=False)
