"""Fixtures: small native dataset folders (NTU `.skeleton`, Kinetics-skeleton json) written by the tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from native_files import kinetics_frame, kinetics_person, ntu_body, write_kinetics, write_ntu


@pytest.fixture
def ntu_folder(tmp_path: Path) -> Path:
    """Four NTU-60 clips: two subjects (P001 train / P003 test under X-Sub), cameras 1 and 2, actions 1 and 3."""
    folder = tmp_path / "nturgbd_skeletons"
    t = 12
    write_ntu(folder, "S001C001P001R001A001", [("72057594037931101", 0, ntu_body(t, 0.3, 0.0, 1))], t)
    write_ntu(folder, "S001C002P001R001A003", [("72057594037931102", 0, ntu_body(t, 0.3, 0.0, 2)),
                                               ("72057594037931103", 0, ntu_body(t, 0.1, 1.0, 3))], t)
    write_ntu(folder, "S002C001P003R002A003", [("72057594037931104", 0, ntu_body(t, 0.2, 0.0, 4))], t)
    write_ntu(folder, "S002C003P003R002A001", [("72057594037931105", 2, ntu_body(t - 4, 0.2, 0.0, 5))], t)
    return folder


@pytest.fixture
def kinetics_folder(tmp_path: Path) -> Path:
    """The ST-GCN release layout: kinetics_train/, kinetics_val/ and their label indexes."""
    root = tmp_path / "kinetics-skeleton"
    rng = np.random.default_rng(0)
    index: dict[str, dict] = {"train": {}, "val": {}}
    for part, vids in (("train", ["vid_a", "vid_b", "vid_c"]), ("val", ["vid_d", "vid_e"])):
        for k, vid in enumerate(vids):
            label_index, label = (0, "abseiling") if k % 2 == 0 else (2, "applauding")
            frames = [kinetics_frame(i + 1, [kinetics_person(rng, 0.8), kinetics_person(rng, 0.4)])
                      for i in range(10)]
            write_kinetics(root / f"kinetics_{part}" / f"{vid}.json", frames, label, label_index)
            index[part][vid] = {"has_skeleton": True, "label": label, "label_index": label_index}
    # A video the index lists without skeleton, as the release does for clips OpenPose found nobody in.
    write_kinetics(root / "kinetics_train" / "vid_empty.json", [], "abseiling", 0)
    index["train"]["vid_empty"] = {"has_skeleton": False, "label": "abseiling", "label_index": 0}
    for part, entries in index.items():
        (root / f"kinetics_{part}_label.json").write_text(json.dumps(entries))
    return root
