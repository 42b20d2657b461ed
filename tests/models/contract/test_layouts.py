"""Built-in and custom skeleton layouts, and conversion between them by joint name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.contract.errors import BadInput
from models.contract.layouts import BUILTIN, Layout, conversion_plan, convert, coverage, get_layout
from models.net.graph import hop_distance


@pytest.mark.parametrize("name", ["coco17", "blazepose33", "penn13", "ntu25", "openpose18"])
def test_builtin_layout_is_consistent(name: str):
    lay = get_layout(name)
    assert lay is BUILTIN[name] and lay.name == name
    assert lay.num_joints == int(name[-2:])
    assert np.isfinite(hop_distance(lay, max_hop=lay.num_joints)).all(), "graph must be connected"
    assert len({tuple(sorted(e)) for e in lay.edges}) == len(lay.edges), "no duplicate bones"
    perm = lay.flip_permutation()
    np.testing.assert_array_equal(perm[perm], np.arange(lay.num_joints))  # an involution
    assert perm[lay.center] == lay.center
    sided = 0
    for i, joint in enumerate(lay.joints):
        mirrored = lay.joints[perm[i]]
        if "left" in joint.split("_") or "right" in joint.split("_"):
            sided += 1
            swapped = "_".join({"left": "right", "right": "left"}.get(p, p) for p in joint.split("_"))
            assert mirrored == swapped
        else:
            assert mirrored == joint
    assert sided >= 12  # shoulders, elbows, wrists, hips, knees, ankles at least
    # mirroring the bone list gives the same bones
    bones = {frozenset(e) for e in lay.edges}
    assert {frozenset((int(perm[i]), int(perm[j]))) for i, j in lay.edges} == bones


def test_custom_layout_from_json_file(tmp_path: Path):
    spec = {"name": "stick4", "joints": ["head", "neck", "left_hand", "right_hand"],
            "edges": [[0, 1], [1, 2], [1, 3]], "center": 1}
    path = tmp_path / "stick4.json"
    path.write_text(json.dumps(spec))
    lay = get_layout(str(path))
    assert lay == get_layout(path) == get_layout(spec)
    assert lay.joints == ("head", "neck", "left_hand", "right_hand") and lay.edges == ((0, 1), (1, 2), (1, 3))
    assert lay.center == 1 and lay.to_dict() == spec
    np.testing.assert_array_equal(lay.flip_permutation(), [0, 1, 3, 2])


@pytest.mark.parametrize(("content", "reason"), [
    ({"name": "x", "joints": ["a", "b"], "edges": [[0, 2]], "center": 0}, "edge (0, 2) out of range 0..1"),
    ({"name": "x", "joints": ["a", "b"], "edges": [[0, 1]]}, "lacks center"),
    ({"name": "x", "joints": ["a", "b"], "edges": [[0, 1]], "center": 5}, "centre 5 out of range"),
    ({"name": "x", "joints": ["a", "b"], "edges": [[0, 1]], "center": "a"}, "'center' must be a joint index"),
    ({"name": "x", "joints": ["a", "a"], "edges": [], "center": 0}, "duplicate joint names"),
    ({"name": "x", "joints": ["a", "b"], "edges": [[1, 1]], "center": 0}, "self-loop"),
    ({"name": "x", "joints": ["a", "b"], "edges": [[0]], "center": 0}, "[i, j] integer pairs"),
    ({"name": "x", "joints": [], "edges": [], "center": 0}, "non-empty list of names"),
    ([1, 2], "must be an object"),
    ("{oops", "not valid JSON"),
])
def test_malformed_layout_json_is_bad_input(tmp_path: Path, content, reason: str):
    path = tmp_path / "layout.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(BadInput) as e:
        get_layout(str(path))
    assert str(e.value).startswith(str(path)) and reason in str(e.value)


def test_unknown_layout_name_and_missing_file(tmp_path: Path):
    with pytest.raises(BadInput, match="^coco18: unknown layout \\(built-in: coco17, "):
        get_layout("coco18")
    with pytest.raises(BadInput, match="layout file not found"):
        get_layout(str(tmp_path / "absent.json"))


def test_blazepose33_to_penn13_by_name():
    src, dst = get_layout("blazepose33"), get_layout("penn13")
    rng = np.random.default_rng(0)
    kp = rng.normal(size=(2, 5, 33, 2)).astype(np.float32)
    sc = rng.uniform(size=(2, 5, 33)).astype(np.float32)
    out, out_sc = convert(kp, sc, src, dst)
    assert out.shape == (2, 5, 13, 2) and out_sc.shape == (2, 5, 13)
    np.testing.assert_array_equal(out[..., dst.index("head"), :], kp[..., src.index("nose"), :])
    for joint in dst.joints[1:]:
        np.testing.assert_array_equal(out[..., dst.index(joint), :], kp[..., src.index(joint), :])
        np.testing.assert_array_equal(out_sc[..., dst.index(joint)], sc[..., src.index(joint)])
    assert coverage(src, dst) == 1.0


def test_coco17_to_openpose18_neck_is_the_shoulder_midpoint():
    src, dst = get_layout("coco17"), get_layout("openpose18")
    rng = np.random.default_rng(1)
    kp = rng.normal(size=(1, 4, 17, 3)).astype(np.float32)
    sc = rng.uniform(size=(1, 4, 17)).astype(np.float32)
    out, out_sc = convert(kp, sc, src, dst)
    ls, rs = src.index("left_shoulder"), src.index("right_shoulder")
    np.testing.assert_allclose(out[..., dst.index("neck"), :], (kp[..., ls, :] + kp[..., rs, :]) / 2, atol=1e-6)
    np.testing.assert_array_equal(out_sc[..., dst.index("neck")], np.minimum(sc[..., ls], sc[..., rs]))
    for joint in ("nose", "left_eye", "right_ear", "left_wrist", "right_ankle"):
        np.testing.assert_array_equal(out[..., dst.index(joint), :], kp[..., src.index(joint), :])
    assert coverage(src, dst) == 1.0


def test_joints_the_source_lacks_are_zero_with_score_zero():
    src, dst = get_layout("penn13"), get_layout("coco17")
    kp = np.ones((1, 2, 13, 2), np.float32)
    out, out_sc = convert(kp, None, src, dst)
    for joint in ("left_eye", "right_eye", "left_ear", "right_ear"):
        assert conversion_plan(src, dst)[dst.index(joint)] == ()
        np.testing.assert_array_equal(out[..., dst.index(joint), :], 0)
        np.testing.assert_array_equal(out_sc[..., dst.index(joint)], 0)
    np.testing.assert_array_equal(out_sc[..., dst.index("nose")], 1)  # from penn's head
    assert coverage(src, dst) == 13 / 17


def test_convert_checks_the_joint_count():
    with pytest.raises(BadInput, match="keypoints have 17 joints but layout penn13 has 13"):
        convert(np.zeros((1, 1, 17, 2)), None, get_layout("penn13"), get_layout("coco17"))


def test_layout_rejects_bad_construction():
    with pytest.raises(ValueError):
        Layout("x", ("a",), ((0, 1),), 0)
