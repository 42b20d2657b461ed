"""Read and write the pyskl / mmaction2 annotation pickle, through a restricted unpickler.

A pickle can run arbitrary code on load. `safe_load` admits only numpy arrays, numpy scalars and dtypes, and
plain containers; anything else (os.system, eval, a class of some module) is refused before it is called.
"""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np

from models.contract.atomic import atomic_path
from models.contract.errors import BadInput
from models.contract.layouts import BUILTIN, Layout, coverage, get_layout
from models.contract.paths import vet_input
from models.contract.skeleton import Clip, SkeletonDataset, convert_dataset

# (module, name) pairs the unpickler may resolve. numpy 1.x says numpy.core, numpy 2.x numpy._core.
_ALLOWED = {
    (mod, name)
    for core in ("numpy.core", "numpy._core")
    for mod, name in (
        (f"{core}.multiarray", "_reconstruct"),
        (f"{core}.multiarray", "scalar"),
        (f"{core}.numeric", "_frombuffer"),
    )
} | {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"),
    ("builtins", "slice"), ("builtins", "complex"),
}


class RefusedPickle(pickle.UnpicklingError):
    pass


def _latin1_bytes(text: object, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Pickle protocols 0-2 store bytes (an array's buffer) as `_codecs.encode(str, 'latin1')`, and OpenMMLab's
    tools write pyskl files with protocol 2: admit exactly that call, with no other codec."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise RefusedPickle(f"_codecs.encode(..., {encoding!r})")
    return text.encode("latin-1")


def _bytearray(data: object = b"", encoding: str | None = None) -> bytearray:
    """`bytearray` as pickles call it (a copy of bytes, or of a latin-1 str under protocols 0-2), and nothing
    else: `bytearray(3_000_000_000)` from a 100-byte file would allocate 3 GB."""
    if isinstance(data, bytes) and encoding is None:
        return bytearray(data)
    if isinstance(data, str) and encoding in ("latin1", "latin-1"):
        return bytearray(data, "latin-1")
    raise RefusedPickle(f"builtins.bytearray called with {type(data).__name__}")


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: D401
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if (module, name) == ("_codecs", "encode"):
            return _latin1_bytes
        if (module, name) == ("builtins", "bytearray"):
            return _bytearray
        # numpy dtype classes (numpy.dtypes.Float32DType) appear in numpy>=1.25 pickles of dtypes.
        # No dots: protocol 4 resolves "a.b.c" attribute chains, which must not walk out of the class.
        if module == "numpy.dtypes" and name.endswith("DType") and "." not in name:
            return super().find_class(module, name)
        raise RefusedPickle(f"{module}.{name}")


def safe_load(path: str | os.PathLike) -> object:
    """Load a pickle that may only hold numpy arrays and plain containers; raise BadInput otherwise."""
    p = vet_input(path, "pickle")
    try:
        data = p.read_bytes()
    except OSError as e:  # no permission, an I/O error
        raise BadInput(f"cannot read ({e.strerror or type(e).__name__})", p) from None
    if not data:
        raise BadInput("empty file", p)
    try:
        return _RestrictedUnpickler(io.BytesIO(data)).load()
    except RefusedPickle as e:
        raise BadInput(f"refused to load: the pickle references {e} (only numpy arrays and plain "
                       f"containers are admitted; nothing was executed)", p) from None
    except Exception as e:  # truncated, not a pickle, ...; pickle's messages can span lines: keep one
        raise BadInput(f"not a readable pickle ({type(e).__name__}: {' '.join(str(e).split())})", p) from None


def _as_array(x: object, what: str, path: Path, ndim: int) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise BadInput(f"{what} is {type(x).__name__}, expected a numpy array", path)
    if x.ndim != ndim:
        raise BadInput(f"{what} has shape {x.shape}, expected {ndim} dimensions", path)
    if not (np.issubdtype(x.dtype, np.number) and not np.issubdtype(x.dtype, np.complexfloating)):
        raise BadInput(f"{what} has dtype {x.dtype}, expected numbers", path)
    return x


_KNOWN_ANN_KEYS = {"frame_dir", "label", "total_frames", "keypoint", "keypoint_score", "img_shape",
                   "original_shape", "fps"}


def load_dataset(path: str | os.PathLike, layout: str | Layout | None = None,
                 source_layout: str | Layout | None = None) -> SkeletonDataset:
    """Load a pyskl annotation pickle into a SkeletonDataset, in `layout` when one is given.

    What the clips ARE: `source_layout`, else the file's own `layout` key, else (PYSKL/MMAction2 files store
    none) `layout` when its joint count fits, else a guess from the joint count. Clips in another layout than
    `layout` are then converted to it by joint name. Non-finite coordinates are masked (set to 0 with score 0)
    so they never reach a model or a loss.
    """
    p = Path(path)
    return dataset_from_object(safe_load(p), p, layout, source_layout)


def dataset_from_object(obj: object, p: Path, layout: str | Layout | None = None,
                        source_layout: str | Layout | None = None) -> SkeletonDataset:
    """`load_dataset` on an already unpickled object (`p` names the file in messages)."""
    if isinstance(obj, list):  # a bare annotation list, as some mmaction2 files are
        obj = {"annotations": obj, "split": {}}
    if not isinstance(obj, dict) or "annotations" not in obj:
        raise BadInput("not a pyskl annotation pickle (expected a dict with 'annotations')", p)
    anns = obj["annotations"]
    if not isinstance(anns, list) or not anns:
        raise BadInput("'annotations' is empty or not a list", p)
    clips: list[Clip] = []
    v_seen: set[int] = set()
    c_seen: set[int] = set()
    for n, a in enumerate(anns):
        if not isinstance(a, dict):
            raise BadInput(f"annotation {n} is {type(a).__name__}, expected a dict", p)
        for k in ("frame_dir", "label", "keypoint"):
            if k not in a:
                if k == "keypoint" and "frame_inds" in a:
                    raise BadInput(split_keypoint_message(a, n), p)
                raise BadInput(f"annotation {n} lacks '{k}'", p)
        name = a["frame_dir"]
        if not isinstance(name, str) or not name:
            raise BadInput(f"annotation {n}: frame_dir must be a non-empty string", p)
        label = a["label"]
        if isinstance(label, np.integer):
            label = int(label)
        if not isinstance(label, int) or isinstance(label, bool) or label < 0:
            raise BadInput(f"clip {name!r}: label must be a non-negative integer", p)
        kp = _as_array(a["keypoint"], f"clip {name!r}: keypoint", p, 4)
        if kp.shape[3] not in (2, 3) or kp.shape[0] < 1 or kp.shape[1] < 1:
            raise BadInput(f"clip {name!r}: keypoint shape {kp.shape} is not [M>=1, T>=1, V, C=2|3]", p)
        sc = a.get("keypoint_score")
        if sc is not None:
            sc = _as_array(sc, f"clip {name!r}: keypoint_score", p, 3)
            if sc.shape != kp.shape[:3]:
                raise BadInput(f"clip {name!r}: keypoint_score shape {sc.shape} != keypoint {kp.shape[:3]}", p)
        bad = ~np.isfinite(kp).all(-1)
        if sc is not None:
            bad |= ~np.isfinite(sc)
        if bad.any():
            kp = kp.copy()
            kp[bad] = 0
            sc = (np.ones(kp.shape[:3], np.float32) if sc is None else sc.astype(np.float32).copy())
            sc[bad] = 0
        img_shape = a.get("img_shape")
        if img_shape is not None:
            try:
                img_shape = (int(img_shape[0]), int(img_shape[1]))
            except (TypeError, ValueError, IndexError):
                raise BadInput(f"clip {name!r}: img_shape {img_shape!r} is not (h, w)", p) from None
        extra = {k: v for k, v in a.items() if k not in _KNOWN_ANN_KEYS}
        if "original_shape" in a:
            extra["original_shape"] = a["original_shape"]
        fps = a.get("fps")
        if fps is not None:
            try:
                fps = float(fps)
            except (TypeError, ValueError):
                raise BadInput(f"clip {name!r}: fps {fps!r} is not a number", p) from None
        clips.append(Clip(name, label, kp, sc, img_shape, fps, extra))
        v_seen.add(kp.shape[2])
        c_seen.add(kp.shape[3])
    if len(v_seen) > 1:
        raise BadInput(f"clips have different joint counts {sorted(v_seen)}", p)
    if len(c_seen) > 1:
        raise BadInput("clips mix 2D and 3D coordinates", p)
    names = [c.frame_dir for c in clips]
    if len(set(names)) != len(names):
        raise BadInput("duplicate frame_dir names", p)
    split = obj.get("split") or {}
    if not isinstance(split, dict) or not all(isinstance(v, list) for v in split.values()):
        raise BadInput("'split' must map split names to lists of frame_dir", p)
    classes = obj.get("classes")
    max_label = max(c.label for c in clips)
    if classes is None:
        if max_label >= _MAX_UNNAMED_CLASSES:  # would name a class per index up to it: refuse, not run out of memory
            raise BadInput(f"label {max_label} and no 'classes' list (labels above {_MAX_UNNAMED_CLASSES - 1} "
                           f"need one)", p)
        classes = [str(i) for i in range(max_label + 1)]
    elif not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise BadInput("'classes' must be a list of names", p)
    elif max_label >= len(classes):
        raise BadInput(f"label {max_label} but only {len(classes)} classes", p)
    dst = get_layout(layout) if layout is not None else None
    src = get_layout(source_layout) if source_layout is not None else None
    lay, origin = _resolve_layout(dst, src, obj.get("layout"), v_seen.pop(), p)
    extra = {k: v for k, v in obj.items() if k not in ("annotations", "split", "classes", "layout")}
    ds = SkeletonDataset(clips, {str(k): [str(x) for x in v] for k, v in split.items()}, list(classes),
                         lay, extra, layout_from=origin)
    if dst is not None and dst != lay:
        if coverage(lay, dst) == 0:
            hint = (f"; if the file IS in {dst.name}, say so with --source-layout" if dst.num_joints == lay.num_joints
                    else ": nothing to convert")
            raise BadInput(f"layout {dst.name} ({dst.num_joints} joints) shares no joint name with the clips' "
                           f"layout {lay.name} ({lay.num_joints} joints, {origin}){hint}", p)
        ds = replace(convert_dataset(ds, dst), layout_from=f"converted from {lay.name} ({origin})")
    return ds


def split_keypoint_message(a: dict, n: int) -> str:
    """What is missing from a PYSKL split-keypoint annotation (K400 HRNet: keypoints in separate kpfiles)."""
    name = a.get("frame_dir", f"annotation {n}")
    raw = a.get("raw_file")
    where = f"the kpfile {str(raw)!r} (its 'raw_file')" if isinstance(raw, str) else "a separate kpfile"
    return (f"annotation {n} ({name!r}) holds no 'keypoint' but 'frame_inds': a PYSKL split-keypoint annotation "
            f"whose skeletons are in {where}; import it with `pipeline dataset import pyskl FILE --keypoints DIR` "
            f"(DIR: the folder of kpfiles)")


_MAX_UNNAMED_CLASSES = 100_000
_DEFAULT_BY_JOINTS = {13: "penn13", 17: "coco17", 18: "openpose18", 25: "ntu25", 33: "blazepose33"}


def _resolve_layout(dst: Layout | None, src: Layout | None, stored, num_joints: int, path: Path
                    ) -> tuple[Layout, str]:
    """The layout the clips ARE in, and where that came from (for `dataset info`)."""
    fits = dst is not None and dst.num_joints == num_joints
    if src is not None:
        lay, origin = src, "given by --source-layout"
    elif stored is not None and not (fits and not _valid_stored(stored)):
        # A name the file stores is only looked up among the built-ins: a data file must not make us read
        # another file (get_layout would open a path).
        if isinstance(stored, str) and stored in BUILTIN:
            lay = BUILTIN[stored]
        elif isinstance(stored, dict):
            lay = Layout.from_dict(stored, f"{path} (stored layout)")
        else:
            raise BadInput(f"stored 'layout' {str(stored)[:40]!r} is neither a built-in layout name nor a layout "
                           f"dict; pass --source-layout", path)
        origin = "stored in the file"
    elif fits:
        lay, origin = dst, "given by --layout (the file stores none)"
    elif num_joints in _DEFAULT_BY_JOINTS:
        lay, origin = get_layout(_DEFAULT_BY_JOINTS[num_joints]), f"guessed from {num_joints} joints (none stored)"
    elif dst is not None:
        raise BadInput(f"clips have {num_joints} joints and no layout is stored, and --layout {dst.name} has "
                       f"{dst.num_joints}: say what the file is with --source-layout NAME|FILE.json naming a "
                       f"{num_joints}-joint layout", path)
    else:
        raise BadInput(f"clips have {num_joints} joints and no layout is stored; pass --layout (or "
                       f"--source-layout) NAME|FILE.json naming a {num_joints}-joint layout", path)
    if lay.num_joints != num_joints:
        raise BadInput(f"layout {lay.name} has {lay.num_joints} joints but the clips have {num_joints}", path)
    return lay, origin


def _valid_stored(stored: object) -> bool:
    return (isinstance(stored, str) and stored in BUILTIN) or isinstance(stored, dict)


def to_pyskl(ds: SkeletonDataset) -> dict:
    """The pyskl annotation dict for a dataset (with our optional `classes` and `layout` keys)."""
    anns = []
    for c in ds.clips:
        a = dict(c.extra)
        a.update(frame_dir=c.frame_dir, label=int(c.label), total_frames=c.total_frames, keypoint=c.keypoint)
        if c.keypoint_score is not None:
            a["keypoint_score"] = c.keypoint_score
        if c.img_shape is not None:
            a["img_shape"] = tuple(c.img_shape)
        if c.fps is not None:
            a["fps"] = c.fps
        anns.append(a)
    lay = ds.layout.name if BUILTIN.get(ds.layout.name) == ds.layout else ds.layout.to_dict()
    out = dict(ds.extra)
    out.update(split={k: list(v) for k, v in ds.split.items()}, annotations=anns, classes=list(ds.classes),
               layout=lay)
    return out


def save_dataset(ds: SkeletonDataset, path: str | os.PathLike) -> None:
    """Write atomically: a crash leaves either the old file or the complete new one."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        pickle.dump(to_pyskl(ds), fh, protocol=4)
