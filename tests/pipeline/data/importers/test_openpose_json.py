"""`dataset import openpose-json`: OpenPose per-frame `*_keypoints.json` files (BODY_25 and COCO-18) as OpenPose
writes them: several people in no fixed order, a passer-by, frames without people, frames without a file,
joints with confidence 0; people followed with the project's tracker."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from models.contract.errors import BadInput
from models.contract.layouts import BODY25, OPENPOSE18, convert
from pipeline.cli import cli
from pipeline.data.importers.openpose_json import import_openpose_json
from pipeline.data.pyskl_io import load_dataset
from tests.support.cli_support import one_error_line, run_pipeline


def invoke(*args) -> CliRunner:
    result = CliRunner().invoke(cli, [str(a) for a in args], standalone_mode=False, catch_exceptions=True)
    if result.exception is not None:
        raise result.exception
    return result




def person(center_x: float, k: int, rng: np.random.Generator, conf: float = 0.8) -> np.ndarray:
    """A `[k, 3]` standing person around x = center_x (pixels), some joints not found (0, 0, 0)."""
    pts = np.stack([center_x + rng.uniform(-30, 30, k), rng.uniform(100, 400, k), rng.uniform(conf - 0.2, conf, k)], 1)
    pts[rng.random(k) < 0.1] = 0  # OpenPose writes a joint it did not find as 0, 0, 0
    return pts


def frame_json(people: list[np.ndarray]) -> str:
    return json.dumps({"version": 1.3, "people": [
        {"person_id": [-1], "pose_keypoints_2d": [round(float(x), 3) for x in p.reshape(-1)],
         "face_keypoints_2d": [], "hand_left_keypoints_2d": [], "hand_right_keypoints_2d": [],
         "pose_keypoints_3d": [], "face_keypoints_3d": [], "hand_left_keypoints_3d": [],
         "hand_right_keypoints_3d": []} for p in people]})


def write_video(root: Path, vid: str, k: int, t: int, seed: int, flat: bool = False) -> dict:
    """Two people at x=200 and x=500 listed in a random order per frame, a third for 2 frames, frame 3 with no
    people, frame 5 without a file. Returns the truth: per frame, the left person's pose."""
    rng = np.random.default_rng(seed)
    truth = {}
    for f in range(t):
        if f == 5:
            continue  # OpenPose crashed on this frame, or the file was lost
        left, right = person(200 + 2 * f, k, rng, 0.9), person(500 - 2 * f, k, rng, 0.7)
        people = [left, right] if rng.random() < 0.5 else [right, left]
        if f in (7, 8):
            people.append(person(900, k, rng, 0.5))  # a passer-by
        if f == 3:
            people = []
        truth[f] = left
        name = f"{vid}_{f:012d}_keypoints.json"
        path = root / name if flat else root / vid / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(frame_json(people))
    return truth


@pytest.fixture
def body25_folder(tmp_path: Path) -> tuple[Path, Path, dict]:
    root = tmp_path / "openpose"
    truths = {}
    for i, vid in enumerate(["jump_01", "jump_02", "wave_01", "wave_02", "wave_03"]):
        truths[vid] = write_video(root, vid, 25, 12, seed=i, flat=(i % 2 == 1))  # folders and flat files mixed
    write_video(root, "not_labelled", 25, 6, seed=9)
    labels = tmp_path / "labels.csv"
    labels.write_text("video,label,split\njump_01.mp4,jump,train\njump_02,jump,test\nwave_01,wave,train\n"
                      "wave_02,wave,train\nwave_03,wave,test\nmissing_video,wave,train\n")
    return root, labels, truths


def test_body25_import_tracks_people_and_keeps_scores(body25_folder, tmp_path: Path):
    root, labels, truths = body25_folder
    out = tmp_path / "op.pkl"
    res = invoke("dataset", "import", "openpose-json", root, "--labels", labels, "--out", out)
    assert "5 clips, 2 classes, layout body25" in res.stdout
    # one warning line each for the unlabelled folder and the labelled video without files
    assert "warning: " in res.stderr and "missing_video" in res.stderr and "not_labelled" in res.stderr
    ds = load_dataset(out)
    assert ds.layout == BODY25 and ds.classes == ["jump", "wave"] and ds.layout_from == "stored in the file"
    assert sorted(ds.split["test"]) == ["jump_02", "wave_03"]
    clip = ds.by_name()["wave_01"]
    assert clip.label == 1 and clip.keypoint.shape == (2, 12, 25, 2)  # passer-by dropped (M = 2)
    sc = clip.scores()
    assert (sc[:, 3] == 0).all() and (sc[:, 5] == 0).all()  # no people / no file: missing
    assert (clip.keypoint[:, 3] == 0).all() and (clip.keypoint[:, 5] == 0).all()
    # slot 0 is the most confident person (the left one), followed across the shuffled people lists
    truth = truths["wave_01"]
    for f, left in truth.items():
        if f == 3:
            continue
        found = left[:, 2] > 0
        np.testing.assert_allclose(clip.keypoint[0, f][found], left[found, :2], atol=1e-3)
        np.testing.assert_allclose(sc[0, f][found], left[found, 2], atol=1e-3)
        assert (sc[0, f][~found] == 0).all()
    assert (clip.keypoint[1, :, :, 0][sc[1] > 0] > 350).all()  # slot 1 is always the right person
    # converting to other layouts by joint name: mid_hip -> NTU spine_base, big toe -> BlazePose foot index
    kp, s = convert(clip.keypoint, clip.keypoint_score, BODY25, load_dataset(out, "ntu25").layout)
    np.testing.assert_array_equal(kp[..., 0, :], clip.keypoint[..., 8, :])
    # round trip through dataset export (pickle and npz)
    back = tmp_path / "back.pkl"
    invoke("dataset", "export", out, "--out", back)
    for a, b in zip(ds.clips, load_dataset(back).clips):
        np.testing.assert_array_equal(a.keypoint, b.keypoint)
        np.testing.assert_array_equal(a.scores(), b.scores())
    invoke("dataset", "export", out, "--out", tmp_path / "npz", "--layout", "coco17")
    f = np.load(tmp_path / "npz" / "wave_01.npz")
    assert f["keypoint"].shape == (2, 12, 17, 2) and str(f["layout"]) == "coco17"


