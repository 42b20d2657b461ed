"""NTU RGB+D `.skeleton` reader on small files the tests write (the real dataset is not on this machine)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.contract.errors import BadInput
from pipeline.data.importers.ntu import (
    NTU60_CLASSES,
    NTU120_EXTRA_CLASSES,
    NTU120_TRAIN_SUBJECTS,
    import_ntu,
)
from tests.support.native_files import make_ntu_folder, ntu_body, ntu_text, write_ntu


@pytest.fixture
def ntu_folder(tmp_path: Path) -> Path:
    return make_ntu_folder(tmp_path / "nturgbd_skeletons")


def test_reads_coordinates_labels_classes_and_splits(ntu_folder: Path):
    ds = import_ntu(ntu_folder, progress=False)
    assert ds.layout.name == "ntu25" and ds.num_channels == 3
    assert len(ds.classes) == 60 and ds.classes[0] == "drink water" and ds.classes[2] == "brushing teeth"
    clips = ds.by_name()
    assert sorted(clips) == ["S001C001P001R001A001", "S001C002P001R001A003", "S002C001P003R002A003",
                             "S002C003P003R002A001"]
    assert clips["S001C001P001R001A001"].label == 0 and clips["S001C002P001R001A003"].label == 2
    one = clips["S001C001P001R001A001"]
    assert one.keypoint.shape == (1, 12, 25, 3) and one.keypoint.dtype == np.float32
    np.testing.assert_allclose(one.keypoint[0], ntu_body(12, 0.3, 0.0, 1), atol=1e-6)
    np.testing.assert_array_equal(one.scores(), 1.0)
    assert one.extra == {"setup": 1, "camera": 1, "subject": 1, "replication": 1}
    # X-Sub: subject 1 trains, subject 3 tests; X-View: cameras 2 and 3 train, camera 1 tests.
    assert ds.split["train"] == ds.split["xsub_train"] == ["S001C001P001R001A001", "S001C002P001R001A003"]
    assert ds.split["test"] == ds.split["xsub_val"] == ["S002C001P003R002A003", "S002C003P003R002A001"]
    assert ds.split["xview_train"] == ["S001C002P001R001A003", "S002C003P003R002A001"]
    assert "xset_train" not in ds.split  # NTU-120 only

    xview = import_ntu(ntu_folder, benchmark="xview", progress=False)
    assert xview.split["train"] == ["S001C002P001R001A003", "S002C003P003R002A001"]
    assert xview.split["test"] == ["S001C001P001R001A001", "S002C001P003R002A003"]


def test_frames_without_the_body_are_zero_with_score_zero(ntu_folder: Path):
    clip = import_ntu(ntu_folder, progress=False).by_name()["S002C003P003R002A001"]  # body in frames 2..9
    assert clip.total_frames == 12
    np.testing.assert_array_equal(clip.scores()[0, :2], 0)
    np.testing.assert_array_equal(clip.scores()[0, 2:10], 1)
    np.testing.assert_array_equal(clip.keypoint[0, [0, 1, 10, 11]], 0)
    np.testing.assert_allclose(clip.keypoint[0, 2:10], ntu_body(8, 0.2, 0.0, 5), atol=1e-6)


def test_keeps_the_two_most_active_bodies_and_glues_split_tracks(tmp_path: Path):
    t = 10
    actor = ntu_body(t, 0.4, 0.0, 1)
    partner = ntu_body(t, 0.1, 1.0, 2)
    chair = np.repeat(ntu_body(1, 0.0, -1.0, 3), t, axis=0)  # a still "body": Kinect's false positive
    write_ntu(tmp_path, "S001C001P001R001A050", [
        ("1", 0, chair),
        ("2", 0, partner),
        # The actor's track is lost after frame 5 and comes back under a new id.
        ("3", 0, actor[:6]), ("4", 6, actor[6:]),
    ], t)
    clip = import_ntu(tmp_path, progress=False).clips[0]
    assert clip.keypoint.shape == (2, t, 25, 3)
    np.testing.assert_allclose(clip.keypoint[0], actor, atol=1e-6)  # the most active person first, glued
    np.testing.assert_allclose(clip.keypoint[1], partner, atol=1e-6)
    np.testing.assert_array_equal(clip.scores(), 1.0)


def test_ntu120_classes_subjects_and_xset(tmp_path: Path):
    assert len(NTU120_TRAIN_SUBJECTS) == 53 and len(NTU60_CLASSES) == len(NTU120_EXTRA_CLASSES) == 60
    t = 5
    write_ntu(tmp_path, "S018C001P045R001A061", [("1", 0, ntu_body(t, 0.2, 0, 1))], t)  # 45: an NTU-120 trainer
    write_ntu(tmp_path, "S017C002P044R001A120", [("1", 0, ntu_body(t, 0.2, 0, 2))], t)
    ds = import_ntu(tmp_path, benchmark="xset", progress=False)
    assert len(ds.classes) == 120 and ds.classes[60] == "put on headphone"
    assert ds.by_name()["S017C002P044R001A120"].label == 119
    assert ds.split["xsub_train"] == ["S018C001P045R001A061"] and ds.split["xsub_val"] == ["S017C002P044R001A120"]
    assert ds.split["train"] == ds.split["xset_train"] == ["S018C001P045R001A061"]  # even setups train
    assert ds.split["test"] == ["S017C002P044R001A120"]


def test_xset_on_ntu60_is_refused(ntu_folder: Path):
    with pytest.raises(BadInput, match="NTU-120"):
        import_ntu(ntu_folder, benchmark="xset", progress=False)


def test_files_without_any_body_are_skipped_and_listed(ntu_folder: Path):
    (ntu_folder / "S001C001P002R001A005.skeleton").write_text("3\n0\n0\n0\n")
    ds = import_ntu(ntu_folder, progress=False)
    assert len(ds.clips) == 4 and ds.extra["skipped"] == ["S001C001P002R001A005"]


def test_only_empty_files_is_bad_input(tmp_path: Path):
    (tmp_path / "S001C001P002R001A005.skeleton").write_text("2\n0\n0\n")
    with pytest.raises(BadInput, match="holds a body"):
        import_ntu(tmp_path, progress=False)


def _lines(t: int = 3) -> list[str]:
    return ntu_text([[("7", pts)] for pts in ntu_body(t, 0.2, 0, 0)]).splitlines()


@pytest.mark.parametrize(("edit", "reason"), [
    (lambda ls: ls[:40], "line 41: file ends where a joint line was expected"),          # truncated mid-body
    (lambda ls: ls[:1], "line 2: file ends where the body count of frame 1 was expected"),
    (lambda ls: ls[:35] + [ls[35].rsplit(" ", 1)[0]] + ls[36:], "line 36: a joint line has 11 values"),
    (lambda ls: ls[:10] + [ls[10].replace("277.1", "abc")] + ls[11:],
     "line 11: a joint line holds a value that is not a number"),
    (lambda ls: ls[:3] + ["24"] + ls[4:], "line 4: 24 joints"),
    (lambda ls: ["three"] + ls[1:], "line 1: expected the frame count"),
    (lambda ls: ls[:2] + ["7 0 1"] + ls[3:], "line 3: a body info line has 3 values"),
    (lambda ls: ls[:10] + ["nan " + ls[10].split(" ", 1)[1]] + ls[11:], "lines 5..29: non-finite"),
])
def test_malformed_file_names_file_and_line(tmp_path: Path, edit, reason: str):
    path = tmp_path / "S001C001P001R001A001.skeleton"
    path.write_text("\n".join(edit(_lines())) + "\n")
    with pytest.raises(BadInput) as e:
        import_ntu(tmp_path, progress=False)
    assert str(e.value).startswith(str(path) + ": ") and reason in str(e.value)


def test_binary_garbage_is_bad_input(tmp_path: Path):
    path = tmp_path / "S001C001P001R001A001.skeleton"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    with pytest.raises(BadInput, match=str(path)):
        import_ntu(tmp_path, progress=False)


def test_bad_file_name_empty_folder_and_missing_folder(tmp_path: Path):
    with pytest.raises(BadInput, match="no .skeleton files"):
        import_ntu(tmp_path, progress=False)
    with pytest.raises(BadInput, match="not found"):
        import_ntu(tmp_path / "nope", progress=False)
    (tmp_path / "clip01.skeleton").write_text("\n".join(_lines()))
    with pytest.raises(BadInput, match="SsssCcccPpppRrrrAaaa"):
        import_ntu(tmp_path, progress=False)


def test_unknown_benchmark(ntu_folder: Path):
    with pytest.raises(BadInput, match="benchmark"):
        import_ntu(ntu_folder, benchmark="xcam", progress=False)


def test_single_file(ntu_folder: Path):
    ds = import_ntu(ntu_folder / "S002C001P003R002A003.skeleton", progress=False)
    assert [c.frame_dir for c in ds.clips] == ["S002C001P003R002A003"] and ds.split["test"] == ["S002C001P003R002A003"]
