"""Dataset-level operations behind `pipeline dataset`: import dispatch, layout conversion, summary, export."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np

from models.contract.atomic import atomic_write_bytes, new_folder
from models.contract.errors import BadInput
from models.contract.layouts import get_layout
from models.contract.skeleton import SkeletonDataset, convert_dataset
from pipeline.data.importers import IMPORTERS
from pipeline.data.pyskl_io import load_dataset, save_dataset


def import_dataset(kind: str, src: str | os.PathLike, layout: str | None = None,
                   benchmark: str = "xsub", source_layout: str | None = None, labels: str | os.PathLike | None = None,
                   keypoints: str | os.PathLike | None = None, max_persons: int = 2) -> SkeletonDataset:
    """Import `src` with the importer of `kind`, which gets those of the options it declares; then convert to
    `layout` (an importer that declares "layout" reads it itself: pyskl, whose file may store none)."""
    src = Path(src)
    dst = get_layout(layout) if layout is not None else None  # a bad --layout fails before a long import
    if not src.exists():
        raise BadInput("not found", src)
    if kind not in IMPORTERS:
        raise BadInput(f"unknown dataset kind {kind!r}")
    imp = IMPORTERS[kind]
    given = {"benchmark": benchmark, "layout": dst, "source_layout": source_layout, "labels": labels,
             "keypoints": keypoints, "max_persons": max_persons}
    for name in ("source_layout", "labels", "keypoints"):  # unset unless asked for: wrong for this kind is a mistake
        if given[name] is not None and name not in imp.options:
            takers = ", ".join(k for k, i in IMPORTERS.items() if name in i.options)
            raise BadInput(f"--{name.replace('_', '-')} is for {takers}, not {kind}")
    ds = imp.load(src, **{k: v for k, v in given.items() if k in imp.options})
    if dst is not None:
        ds = convert_dataset(ds, dst)
    return ds


def summarize(ds: SkeletonDataset) -> dict:
    frames = np.array([c.total_frames for c in ds.clips])
    labels = np.array([c.label for c in ds.clips])
    index = {c.frame_dir: c.label for c in ds.clips}
    per_split = {}
    for name, members in ds.split.items():
        counts = np.bincount([index[m] for m in members if m in index], minlength=ds.num_classes)
        per_split[name] = [int(x) for x in counts]
    per_split["all"] = [int(x) for x in np.bincount(labels, minlength=ds.num_classes)]
    return {
        "clips": len(ds.clips),
        "classes": list(ds.classes),
        "layout": ds.layout.name,
        "layout_from": ds.layout_from or "given",
        "joints": ds.layout.num_joints,
        "dims": ds.num_channels,
        "max_persons": int(max(c.num_persons for c in ds.clips)),
        "splits": {k: len(v) for k, v in ds.split.items()},
        "per_split": per_split,
        "frames": {"min": int(frames.min()), "median": float(np.median(frames)), "mean": float(frames.mean()),
                   "max": int(frames.max())},
        # How an LQ pickle from `dataset corrupt` was made (its spec with the seed used); None for any other file.
        "corruption": ds.extra.get("corruption"),
    }


def export_dataset(src: str | os.PathLike, out: str | os.PathLike, layout: str | None = None,
                   source_layout: str | None = None) -> int:
    """Write `src` to a pickle (optionally in another layout) or a folder of one `.npz` per clip."""

    ds = load_dataset(src, layout, source_layout)
    out = Path(out)
    if out.suffix == ".pkl":
        save_dataset(ds, out)
        return len(ds.clips)
    if out.exists() and not out.is_dir():
        raise BadInput("exists and is not a folder (use a .pkl name for a pickle)", out)
    written: list[Path] = []
    with new_folder(out):  # a folder this export made goes again if the export fails (a full disk)
        out.mkdir(parents=True, exist_ok=True)
        used: set[str] = set()
        try:
            for c in ds.clips:
                name = _safe_name(c.frame_dir)
                if name.lower() in used:  # two ids that clean to one name ("a/b", "a_b"): neither may overwrite
                    digest = hashlib.blake2b(c.frame_dir.encode("utf-8", "surrogatepass"), digest_size=6)
                    name = f"{name}_{digest.hexdigest()}"
                used.add(name.lower())  # lower case: a case-insensitive file system would merge "A" and "a"
                buf = io.BytesIO()  # (in memory first: a zip cut short by a full disk is not left half-closed)
                np.savez_compressed(buf, keypoint=c.keypoint, keypoint_score=c.scores(), label=c.label,
                                    class_name=ds.classes[c.label], layout=ds.layout.name, frame_dir=c.frame_dir)
                atomic_write_bytes(out / f"{name}.npz", buf.getvalue())
                written.append(out / f"{name}.npz")
        except BaseException:
            # All clips or none: an export cut short (a full disk) is not a smaller dataset.
            for f in written:
                f.unlink(missing_ok=True)
            raise
    return len(ds.clips)


def _safe_name(name: str, limit: int = 120) -> str:
    """A file name that cannot leave its folder, whatever the data file says (and not too long for one)."""
    cleaned = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).lstrip(".")
    if len(cleaned.encode("utf-8")) > limit:
        digest = hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()
        cleaned = cleaned.encode("utf-8")[:limit].decode("utf-8", "ignore") + "_" + digest
    return cleaned or "clip"
