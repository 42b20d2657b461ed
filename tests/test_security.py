"""Security: no code path unpickles a user file with an unrestricted loader (grep), the restricted loaders refuse
code (crafted pickles, checkpoints and .npz cache entries whose payloads are shown to run without the guard), and
names that come from data files cannot place a file outside the output or cache folder."""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for pkg in ("pipeline", "estimators", "models", "bench") for p in (ROOT / pkg).rglob("*.py")]

# pickle.load/loads, pickle.Unpickler(...).load() outside the restricted unpickler, numpy's allow_pickle,
# torch.load without weights_only=True, joblib/dill/cloudpickle loads.
FORBIDDEN = [
    (re.compile(r"\bpickle\.loads?\("), "pickle.load"),
    (re.compile(r"\b(dill|cloudpickle|joblib)\.loads?\("), "third-party unpickler"),
    (re.compile(r"allow_pickle\s*=\s*True"), "numpy allow_pickle=True"),
    (re.compile(r"weights_only\s*=\s*False"), "torch.load(weights_only=False)"),
]


def test_sources_exist():
    assert len(SOURCES) > 10


def test_no_unrestricted_unpickling():
    hits = []
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        for pattern, what in FORBIDDEN:
            for m in pattern.finditer(text):
                line = text.count("\n", 0, m.start()) + 1
                hits.append(f"{path.relative_to(ROOT)}:{line}: {what}")
    assert not hits, "\n".join(hits)


def test_every_torch_load_is_weights_only():
    hits = []
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"torch\.load\(", text):
            # The call's argument list up to the matching parenthesis.
            depth, i = 1, m.end()
            while depth and i < len(text):
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
            if "weights_only=True" not in text[m.end():i]:
                hits.append(f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}")
    assert not hits, "torch.load without weights_only=True at: " + ", ".join(hits)


def test_restricted_unpickler_is_the_only_pickle_loader():
    users = [p for p in SOURCES if re.search(r"pickle\.Unpickler\b", p.read_text(encoding="utf-8"))]
    assert [p.relative_to(ROOT).as_posix() for p in users] == ["pipeline/data/pyskl_io.py"]


def test_every_np_load_refuses_pickles_explicitly():
    """numpy's default is allow_pickle=False today; saying so at every call keeps it so if a default changes."""
    hits = []
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"\b(np|numpy)\.load\(", text):
            depth, i = 1, m.end()
            while depth and i < len(text):
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
            if "allow_pickle=False" not in text[m.end():i]:
                hits.append(f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}")
    assert not hits, "np.load without allow_pickle=False at: " + ", ".join(hits)


# ------------------------------------------------------------------------------ payloads that run code