def test_coco18_numeric_labels_no_split_and_max_persons(tmp_path: Path):
    root = tmp_path / "op18"
    for i in range(10):
        write_video(root, f"v{i}", 18, 8, seed=i)
    labels = tmp_path / "l.csv"
    labels.write_text("".join(f"v{i},{i % 2}\n" for i in range(10)))  # integer labels: 0-based class indices
    ds = import_openpose_json(root, labels, max_persons=3)
    assert ds.layout == OPENPOSE18 and ds.classes == ["0", "1"]
    assert ds.by_name()["v0"].keypoint.shape == (3, 8, 18, 2)  # the passer-by kept as the third
    assert ds.split["test"] == ["v8", "v9"] and len(ds.split["train"]) == 8  # every 5th clip of each class
    assert ds.warnings == []
    ds1 = import_openpose_json(root, labels, max_persons=1)
    assert ds1.by_name()["v0"].keypoint.shape[0] == 1
    # 1-based integer labels (as many label lists are): imported as given, with a warning about class 0
    labels.write_text("video,label\n" + "".join(f"v{i},{i % 2 + 1}\n" for i in range(10)))
    ds2 = import_openpose_json(root, labels)
    assert ds2.classes == ["0", "1", "2"] and ds2.by_name()["v1"].label == 2
    assert len(ds2.warnings) == 1 and "none is 0" in ds2.warnings[0]


@pytest.mark.parametrize("make, reason", [
    (lambda d: (d / "v" / "v_000000000000_keypoints.json").write_text("{\"people\": [{\"pose_keypoints_2d\": "
                                                                        "[1, 2, 0.5, 3, 4]}]}"),
     "pose_keypoints_2d has 5 values; expected 75 (BODY_25) or 54 (COCO-18)"),
    (lambda d: (d / "v" / "v_000000000000_keypoints.json").write_text("{\"people\": [{\"pose_"),
     "not valid JSON"),
    (lambda d: (d / "v" / "v_000000000000_keypoints.json").write_text("[1, 2]"),
     "not an OpenPose keypoints file"),
    (lambda d: (d / "v" / "v_000000000001_keypoints.json").write_text(frame_json([np.ones((18, 3))])),
     "mixes 25 keypoints"),
])
def test_malformed_files_are_one_exit_2_line(tmp_path: Path, make, reason: str):
    root = tmp_path / "op"
    (root / "v").mkdir(parents=True)
    (root / "v" / "v_000000000000_keypoints.json").write_text(frame_json([np.ones((25, 3))]))
    make(root)
    labels = tmp_path / "l.csv"
    labels.write_text("v,a\n")
    line = one_error_line(run_pipeline("dataset", "import", "openpose-json", root, "--labels", labels, "--out",
                                       tmp_path / "o.pkl"))
    assert line.startswith("Error: ") and reason in line and str(root) in line, line
    assert not (tmp_path / "o.pkl").exists()


def test_usage_errors(tmp_path: Path):
    root = tmp_path / "op"
    write_video(root, "v", 25, 3, seed=0)
    with pytest.raises(BadInput, match="needs --labels"):
        invoke("dataset", "import", "openpose-json", root, "--out", tmp_path / "o.pkl")
    with pytest.raises(BadInput, match="labels CSV not found"):
        invoke("dataset", "import", "openpose-json", root, "--labels", tmp_path / "nope.csv", "--out",
               tmp_path / "o.pkl")
    (root / "stray.json").write_text("{}")
    labels = tmp_path / "l.csv"
    labels.write_text("v,a\n")
    with pytest.raises(BadInput, match="must be named <video>_<frame>_keypoints.json"):
        import_openpose_json(root, labels)
    assert not (tmp_path / "o.pkl").exists()


def test_body25_layout_maps_to_the_others_by_name():
    from models.contract.layouts import BLAZEPOSE33, COCO17, NTU25, conversion_plan

    b = BODY25.index
    assert BODY25.num_joints == 25 and BODY25.joints[:8] == OPENPOSE18.joints[:8]
    perm = BODY25.flip_permutation()
    assert perm[b("left_big_toe")] == b("right_big_toe") and perm[b("mid_hip")] == b("mid_hip")
    to_blaze = dict(zip(BLAZEPOSE33.joints, conversion_plan(BODY25, BLAZEPOSE33)))
    assert to_blaze["left_foot_index"] == (b("left_big_toe"),) and to_blaze["right_heel"] == (b("right_heel"),)
    to_ntu = dict(zip(NTU25.joints, conversion_plan(BODY25, NTU25)))
    assert to_ntu["spine_base"] == (b("mid_hip"),) and to_ntu["neck"] == (b("neck"),)
    assert to_ntu["left_foot"] == (b("left_big_toe"),)
    # the other way: COCO-17 has no neck or mid-hip; both are midpoints
    to_b25 = dict(zip(BODY25.joints, conversion_plan(COCO17, BODY25)))
    assert to_b25["mid_hip"] == (COCO17.index("left_hip"), COCO17.index("right_hip")) and to_b25["left_heel"] == ()
