"""MSR Action3D importer: file names to labels and the cross-subject split, 2-D vs 3-D files, bad input refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.contract.errors import BadInput
from pipeline.data.importers import IMPORTERS
from pipeline.data.importers.msr_action3d import MSR20, import_msr_action3d


def _write(path: Path, frames: int, value: float | None = None) -> np.ndarray:
    rng = np.random.default_rng(len(path.name))
    rows = rng.uniform(1, 300, (frames * 20, 4)).astype(np.float32) if value is None else \
        np.full((frames * 20, 4), value, np.float32)
    np.savetxt(path, rows, fmt="%.6f")
    return rows.reshape(frames, 20, 4)


def test_import_labels_split_and_coordinates(tmp_path: Path):
    a = _write(tmp_path / "a01_s01_e01_skeleton.txt", 5)
    _write(tmp_path / "a20_s02_e03_skeleton.txt", 3)
    _write(tmp_path / "a13_s09_e02_skeleton.txt", 4, value=0.0)  # no skeleton tracked
    (tmp_path / "readme.txt").write_text("not a sequence")
    ds = import_msr_action3d(tmp_path)
    assert [c.frame_dir for c in ds.clips] == ["a01_s01_e01", "a20_s02_e03"]
    assert [c.label for c in ds.clips] == [0, 19] and ds.classes[19] == "pick_up_and_throw"
    assert ds.split == {"train": ["a01_s01_e01"], "test": ["a20_s02_e03"]}
    assert ds.clips[0].keypoint.shape == (1, 5, 20, 2)
    assert np.allclose(ds.clips[0].keypoint[0], a[..., :2], atol=1e-5)
    assert ds.layout is MSR20 and any("a13_s09_e02" in w for w in ds.warnings)
    assert IMPORTERS["msr-action3d"].load is import_msr_action3d


def test_layout_is_a_body_with_sides():
    assert MSR20.joints[MSR20.flip_permutation()[MSR20.index("left_wrist")]] == "right_wrist"
    assert len(MSR20.edges) == 19  # a tree over 20 joints


def test_world_files(tmp_path: Path):
    _write(tmp_path / "a02_s03_e01_skeleton3D.txt", 2)
    ds = import_msr_action3d(tmp_path)
    assert ds.clips[0].keypoint.shape == (1, 2, 20, 3) and ds.clips[0].img_shape is None


@pytest.mark.parametrize("content", ["1 2 3\n", "1 2 3 4\n" * 19, "a b c d\n" * 20])
def test_bad_files_refused(tmp_path: Path, content: str):
    (tmp_path / "a01_s01_e01_skeleton.txt").write_text(content)
    with pytest.raises(BadInput):
        import_msr_action3d(tmp_path)


def test_mixed_kinds_and_empty_folder_refused(tmp_path: Path):
    with pytest.raises(BadInput):
        import_msr_action3d(tmp_path)
    _write(tmp_path / "a01_s01_e01_skeleton.txt", 2)
    _write(tmp_path / "a01_s01_e02_skeleton3D.txt", 2)
    with pytest.raises(BadInput):
        import_msr_action3d(tmp_path)