class _Reduce:
    """Unpickling this calls `fn(*args)`."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _touch_py(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').close()"


def payloads(folder: Path) -> dict[str, bytes]:
    """Pickles that each create `folder/<name>` when unpickled without a guard, in several disguises."""
    m = {name: folder / name for name in ("system", "eval", "exec", "subprocess", "getattr", "inst", "object_array",
                                          "nested", "protocol0", "builtins_open")}
    touch = f"touch '{m['system']}'"
    out = {
        "system": pickle.dumps(_Reduce(os.system, touch), protocol=2),
        "eval": pickle.dumps(_Reduce(eval, _touch_py(m["eval"])), protocol=4),
        "exec": pickle.dumps(_Reduce(exec, _touch_py(m["exec"])), protocol=5),
        "subprocess": pickle.dumps(_Reduce(subprocess.call, ["touch", str(m["subprocess"])]), protocol=3),
        # getattr(__import__('os'), 'system')('touch ...'), written by hand in protocol 0 opcodes
        "getattr": (b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(S'os'\ntRS'system'\ntR(S'touch "
                    + str(m["getattr"]).encode() + b"'\ntR."),
        # the INST opcode: module and name on the opcode's own lines
        "inst": b"(S'touch " + str(m["inst"]).encode() + b"'\nios\nsystem\n.",
        # inside a numpy object array: the elements are unpickled through the same find_class
        "object_array": pickle.dumps(np.array([_Reduce(os.system, f"touch '{m['object_array']}'")], dtype=object)),
        # hidden where a pyskl file keeps its arrays
        "nested": pickle.dumps({"split": {}, "annotations": [{"frame_dir": "a", "label": 0, "keypoint": np.zeros(
            (1, 2, 17, 2)), "keypoint_score": _Reduce(os.system, f"touch '{m['nested']}'")}]}, protocol=2),
        "protocol0": pickle.dumps(_Reduce(os.system, f"touch '{m['protocol0']}'"), protocol=0),
        "builtins_open": pickle.dumps(_Reduce(open, str(m["builtins_open"]), "w"), protocol=4),
    }
    return out


def test_the_payloads_are_live(tmp_path: Path):
    """Control experiment, in a child process: unguarded pickle.loads runs every payload below."""
    files = []
    for name, data in payloads(tmp_path).items():
        (tmp_path / f"{name}.pkl").write_bytes(data)
        files.append(str(tmp_path / f"{name}.pkl"))
    code = ("import pickle, sys\nfor f in sys.argv[1:]:\n    try:\n        pickle.loads(open(f, 'rb').read())\n"
            "    except Exception:\n        pass\n")
    subprocess.run([sys.executable, "-c", code, *files], check=True, capture_output=True, timeout=120)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".pkl") == sorted(payloads(tmp_path))


@pytest.mark.parametrize("name", sorted(payloads(Path("/nonexistent"))))
def test_restricted_unpickler_refuses_code(tmp_path: Path, name: str):
    from models.contract.errors import BadInput
    from pipeline.data.pyskl_io import load_dataset, safe_load

    path = tmp_path / "evil.pkl"
    path.write_bytes(payloads(tmp_path)[name])
    for loader in (safe_load, load_dataset):
        with pytest.raises(BadInput) as e:
            loader(path)
        assert "refused to load" in str(e.value) and "nothing was executed" in str(e.value)
    assert [p.name for p in tmp_path.iterdir()] == ["evil.pkl"]  # no marker: nothing ran


def test_only_latin1_bytes_pass_the_codecs_rule(tmp_path: Path):
    """Protocols 0-2 carry bytes as _codecs.encode(str, 'latin1'); that call, and no other codec, is admitted."""
    from models.contract.errors import BadInput
    from pipeline.data.pyskl_io import safe_load

    ok = tmp_path / "ok.pkl"
    ok.write_bytes(pickle.dumps(np.arange(4, dtype=np.float16), protocol=2))
    np.testing.assert_array_equal(safe_load(ok), np.arange(4, dtype=np.float16))
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"c_codecs\nencode\n(Vabc\nVrot13\ntR.")
    with pytest.raises(BadInput, match="refused to load.*rot13"):
        safe_load(bad)
    dotted = tmp_path / "dotted.pkl"  # protocol 4 resolves dotted names as attribute chains: not admitted
    module, name = b"numpy.dtypes", b"Float32DType.__class__.XDType"
    # PROTO 4, SHORT_BINUNICODE module, SHORT_BINUNICODE name, STACK_GLOBAL, STOP
    dotted.write_bytes(b"\x80\x04\x8c" + bytes([len(module)]) + module + b"\x8c" + bytes([len(name)]) + name
                       + b"\x93.")
    with pytest.raises(BadInput, match="refused to load"):
        safe_load(dotted)


def _torch_payload(marker: Path) -> dict:
    return {"format": "skd-pipeline/stgcn-checkpoint", "state_dict": _Reduce(os.system, f"touch '{marker}'")}


def test_checkpoints_and_training_states_refuse_code(tmp_path: Path):
    """Every torch.load of a user file (model checkpoints, train and distill resume states) refuses a payload."""
    import torch

    from models.checkpoint import read_checkpoint
    from models.contract.errors import BadInput

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save(_torch_payload(marker), evil)
    # Control: the unguarded load runs it (in a child process).
    subprocess.run([sys.executable, "-c", "import sys, torch; torch.load(sys.argv[1], weights_only=False)", evil],
                   check=True, capture_output=True, timeout=120)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(BadInput, match="refused to load"):
        read_checkpoint(evil)
    from models.training.history import History
    from models.training.state import CLASSIFIER_STATE, STUDENT_STATE, load_state

    with pytest.raises(BadInput, match="cannot resume"):
        load_state(evil, CLASSIFIER_STATE, {}, None, None, History())
    with pytest.raises(BadInput, match="cannot resume"):
        load_state(evil, STUDENT_STATE, {}, None, None, History())
    assert not marker.exists()


def test_npz_cache_entries_refuse_pickled_objects(tmp_path: Path):
    from models.contract.errors import BadInput
    from pipeline.extract.cache import PoseCache

    marker = tmp_path / "pwned"
    cache = PoseCache(tmp_path / "cache")
    entry = cache.entry_path("ab" * 20, "mediapipe", {})
    entry.parent.mkdir(parents=True)
    obj = np.array([_Reduce(os.system, f"touch '{marker}'")], dtype=object)
    with open(entry, "wb") as fh:
        np.savez(fh, meta=obj, keypoint=obj, keypoint_score=obj)
    subprocess.run([sys.executable, "-c", "import sys, numpy as np; np.load(sys.argv[1], allow_pickle=True)['meta']",
                    entry], check=True, capture_output=True, timeout=120)
    assert marker.exists()  # control: with allow_pickle=True the entry runs code
    marker.unlink()
    for read in (cache.load, cache.read_meta):
        with pytest.raises(BadInput, match="unreadable cache entry"):
            read(entry)
    assert not marker.exists()


# ----------------------------------------------------------------- names from data files stay inside


HOSTILE_IDS = ["../../escaped", "/tmp/absolute", "..", ".", "a/../../b", "~/.bashrc", "sub/dir/clip", "nul\x00byte",
               "back\\slash\\..\\..\\x", "ü/../../ü", "a/b", "a_b", "A_B", "x" * 400]


def test_clip_ids_cannot_escape_the_export_folder(tmp_path: Path):
    """`dataset export` to a folder of .npz: one file per clip, all inside the folder, whatever the ids say."""
    from pipeline.data.pyskl_io import save_dataset
    from tests.conftest import make_dataset
    from tests.support.cli_support import run_pipeline, snapshot

    ds = make_dataset(n_per_class=5, num_classes=3, t=4)
    for c, name in zip(ds.clips, HOSTILE_IDS):
        c.frame_dir = name
    ds.clips = ds.clips[:len(HOSTILE_IDS)]
    ds.split = {"train": [c.frame_dir for c in ds.clips]}
    work = tmp_path / "deep" / "er" / "work"
    work.mkdir(parents=True)
    save_dataset(ds, work / "ids.pkl")
    before = snapshot(tmp_path)
    proc = run_pipeline("dataset", "export", work / "ids.pkl", "--out", work / "npz", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert f"{len(HOSTILE_IDS)} clips" in proc.stdout
    created = snapshot(tmp_path) - before
    assert created and all(f.startswith("deep/er/work/npz/") and f.count("/") == 4 for f in created), created
    files = sorted((work / "npz").glob("*.npz"))
    assert len(files) == len(HOSTILE_IDS)  # no two ids overwrote each other
    ids = set()
    for f in files:
        with np.load(f, allow_pickle=False) as z:
            ids.add(str(z["frame_dir"]))
    assert ids == set(HOSTILE_IDS)


def test_a_layout_path_stored_in_a_pickle_is_never_opened(tmp_path: Path):
    """A pickle may name a built-in layout or hold one; a path it names is refused even when it points at a
    valid layout file (so the refusal is not a read that happened to fail)."""
    from models.contract.errors import BadInput
    from models.contract.layouts import get_layout
    from pipeline.data.pyskl_io import load_dataset

    lay = tmp_path / "valid_layout.json"
    lay.write_text(__import__("json").dumps(get_layout("coco17").to_dict()))
    assert get_layout(str(lay)).num_joints == 17
    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps({"annotations": [{"frame_dir": "a", "label": 0,
                                                    "keypoint": np.zeros((1, 2, 17, 2), np.float32)}],
                                   "layout": str(lay)}))
    with pytest.raises(BadInput, match="neither a built-in layout name nor a layout dict"):
        load_dataset(path)
    assert load_dataset(path, layout=str(lay)).layout.num_joints == 17  # the user may pass it on purpose


def test_cache_entry_names_come_only_from_digests(tmp_path: Path):
    """Whatever a video is called or holds, its cache entry sits under ROOT/poses/<estimator>/<2 hex>/."""
    from pipeline.extract.cache import PoseCache, hash_file

    cache = PoseCache(tmp_path / "cache")
    video = tmp_path / "..%2F..%2Fevil ü.mp4"
    video.write_bytes(b"../../../etc/passwd")
    entry = cache.entry_path(hash_file(video), "mediapipe", {"source": "../../x", "quality": "/abs"})
    assert entry.resolve().is_relative_to((tmp_path / "cache" / "poses" / "mediapipe").resolve())
    assert re.fullmatch(r"[0-9a-f]{40}_[0-9a-f]{16}\.npz", entry.name)
    for bad_hash, bad_name in (("../" * 10, "mediapipe"), ("ab" * 20, "../x"), ("ab" * 20, "a/b")):
        with pytest.raises(ValueError):
            cache.entry_path(bad_hash, bad_name, {})
