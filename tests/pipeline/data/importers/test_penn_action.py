"""Penn Action importer: the real labels in ../shared/data (skipped when absent) and malformed .mat files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from models.contract.errors import BadInput
from pipeline.data.importers.penn_action import PENN_CLASSES, import_penn_action, read_penn_mat

_LOADED: dict[Path, object] = {}


@pytest.fixture
def penn(shared_data: Path):
    # Read once per session: several tests look at the same 2326 clips.
    folder = shared_data / "penn_action" / "labels"
    if folder not in _LOADED:
        _LOADED[folder] = import_penn_action(folder, progress=False)
    return _LOADED[folder]


def test_official_split_and_classes(penn):
    assert len(penn.clips) == 2326
    assert len(penn.split["train"]) == 1258 and len(penn.split["test"]) == 1068
    assert not set(penn.split["train"]) & set(penn.split["test"])
    assert penn.classes == PENN_CLASSES and penn.num_classes == 15
    assert set(np.bincount([c.label for c in penn.clips], minlength=15) > 0) == {True}
    assert penn.layout.name == "penn13" and penn.num_channels == 2


def test_clip_contents(penn):
    clip = penn.by_name()["0001"]
    assert clip.keypoint.shape == (1, 151, 13, 2) and clip.keypoint.dtype == np.float32
    assert clip.img_shape == (360, 480) and clip.total_frames == 151
    assert clip.extra["visibility"].shape == (1, 151, 13)
    np.testing.assert_array_equal(clip.scores(), 1.0)


def test_sides_are_anatomical(penn):
    """The file's columns are mirrored against its README; the importer stores the person's own left/right."""
    def clips_of(name):
        return [c.keypoint[0] for c in penn.clips if c.label == PENN_CLASSES.index(name)]

    def path_length(kp, joint):
        return np.linalg.norm(np.diff(kp[:, joint], axis=0), axis=-1).sum()

    lw, rw = penn.layout.index("left_wrist"), penn.layout.index("right_wrist")
    # Guitarists strum with the right hand.
    strum = [path_length(k, rw) > path_length(k, lw) for k in clips_of("strum_guitar")]
    assert np.mean(strum) > 0.9
    # Jumping jacks face the camera: the person's left shoulder is on the image's right.
    ls, rs = penn.layout.index("left_shoulder"), penn.layout.index("right_shoulder")
    facing = [np.median(k[:, ls, 0] - k[:, rs, 0]) > 0 for k in clips_of("jumping_jacks")]
    assert np.mean(facing) > 0.9


def _mat(path: Path, **fields) -> Path:
    t = 4
    base = {"x": np.ones((t, 13)), "y": np.ones((t, 13)), "visibility": np.ones((t, 13)), "action": "squat",
            "train": np.array([[1]]), "dimensions": np.array([[360, 480, t]])}
    base.update(fields)
    scipy.io.savemat(path, {k: v for k, v in base.items() if v is not None})
    return path


def test_mat_file_reader_reorders_columns(tmp_path: Path):
    x = np.tile(np.arange(13, dtype=float), (4, 1))
    clip, train = read_penn_mat(_mat(tmp_path / "0001.mat", x=x, train=np.array([[-1]])))
    assert not train and clip.label == PENN_CLASSES.index("squat") and clip.frame_dir == "0001"
    np.testing.assert_array_equal(clip.keypoint[0, 0, :, 0], [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11])


@pytest.mark.parametrize(("fields", "reason"), [
    ({"x": None, "visibility": None}, "lacks x, visibility"),
    ({"train": None}, "lacks train"),
    ({"x": np.ones((4, 12))}, "T x 13 arrays"),
    ({"y": np.ones((3, 13))}, "T x 13 arrays"),
    ({"action": "moonwalk"}, "unknown action 'moonwalk'"),
])
def test_mat_without_expected_fields_is_bad_input(tmp_path: Path, fields: dict, reason: str):
    path = _mat(tmp_path / "0007.mat", **fields)
    with pytest.raises(BadInput) as e:
        import_penn_action(tmp_path, progress=False)
    assert str(e.value).startswith(str(path) + ": ") and reason in str(e.value)


def test_not_a_mat_file_empty_folder_and_missing_folder(tmp_path: Path):
    with pytest.raises(BadInput, match="no .mat files"):
        import_penn_action(tmp_path, progress=False)
    with pytest.raises(BadInput, match="folder not found"):
        import_penn_action(tmp_path / "absent", progress=False)
    (tmp_path / "0001.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    with pytest.raises(BadInput, match="not a readable .mat file"):
        import_penn_action(tmp_path, progress=False)
