"""Property-based tests (hypothesis) of every reader and of the LQ corruption.

Readers: the pyskl pickle, Penn Action `.mat`, NTU `.skeleton`, Kinetics-skeleton json and layout JSON. For each,
random and malformed inputs (arbitrary structures, wrong types and shapes, random bytes, truncations and byte
flips of valid files) must either load or raise `BadInput`; any other exception is a crash that the CLI would
show as a traceback with exit code 1. Valid inputs must round-trip exactly.
`pipeline.data.corrupt.corrupt_dataset` must keep every clip's shape, name and label and never output NaN or inf,
for random specs and random clips, including clips that hold NaN/inf coordinates or scores.
`models.net.transforms.make_input` (the model's input transform) must turn any clip, NaN/inf included, into a
finite tensor in which every missing joint is zero.

Examples per property are kept modest (see SETTINGS) so the file runs in well under a minute;
`RELIABILITY_EXAMPLES=500 pytest tests/test_properties.py` explores fresh random examples instead.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import scipy.io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from models.contract.errors import BadInput
from models.contract.layouts import BUILTIN, Layout, get_layout
from models.contract.skeleton import Clip, SkeletonDataset
from pipeline.data.corrupt import CorruptSpec, corrupt_dataset
from pipeline.data.importers.kinetics_json import import_kinetics_json, parse_kinetics_clip
from pipeline.data.importers.ntu import read_ntu_clip, read_skeleton_file
from pipeline.data.importers.penn_action import FILE_TO_PENN13, PENN_CLASSES, read_penn_mat
from pipeline.data.pyskl_io import load_dataset, save_dataset, to_pyskl
from tests.support.native_files import ntu_text

# CI runs a fixed (derandomized) set of examples; RELIABILITY_EXAMPLES=N explores N fresh random ones per property.
_EXPLORE = int(os.environ.get("RELIABILITY_EXAMPLES", "0"))
SETTINGS = settings(max_examples=_EXPLORE or 60, deadline=None, derandomize=not _EXPLORE,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])
FEW = settings(SETTINGS, max_examples=_EXPLORE or 25)

# ------------------------------------------------------------------------------------------------ strategies

FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=32)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70), FLOATS, st.text(max_size=6),
                    st.binary(max_size=6))
DTYPES = st.sampled_from(["float16", "float32", "float64", "int8", "int64", "uint8", "bool", "complex64", "U2",
                          "S2"])
ARRAYS = DTYPES.flatmap(lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=5, min_side=0,
                                                                   max_side=3)))


def anything(depth: int = 2) -> st.SearchStrategy:
    """Arbitrary picklable plain data: scalars, numpy arrays, and lists/dicts/tuples of them."""
    leaf = st.one_of(SCALARS, ARRAYS)
    return st.recursive(leaf, lambda inner: st.one_of(st.lists(inner, max_size=3), st.tuples(inner, inner),
                                                      st.dictionaries(st.one_of(st.text(max_size=5), st.integers()),
                                                                      inner, max_size=3)),
                        max_leaves=6)


@st.composite
def keypoints(draw, v: int | None = None, c: int | None = None, finite: bool = True,
              max_m: int = 2, max_t: int = 6) -> np.ndarray:
    m = draw(st.integers(1, max_m))
    t = draw(st.integers(1, max_t))
    v = v if v is not None else draw(st.sampled_from([13, 17]))
    c = c if c is not None else draw(st.sampled_from([2, 3]))
    elems = st.floats(-1e4, 1e4, width=32) if finite else st.one_of(
        st.floats(-1e4, 1e4, width=32), st.sampled_from([np.nan, np.inf, -np.inf]))
    return draw(hnp.arrays(np.float32, (m, t, v, c), elements=elems))


@st.composite
def valid_datasets(draw) -> SkeletonDataset:
    """Random well-formed datasets: any built-in or a random custom layout, 2D/3D, 1-2 persons, splits, classes."""
    layout = draw(st.one_of(st.sampled_from(sorted(BUILTIN)).map(get_layout), custom_layouts()))
    c = draw(st.sampled_from([2, 3]))
    n = draw(st.integers(1, 4))
    num_classes = draw(st.integers(1, 4))
    names = draw(st.lists(st.text(min_size=1, max_size=8), min_size=n, max_size=n, unique=True))
    clips = []
    for name in names:
        kp = draw(keypoints(v=layout.num_joints, c=c))
        score = draw(st.one_of(st.none(), hnp.arrays(np.float32, kp.shape[:3], elements=st.floats(0, 1, width=32))))
        img = draw(st.one_of(st.none(), st.tuples(st.integers(1, 4000), st.integers(1, 4000))))
        fps = draw(st.one_of(st.none(), st.floats(1, 240)))
        clips.append(Clip(name, draw(st.integers(0, num_classes - 1)), kp, score, img, fps))
    split_names = draw(st.lists(st.sampled_from(["train", "test", "xsub_val", "ünï split"]), unique=True, max_size=3))
    split = {s: draw(st.lists(st.sampled_from(names), unique=True)) for s in split_names}
    classes = draw(st.lists(st.text(min_size=1, max_size=6), min_size=num_classes, max_size=num_classes))
    return SkeletonDataset(clips, split, classes, layout)


JOINT_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10)


@st.composite
def custom_layouts(draw) -> Layout:
    joints = draw(st.lists(JOINT_NAMES, min_size=1, max_size=8, unique=True))
    v = len(joints)
    pairs = st.tuples(st.integers(0, v - 1), st.integers(0, v - 1)).filter(lambda e: e[0] != e[1])
    edges = draw(st.lists(pairs, max_size=10, unique=True)) if v > 1 else []
    return Layout(draw(st.text(min_size=1, max_size=10)), tuple(joints), tuple(edges), draw(st.integers(0, v - 1)))


def _loads_or_bad_input(fn, *args):
    """Call a reader; BadInput is the only acceptable failure. Returns the result or None."""
    try:
        return fn(*args)
    except BadInput as e:
        msg = str(e)
        assert msg and "\n" not in msg, f"BadInput message must be one line: {msg!r}"
        return None


def _mutations(data: bytes) -> st.SearchStrategy[bytes]:
    """Truncations, single-byte flips and inserted garbage of a valid file."""
    n = len(data)
    return st.one_of(
        st.integers(0, max(n - 1, 0)).map(lambda k: data[:k]),
        st.tuples(st.integers(0, n - 1), st.integers(1, 255)).map(
            lambda kb: data[:kb[0]] + bytes([data[kb[0]] ^ kb[1]]) + data[kb[0] + 1:]),
        st.tuples(st.integers(0, n), st.binary(min_size=1, max_size=16)).map(
            lambda kg: data[:kg[0]] + kg[1] + data[kg[0]:]),
    )


# --------------------------------------------------------------------------------------------- pyskl pickle

@st.composite
def near_valid_annotation(draw) -> dict:
    """A valid annotation with some keys dropped or replaced by arbitrary values."""
    ann: dict = {"frame_dir": draw(st.text(min_size=1, max_size=5)), "label": draw(st.integers(0, 3)),
                 "keypoint": draw(keypoints(v=17, finite=False)),
                 "total_frames": 1}
    for key in draw(st.lists(st.sampled_from(["frame_dir", "label", "keypoint", "keypoint_score", "img_shape",
                                              "fps", "original_shape", "total_frames"]), max_size=3)):
        if draw(st.booleans()):
            ann.pop(key, None)
        else:
            ann[key] = draw(st.one_of(anything(), st.integers(-(2 ** 62), 2 ** 62)))
    return ann


@st.composite
def near_valid_pickle(draw) -> object:
    top: dict = {"annotations": draw(st.lists(near_valid_annotation(), max_size=3))}
    for key, values in (("split", anything()), ("classes", st.one_of(st.lists(st.text(max_size=4), max_size=5),
                                                                     anything())),
                        ("layout", st.one_of(st.sampled_from(["coco17", "penn13", "nope"]), anything(),
                                             st.builds(lambda lay: lay.to_dict(), custom_layouts())))):
        if draw(st.booleans()):
            top[key] = draw(values)
    return draw(st.one_of(st.just(top), st.just(top["annotations"]), anything()))


@SETTINGS
@given(obj=near_valid_pickle(), protocol=st.integers(0, pickle.HIGHEST_PROTOCOL))
def test_pyskl_reader_random_structures(tmp_path: Path, obj, protocol: int):
    path = tmp_path / "random.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    ds = _loads_or_bad_input(load_dataset, path)
    if ds is not None:  # whatever loads is usable: finite keypoints, a layout that fits, labels within classes
        for c in ds.clips:
            assert np.isfinite(c.keypoint).all() and c.keypoint.shape[2] == ds.layout.num_joints
            assert c.keypoint_score is None or np.isfinite(c.keypoint_score).all()
            assert 0 <= c.label < ds.num_classes


@SETTINGS
@given(data=st.binary(max_size=200))
def test_pyskl_reader_random_bytes(tmp_path: Path, data: bytes):
    path = tmp_path / "bytes.pkl"
    path.write_bytes(data)
    _loads_or_bad_input(load_dataset, path)


@SETTINGS
@given(ds=valid_datasets(), data=st.data())
def test_pyskl_round_trip_and_mutations(tmp_path: Path, ds: SkeletonDataset, data):
    path = tmp_path / "ds.pkl"
    save_dataset(ds, path)
    back = load_dataset(path)
    assert back.layout == ds.layout and back.classes == ds.classes and back.split == ds.split
    assert len(back.clips) == len(ds.clips)
    for a, b in zip(ds.clips, back.clips):
        assert (a.frame_dir, a.label, a.img_shape, a.fps) == (b.frame_dir, b.label, b.img_shape, b.fps)
        np.testing.assert_array_equal(a.keypoint, b.keypoint)
        np.testing.assert_array_equal(a.scores(), b.scores())
    # A damaged copy of the same file: loads (a harmless flip) or is refused, never a crash.
    path.write_bytes(data.draw(_mutations(path.read_bytes())))
    _loads_or_bad_input(load_dataset, path)


@SETTINGS
@given(ds=valid_datasets(), protocol=st.integers(0, pickle.HIGHEST_PROTOCOL))
def test_pyskl_reads_every_pickle_protocol(tmp_path: Path, ds: SkeletonDataset, protocol: int):
    # OpenMMLab's tools (mmcv/mmengine dump) write pyskl files with protocol 2, where arrays carry their bytes
    # through _codecs.encode; every protocol must read back the same data.
    path = tmp_path / "proto.pkl"
    path.write_bytes(pickle.dumps(to_pyskl(ds), protocol=protocol))
    back = load_dataset(path)
    assert back.classes == ds.classes and back.split == ds.split and back.layout == ds.layout
    for a, b in zip(ds.clips, back.clips):
        assert a.keypoint.dtype == b.keypoint.dtype
        np.testing.assert_array_equal(a.keypoint, b.keypoint)
        np.testing.assert_array_equal(a.scores(), b.scores())


@FEW
@given(kp=keypoints(v=17, finite=False), score=st.booleans())
def test_pyskl_non_finite_values_are_masked(tmp_path: Path, kp: np.ndarray, score: bool):
    sc = np.ones(kp.shape[:3], np.float32) if score else None
    path = tmp_path / "nan.pkl"
    path.write_bytes(pickle.dumps({"annotations": [{"frame_dir": "a", "label": 0, "keypoint": kp,
                                                    "keypoint_score": sc}]}))
    clip = load_dataset(path).clips[0]
    bad = ~np.isfinite(kp).all(-1)
    assert np.isfinite(clip.keypoint).all()
    np.testing.assert_array_equal(clip.scores()[bad], 0)
    np.testing.assert_array_equal(clip.scores()[~bad], 1)
    np.testing.assert_array_equal(clip.keypoint[~bad], kp[~bad])


# --------------------------------------------------------------------------------------------- Penn Action

MAT_FIELD = st.one_of(hnp.arrays(st.sampled_from(["float64", "int32", "uint8"]),
                                 hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=14)),
                      st.text(max_size=6), st.integers(-3, 3))


@st.composite
def penn_fields(draw) -> dict:
    t = draw(st.integers(1, 5))
    fields = {"x": draw(hnp.arrays(np.float64, (t, 13), elements=st.floats(-1e4, 1e4))),
              "y": draw(hnp.arrays(np.float64, (t, 13), elements=st.floats(-1e4, 1e4))),
              "visibility": draw(hnp.arrays(np.uint8, (t, 13), elements=st.integers(0, 1))),
              "action": draw(st.sampled_from(PENN_CLASSES)), "train": np.array([[draw(st.sampled_from([1, -1]))]]),
              "dimensions": np.array([[draw(st.integers(1, 999)), draw(st.integers(1, 999)), t]]),
              "nframes": np.array([[t]])}
    return fields


@SETTINGS
@given(fields=penn_fields(), damage=st.lists(st.tuples(st.sampled_from(["x", "y", "visibility", "action", "train",
                                                                        "dimensions", "bbox"]),
                                                       st.one_of(st.none(), MAT_FIELD)), max_size=3))
def test_penn_reader_random_fields(tmp_path: Path, fields: dict, damage: list):
    for key, value in damage:
        if value is None:
            fields.pop(key, None)
        else:
            fields[key] = value
    path = tmp_path / "0001.mat"
    scipy.io.savemat(path, fields)
    _loads_or_bad_input(read_penn_mat, path)


@SETTINGS
@given(fields=penn_fields(), data=st.data())
def test_penn_round_trip_and_mutations(tmp_path: Path, fields: dict, data):
    path = tmp_path / "0042.mat"
    scipy.io.savemat(path, fields)
    clip, train = read_penn_mat(path)
    assert clip.frame_dir == "0042" and clip.label == PENN_CLASSES.index(fields["action"])
    assert train == (fields["train"][0, 0] == 1)
    assert clip.img_shape == tuple(int(d) for d in fields["dimensions"][0, :2])
    np.testing.assert_array_equal(clip.keypoint[0, ..., 0], fields["x"][:, FILE_TO_PENN13].astype(np.float32))
    np.testing.assert_array_equal(clip.keypoint[0, ..., 1], fields["y"][:, FILE_TO_PENN13].astype(np.float32))
    path.write_bytes(data.draw(_mutations(path.read_bytes())))
    _loads_or_bad_input(read_penn_mat, path)


@FEW
@given(data=st.binary(max_size=300))
def test_penn_reader_random_bytes(tmp_path: Path, data: bytes):
    path = tmp_path / "0001.mat"
    path.write_bytes(b"MATLAB 5.0 MAT-file" + data if data[:1] == b"\x00" else data)
    _loads_or_bad_input(read_penn_mat, path)


# ------------------------------------------------------------------------------------------------------ NTU

NTU_NAME = "S001C002P003R001A004.skeleton"


@st.composite
def ntu_bodies(draw) -> tuple[int, list[list[tuple[str, np.ndarray]]]]:
    t = draw(st.integers(1, 4))
    ids = draw(st.lists(st.sampled_from(["72057594037931101", "72057594037931102", "72057594037931103"]),
                        min_size=1, max_size=3, unique=True))
    frames = []
    for _ in range(t):
        present = draw(st.lists(st.sampled_from(ids), unique=True, max_size=len(ids)))
        frames.append([(b, draw(hnp.arrays(np.float64, (25, 3), elements=st.floats(-5, 5).map(lambda x: round(x, 6)))))
                       for b in present])
    return t, frames


@SETTINGS
@given(body=ntu_bodies(), data=st.data())
def test_ntu_round_trip_and_mutations(tmp_path: Path, body, data):
    t, frames = body
    path = tmp_path / NTU_NAME
    path.write_text(ntu_text(frames), newline="")
    num_frames, bodies = read_skeleton_file(path)
    assert num_frames == t
    expected: dict[str, list] = {}
    for k, fr in enumerate(frames):
        for b, xyz in fr:
            expected.setdefault(b, []).append((k, xyz))
    assert [b for b, _, _ in bodies] == list(expected)
    for b, f, xyz in bodies:
        assert list(f) == [k for k, _ in expected[b]]
        np.testing.assert_allclose(xyz, np.stack([x for _, x in expected[b]]), atol=1e-6)
    clip = read_ntu_clip(path)
    assert (clip is None) == (not expected)
    if clip is not None:
        assert clip.label == 3 and clip.keypoint.shape[1:] == (t, 25, 3) and np.isfinite(clip.keypoint).all()
    text = path.read_bytes()
    path.write_bytes(data.draw(_mutations(text)))
    _loads_or_bad_input(read_ntu_clip, path)


NTU_TOKENS = st.sampled_from(["0", "1", "2", "25", "-1", "1e9", "nan", "inf", "x", "", " ", "3.5",
                              "72057594037931101 0 1 1 1 1 0 -0.2 0.1 2", "0.1 0.2 0.3 1 2 3 4 5 6 7 8 2"])


@SETTINGS
@given(lines=st.lists(NTU_TOKENS, max_size=40), ending=st.sampled_from(["\n", "\r\n"]))
def test_ntu_reader_random_lines(tmp_path: Path, lines: list[str], ending: str):
    path = tmp_path / NTU_NAME
    path.write_text(ending.join(lines), newline="")
    _loads_or_bad_input(read_ntu_clip, path)


@FEW
@given(data=st.binary(max_size=200))
def test_ntu_reader_random_bytes(tmp_path: Path, data: bytes):
    path = tmp_path / NTU_NAME
    path.write_bytes(data)
    _loads_or_bad_input(read_ntu_clip, path)


# ------------------------------------------------------------------------------------------ Kinetics json

JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 64), 2 ** 64),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5))
JSON_ANY = st.recursive(JSON_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                              st.dictionaries(st.text(max_size=5), inner, max_size=4)),
                        max_leaves=8)


@st.composite
def kinetics_doc(draw) -> dict:
    frames = []
    for i in range(draw(st.integers(0, 3))):
        people = []
        for _ in range(draw(st.integers(0, 3))):
            people.append({"pose": draw(st.lists(st.floats(0, 1).map(lambda x: round(x, 3)), min_size=36,
                                                 max_size=36)),
                           "score": draw(st.lists(st.floats(0, 1).map(lambda x: round(x, 3)), min_size=18,
                                                  max_size=18))})
        frames.append({"frame_index": i + 1, "skeleton": people})
    return {"data": frames, "label": "dancing", "label_index": draw(st.integers(0, 5))}


def _damage_json(draw, doc: dict) -> object:
    """Replace one node somewhere in the document with an arbitrary JSON value."""
    path = []
    node: object = doc
    while isinstance(node, (dict, list)) and node and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(node))) if isinstance(node, dict) else draw(st.integers(0, len(node) - 1))
        path.append(key)
        node = node[key]
    if not path:
        return draw(JSON_ANY)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = draw(JSON_ANY)
    return doc


@SETTINGS
@given(doc=kinetics_doc(), data=st.data())
def test_kinetics_reader_damaged_documents(tmp_path: Path, doc: dict, data):
    obj = _damage_json(data.draw, doc)
    path = tmp_path / "clips" / "vid.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(obj))  # json.dumps writes NaN/Infinity as Python's json reads them
    _loads_or_bad_input(parse_kinetics_clip, path, obj)
    _loads_or_bad_input(import_kinetics_json, path.parent, False)


JSON_NUMBERS = st.one_of(st.integers(-(2 ** 64), 2 ** 64), st.floats(allow_nan=True, allow_infinity=True))


@SETTINGS
@given(doc=kinetics_doc(), frame_index=st.one_of(st.none(), JSON_NUMBERS), label_index=JSON_NUMBERS)
def test_kinetics_reader_any_number_in_index_fields(tmp_path: Path, doc: dict, frame_index, label_index):
    if frame_index is not None and doc["data"]:
        doc["data"][0]["frame_index"] = frame_index
    doc["label_index"] = label_index
    path = tmp_path / "vid.json"
    path.write_text(json.dumps(doc))
    ds = _loads_or_bad_input(import_kinetics_json, path, False)
    if ds is not None:
        assert len(ds.classes) <= 1_000_001 and all(0 <= c.label < len(ds.classes) for c in ds.clips)


@SETTINGS
@given(doc=kinetics_doc())
def test_kinetics_round_trip(tmp_path: Path, doc: dict):
    path = tmp_path / "vid.json"
    path.write_text(json.dumps(doc))
    kp, sc, label, name = parse_kinetics_clip(path, json.loads(path.read_text()))
    assert label == doc["label_index"] and name == "dancing"
    people = [p for fr in doc["data"] for p in fr["skeleton"]]
    if not people:
        assert kp.shape[0] == 0
        return
    assert kp.shape[1:] == (len(doc["data"]), 18, 2)
    for t, fr in enumerate(doc["data"]):
        best = sorted(fr["skeleton"], key=lambda p: -sum(p["score"]))[:kp.shape[0]]
        for m, p in enumerate(best):
            np.testing.assert_allclose(kp[m, t], np.reshape(p["pose"], (18, 2)), atol=1e-6)
            np.testing.assert_allclose(sc[m, t], p["score"], atol=1e-6)
    ds = import_kinetics_json(path, False)
    assert [c.frame_dir for c in ds.clips] == ["vid"] and ds.classes[ds.clips[0].label] == "dancing"


@FEW
@given(data=st.binary(max_size=200))
def test_kinetics_reader_random_bytes(tmp_path: Path, data: bytes):
    path = tmp_path / "vid.json"
    path.write_bytes(data)
    _loads_or_bad_input(import_kinetics_json, path, False)


# --------------------------------------------------------------------------------------------- layout JSON

@st.composite
def layout_docs(draw) -> object:
    doc = draw(custom_layouts()).to_dict()
    for key in draw(st.lists(st.sampled_from(["name", "joints", "edges", "center"]), max_size=2)):
        if draw(st.booleans()):
            doc.pop(key, None)
        else:
            doc[key] = draw(JSON_ANY)
    return draw(st.one_of(st.just(doc), JSON_ANY))


@SETTINGS
@given(doc=layout_docs())
def test_layout_json_random_documents(tmp_path: Path, doc):
    path = tmp_path / "layout.json"
    path.write_text(json.dumps(doc))
    lay = _loads_or_bad_input(get_layout, str(path))
    if lay is not None:
        assert lay == Layout.from_dict(doc) and lay.num_joints >= 1
    if not isinstance(doc, dict):
        _loads_or_bad_input(Layout.from_dict, doc)


@FEW
@given(data=st.binary(max_size=120))
def test_layout_json_random_bytes(tmp_path: Path, data: bytes):
    path = tmp_path / "layout.json"
    path.write_bytes(data)
    _loads_or_bad_input(get_layout, str(path))


@SETTINGS
@given(lay=custom_layouts())
def test_layout_json_round_trip(tmp_path: Path, lay: Layout):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(lay.to_dict()))
    back = get_layout(str(path))
    assert back == lay and back.to_dict() == lay.to_dict() and Layout.from_dict(lay.to_dict()) == lay


# ------------------------------------------------------------------------------------------------ corrupt

SPECS = st.builds(CorruptSpec, drop=st.floats(0, 1), impute=st.integers(0, 6), jitter=st.floats(0, 2),
                  framedrop=st.floats(0, 1))


@st.composite
def clips_with_holes(draw, layout: Layout) -> Clip:
    kp = draw(keypoints(v=layout.num_joints, finite=False, max_t=8))
    score = draw(st.one_of(st.none(), hnp.arrays(np.float32, kp.shape[:3], elements=st.one_of(
        st.floats(0, 1, width=32), st.sampled_from([np.nan, np.inf, 0.0])))))
    return Clip(draw(st.text(min_size=1, max_size=4)), draw(st.integers(0, 2)), kp, score)


@SETTINGS
@given(data=st.data(), spec=SPECS, seed=st.integers(0, 2 ** 32 - 1))
def test_corrupt_keeps_shape_and_never_outputs_nan(data, spec: CorruptSpec, seed: int):
    layout = get_layout(data.draw(st.sampled_from(["penn13", "coco17"])))
    clips = data.draw(st.lists(clips_with_holes(layout), min_size=1, max_size=3, unique_by=lambda c: c.frame_dir))
    ds = SkeletonDataset(clips, {"train": [clips[0].frame_dir]}, ["a", "b", "c"], layout)
    out = corrupt_dataset(ds, spec, seed)
    assert out.split == ds.split and out.classes == ds.classes and out.layout == ds.layout
    assert len(out.clips) == len(ds.clips)
    for a, b in zip(ds.clips, out.clips):
        assert (b.frame_dir, b.label) == (a.frame_dir, a.label)
        assert b.keypoint.shape == a.keypoint.shape and b.scores().shape == a.keypoint.shape[:3]
        assert np.isfinite(b.keypoint).all() and np.isfinite(b.scores()).all()
        assert ((b.scores() >= 0) & (b.scores() <= 1)).all()


# ---------------------------------------------------------------------------------------- input transform

@SETTINGS
@given(data=st.data(), features=st.sets(st.sampled_from(["joint", "bone", "motion"]), min_size=1),
       augment=st.booleans())
def test_model_input_is_finite_and_masks_missing_joints(data, features: set, augment: bool):
    from models.net.transforms import AugmentParams, InputConfig, make_input, sample_indices

    layout = get_layout(data.draw(st.sampled_from(["penn13", "coco17", "ntu25"])))
    clip = data.draw(clips_with_holes(layout))
    cfg = InputConfig(length=data.draw(st.integers(1, 10)), features=tuple(sorted(features)), use_score=True,
                      max_persons=2)
    idx = sample_indices(clip.total_frames, cfg.length, False)[0]
    aug = AugmentParams((0.9, 1.1, 1.0), 0.2, data.draw(st.booleans())) if augment else None
    x = make_input(clip, layout, cfg, idx, aug)
    assert x.shape == (2, cfg.length, layout.num_joints, len(features) * clip.num_channels + 1)
    assert np.isfinite(x).all()
    # A joint that is missing in the file (non-finite coordinate or score, or score 0) is zero in every channel.
    kp, score = clip.keypoint[:, idx], clip.scores()[:, idx]
    missing = ~(np.isfinite(kp).all(-1) & np.isfinite(score) & (score > 0))
    if not augment or not aug.flip:
        from models.net.transforms import clip_stats

        persons = clip_stats(clip, layout, cfg.max_persons).persons
        np.testing.assert_array_equal(x[: len(persons), ..., -1][missing[persons]], 0)
        if features == {"joint"}:
            np.testing.assert_array_equal(x[: len(persons)][missing[persons]], 0)
