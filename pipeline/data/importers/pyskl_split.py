"""`dataset import pyskl`: a pyskl/mmaction2 pickle, including PYSKL's split-keypoint annotations.

PYSKL's large 2D releases (its Kinetics-400 HRNet skeletons, `k400_hrnet.pkl`) keep only a table of contents:
each annotation has `frame_dir`, `label`, `total_frames`, `img_shape`, `original_shape`, `frame_inds` (the
frame of each detected skeleton), `box_score` (its person-box score), `valid` and `raw_file` (the kpfile that
holds its skeletons), and no `keypoint`. A kpfile is a pickle `{frame_dir: {"keypoint": [N, V, 3]}}` (x, y,
score per joint; N skeletons, in the order of `frame_inds`). With `--keypoints DIR` the kpfile is looked up in
DIR by `raw_file` (its path relative to DIR, then its file name); without `raw_file` every `*.pkl` in DIR is
searched. Each clip becomes a dense `keypoint [M, T, V, 2]` / `keypoint_score [M, T, V]`: per frame the
`max_persons` skeletons with the highest summed joint score, in that order (as PYSKL's own decompression ranks
them); frames without a skeleton get score 0. `frame_inds`, `box_score` and `raw_file` no longer apply and
are dropped; the other keys are kept.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import numpy as np

from models.contract.errors import BadInput
from models.contract.layouts import Layout
from models.contract.skeleton import SkeletonDataset
from pipeline.data.importers.base import MAX_FRAMES
from pipeline.data.pyskl_io import dataset_from_object, safe_load, split_keypoint_message

_DROPPED = ("frame_inds", "box_score", "raw_file", "anno_inds")


def import_pyskl(src: str | os.PathLike, layout: Layout | None = None, source_layout: str | None = None,
                 keypoints: str | os.PathLike | None = None, max_persons: int = 2) -> SkeletonDataset:
    """Read a pyskl pickle (split-keypoint annotations filled from the kpfiles in `keypoints`)."""
    p = Path(src)
    obj = safe_load(p)
    anns = obj.get("annotations") if isinstance(obj, dict) else obj
    if isinstance(anns, list):
        todo = [(n, a) for n, a in enumerate(anns)
                if isinstance(a, dict) and "keypoint" not in a and "frame_inds" in a]
        if todo and keypoints is None:
            raise BadInput(split_keypoint_message(todo[0][1], todo[0][0]).replace(
                "import it with", f"{len(todo)} such annotations; import them with"), p)
        if todo:
            _fill(todo, Path(keypoints), max_persons, p)
    ds = dataset_from_object(obj, p, layout, source_layout)
    unscored = [c.frame_dir for c in ds.clips
                if c.keypoint_score is not None and not c.keypoint_score.any() and c.keypoint.any()]
    if unscored:
        shown = ", ".join(unscored[:3]) + (", ..." if len(unscored) > 3 else "")
        ds.warnings.append(f"{p}: {len(unscored)} clips have every score 0 but non-zero coordinates (every joint "
                           f"reads as missing): {shown}")
    return ds


def _load_kpfile(path: Path) -> dict:
    obj = safe_load(path)
    if not isinstance(obj, dict):
        raise BadInput(f"not a PYSKL kpfile (a {type(obj).__name__}, expected {{frame_dir: {{'keypoint': "
                       f"[N, V, 3]}}}})", path)
    return obj


def _kpfile_of(raw: object, name: str, root: Path, ann_path: Path) -> Path:
    """The file in `root` that `raw_file` names: its relative path, then its file name."""
    rel = PurePosixPath(str(raw).replace("\\", "/"))
    # A data file must not make us read outside DIR: relative paths without '..' only, else the name.
    tries = [rel.name]
    if not rel.is_absolute() and ".." not in rel.parts:
        tries.insert(0, str(rel))
    for t in tries:
        if (root / t).is_file():
            return root / t
    raise BadInput(f"kpfile {raw!r} of clip {name!r} not found in --keypoints {root} (looked for "
                   f"{', '.join(repr(t) for t in tries)})", ann_path)


def _groups(todo: list[tuple[int, dict]], root: Path, ann_path: Path) -> list[tuple[Path, list[tuple[int, dict]]]]:
    """(kpfile, its annotations), so that each kpfile is read once and let go before the next (K400's are
    large). Annotations without `raw_file` are looked for in every `*.pkl` of `root`."""
    by_file: dict[Path, list[tuple[int, dict]]] = {}
    loose: list[tuple[int, dict]] = []
    for n, a in todo:
        name = a.get("frame_dir")
        if not isinstance(name, str) or not name:
            raise BadInput(f"annotation {n}: frame_dir must be a non-empty string", ann_path)
        raw = a.get("raw_file")
        if isinstance(raw, str) and raw:
            by_file.setdefault(_kpfile_of(raw, name, root, ann_path), []).append((n, a))
        else:
            loose.append((n, a))
    if loose:
        wanted = {a["frame_dir"]: (n, a) for n, a in loose}
        for f in sorted(root.glob("*.pkl")):
            for name in _load_kpfile(f).keys() & wanted.keys():
                by_file.setdefault(f, []).append(wanted.pop(name))
        if wanted:
            name = next(iter(wanted))
            raise BadInput(f"clip {name!r} (no raw_file) is in none of the kpfiles in --keypoints {root}", ann_path)
    return list(by_file.items())


def _fill(todo: list[tuple[int, dict]], root: Path, max_persons: int, ann_path: Path) -> None:
    if not root.is_dir():
        raise BadInput("--keypoints must be the folder that holds the kpfiles", root)
    for f, group in _groups(todo, root, ann_path):
        kpfile = _load_kpfile(f)
        for _, a in group:
            name = a["frame_dir"]
            if name not in kpfile:
                raise BadInput(f"kpfile has no entry for clip {name!r} (its raw_file is {a.get('raw_file')!r})", f)
            _decompress(a, kpfile[name], max_persons, f, ann_path)
        del kpfile


def _decompress(a: dict, entry: object, max_persons: int, f: Path, ann_path: Path) -> None:
    """Annotation `a` with dense `keypoint`/`keypoint_score` from its kpfile entry, in place."""
    name = a["frame_dir"]
    kp = entry.get("keypoint") if isinstance(entry, dict) else entry
    if not isinstance(kp, np.ndarray) or kp.ndim != 3 or kp.shape[2] != 3 or not np.issubdtype(kp.dtype, np.number):
        shape = getattr(kp, "shape", type(kp).__name__)
        raise BadInput(f"clip {name!r}: keypoint is {shape}, expected an array [N, V, 3] (x, y, score)", f)
    inds = np.asarray(a["frame_inds"])
    if inds.ndim != 1 or len(inds) != len(kp) or not np.issubdtype(inds.dtype, np.integer):
        raise BadInput(f"clip {name!r}: {len(kp)} skeletons in the kpfile but frame_inds has shape "
                       f"{inds.shape} ({inds.dtype}); expected {len(kp)} integers", ann_path)
    total = a.get("total_frames")
    total = int(total) if isinstance(total, (int, np.integer)) else (int(inds.max()) + 1 if len(inds) else 0)
    if total < 1:
        raise BadInput(f"clip {name!r}: no frames (total_frames {total})", ann_path)
    if total > MAX_FRAMES:
        raise BadInput(f"clip {name!r}: total_frames {total} is more than {MAX_FRAMES} frames", ann_path)
    if len(inds) and (inds.min() < 0 or inds.max() >= total):
        raise BadInput(f"clip {name!r}: frame_inds run {inds.min()}..{inds.max()}, outside 0..{total - 1}", ann_path)
    per_frame: dict[int, list[int]] = {}
    for i, t in enumerate(inds.tolist()):
        per_frame.setdefault(t, []).append(i)
    m = max(1, min(max_persons, max((len(v) for v in per_frame.values()), default=1)))
    # float16 like the kpfiles (and PYSKL's dense releases): a K400-sized import stays half the size.
    out_k = np.zeros((m, total, kp.shape[1], 2), np.float16)
    out_s = np.zeros((m, total, kp.shape[1]), np.float16)
    score_sum = kp[:, :, 2].astype(np.float32).sum(1)
    for t, idx in per_frame.items():
        idx = sorted(idx, key=lambda i: -score_sum[i])[:m]  # stable: ties keep the file's order
        out_k[:len(idx), t] = kp[idx, :, :2]
        out_s[:len(idx), t] = kp[idx, :, 2]
    for k in _DROPPED:
        a.pop(k, None)
    a["keypoint"], a["keypoint_score"], a["total_frames"] = out_k, out_s, total
