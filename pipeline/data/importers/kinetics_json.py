"""Kinetics-skeleton (Yan, Xiong, Lin, AAAI 2018): the ST-GCN json files of OpenPose 18-joint poses.

One file per video, `{"data": [{"frame_index": i, "skeleton": [{"pose": [x0, y0, ..., x17, y17],
"score": [s0..s17]}, ...]}, ...], "label": name, "label_index": k}`. Coordinates are normalised to 0..1 by the
frame size and kept so; a joint OpenPose did not find is (0, 0) with score 0.

Persons: OpenPose has no identities, so as ST-GCN's feeder does, the persons of each frame are ranked by their
summed joint score and the best two kept (slot 0 is the most confident person of that frame).

Where the clips come from and which split they land in (`SRC` is a file or a folder):
- a folder holding `kinetics_train/` and/or `kinetics_val/` (the ST-GCN release): their json files become the
  `train` and `test` splits; `kinetics_train_label.json` / `kinetics_val_label.json` beside them are read as
  label indexes when present;
- any other folder: every `*.json` in it (not recursive) is a clip, except `*_label.json` files, which are label
  indexes `{video_id: {"has_skeleton", "label", "label_index"}}`. A clip listed in an index whose name contains
  `val` or `test` (e.g. `kinetics_val_label.json`) is in `test`; every other clip is in `train`;
- a single `.json` file: that one clip, in `train`.
A clip's label is its own `label_index`, else the index's. Clips that an index marks `has_skeleton: false`, and
clips without a single person, are skipped and listed in the dataset's `skipped` key. Class names come from
the label indexes when given (every entry names its class, so the official index names all 400 even when few
clips are imported) and from the clips' `label` strings; the class count is the highest index named or used
+ 1, and indices never named are `class_<k>`. A clip whose scores are all 0 while its coordinates are not
(a file written without scores) is imported with a warning: a model would see every joint as missing.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.contract.errors import BadInput
from models.contract.jsonio import read_json
from models.contract.layouts import OPENPOSE18
from models.contract.skeleton import Clip, SkeletonDataset
from pipeline.data.importers.base import MAX_FRAMES, Importer

NUM_JOINTS = 18
MAX_PERSONS = 2
MAX_INDEX = 1_000_000  # no frame_index or label_index is larger in a sane file
_SHAPE_HINT = "expected an ST-GCN Kinetics-skeleton json {\"data\": [{\"frame_index\", \"skeleton\": [...]}], ...}"


def _label_index(value: object, path: Path, what: str) -> int | None:
    if value is None:
        return None
    # json reads NaN and Infinity too: not integers (and int() of them would raise)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value != int(value):
        raise BadInput(f"{what} {value!r} is not an integer", path)
    if value > MAX_INDEX:  # a class name is made for every index below the largest: refuse absurd ones
        raise BadInput(f"{what} {int(value)} is out of range (at most {MAX_INDEX})", path)
    return int(value)


def parse_kinetics_clip(path: Path, obj: object) -> tuple[np.ndarray, np.ndarray, int | None, str | None]:
    """`keypoint [M, T, 18, 2]`, `keypoint_score [M, T, 18]`, label index (or None), label name (or None).

    M is 0 when no frame has a person.
    """
    if not isinstance(obj, dict) or not isinstance(obj.get("data"), list):
        raise BadInput(f"not a Kinetics-skeleton file: {_SHAPE_HINT}", path)
    frames = obj["data"]
    per_frame: dict[int, list[tuple[float, np.ndarray, np.ndarray]]] = {}
    for n, fr in enumerate(frames):
        if not isinstance(fr, dict) or "frame_index" not in fr or not isinstance(fr.get("skeleton"), list):
            raise BadInput(f"data[{n}] is not {{\"frame_index\", \"skeleton\": [...]}}: {_SHAPE_HINT}", path)
        t = _label_index(fr["frame_index"], path, f"data[{n}].frame_index")
        if t is None or t < 0 or t > MAX_FRAMES:
            raise BadInput(f"data[{n}].frame_index {t} is out of range 0..{MAX_FRAMES}", path)
        people = per_frame.setdefault(t, [])
        for p, sk in enumerate(fr["skeleton"]):
            where = f"data[{n}].skeleton[{p}]"
            if not isinstance(sk, dict) or "pose" not in sk or "score" not in sk:
                raise BadInput(f"{where} lacks 'pose' or 'score'", path)
            try:
                pose = np.asarray(sk["pose"], dtype=np.float64)
                score = np.asarray(sk["score"], dtype=np.float64)
            except (TypeError, ValueError):
                raise BadInput(f"{where}: pose/score are not lists of numbers", path) from None
            if pose.shape != (2 * NUM_JOINTS,) or score.shape != (NUM_JOINTS,):
                raise BadInput(f"{where}: pose has {pose.size} values and score {score.size}, expected "
                               f"{2 * NUM_JOINTS} and {NUM_JOINTS} (OpenPose 18 joints)", path)
            if not (np.isfinite(pose).all() and np.isfinite(score).all()):
                raise BadInput(f"{where}: non-finite pose or score", path)
            people.append((float(score.sum()), pose.reshape(NUM_JOINTS, 2), score))
    label = _label_index(obj.get("label_index"), path, "label_index")
    name = obj.get("label")
    if name is not None and not isinstance(name, str):
        raise BadInput(f"label {name!r} is not a string", path)
    if not any(per_frame.values()):
        return np.zeros((0, 0, NUM_JOINTS, 2), np.float32), np.zeros((0, 0, NUM_JOINTS), np.float32), label, name
    # ST-GCN's files count frames from 1; a file that uses 0 keeps it.
    base = 0 if 0 in per_frame else 1
    t_total = max(per_frame) - base + 1
    m = min(MAX_PERSONS, max(len(p) for p in per_frame.values()))
    kp = np.zeros((m, t_total, NUM_JOINTS, 2), np.float32)
    sc = np.zeros((m, t_total, NUM_JOINTS), np.float32)
    for t, people in per_frame.items():
        people = sorted(people, key=lambda q: -q[0])[:m]  # stable: ties keep the file's order
        for slot, (_, pose, score) in enumerate(people):
            kp[slot, t - base] = pose
            sc[slot, t - base] = score
    return kp, sc, label, name


def _read_index(path: Path) -> dict[str, dict]:
    obj = read_json(path)
    if not isinstance(obj, dict) or not all(isinstance(v, dict) for v in obj.values()):
        raise BadInput("not a Kinetics label index {video_id: {\"has_skeleton\", \"label\", \"label_index\"}}",
                       path)
    return obj


def _is_test_index(path: Path) -> bool:
    stem = path.name[: -len("_label.json")].lower()
    return "val" in stem or "test" in stem


def _gather(root: Path) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """(clip file, default split) pairs and (label index file, split it describes) pairs."""
    if root.is_file():
        if root.name.endswith("_label.json"):
            raise BadInput("is a label index; pass the folder that holds the clips and the index", root)
        return [(root, "train")], []
    if not root.is_dir():
        raise BadInput("not found", root)
    subdirs = [(root / f"kinetics_{part}", split) for part, split in (("train", "train"), ("val", "test"))]
    if any(d.is_dir() for d, _ in subdirs):
        clips = [(f, split) for d, split in subdirs if d.is_dir() for f in sorted(d.glob("*.json"))]
        indexes = [(root / f"kinetics_{part}_label.json", split)
                   for part, split in (("train", "train"), ("val", "test"))]
        indexes = [(p, s) for p, s in indexes if p.is_file()]
    else:
        files = sorted(root.glob("*.json"))
        clips = [(f, "train") for f in files if not f.name.endswith("_label.json")]
        indexes = [(f, "test" if _is_test_index(f) else "train") for f in files if f.name.endswith("_label.json")]
    if not clips:
        raise BadInput("no Kinetics-skeleton .json clip files in folder", root)
    return clips, indexes


def import_kinetics_json(src: str | os.PathLike, progress: bool = True) -> SkeletonDataset:
    """Read Kinetics-skeleton json clips from `src` (see the module docstring for the folder conventions)."""
    root = Path(src)
    clip_files, index_files = _gather(root)
    index: dict[str, tuple[dict, str, Path]] = {}
    names: dict[int, str] = {}
    for path, split in index_files:
        for vid, entry in _read_index(path).items():
            index[vid] = (entry, split, path)
            k = _label_index(entry.get("label_index"), path, f"{vid}: label_index")
            if k is not None and k >= 0 and isinstance(entry.get("label"), str):
                if names.setdefault(k, entry["label"]) != entry["label"]:
                    raise BadInput(f"label_index {k} is {entry['label']!r} for {vid} but {names[k]!r} elsewhere",
                                   path)
    clips: list[Clip] = []
    split: dict[str, list[str]] = {"train": [], "test": []}
    unscored: list[str] = []
    skipped: list[str] = []
    seen: dict[str, Path] = {}
    # Bars only on a terminal (None: off when stderr is piped); as a context manager the bar is cleared before
    # a bad-input message is printed.
    with tqdm(clip_files, desc="kinetics-json", unit="clip", leave=False, disable=None if progress else True) as it:
        for path, default_split in it:
            vid = path.stem
            if vid in seen:
                raise BadInput(f"clip {vid} also read from {seen[vid]}", path)
            seen[vid] = path
            entry, index_split, index_path = index.get(vid, ({}, None, None))
            if entry.get("has_skeleton") is False:
                skipped.append(vid)
                continue
            kp, sc, label, name = parse_kinetics_clip(path, read_json(path))
            if label is None and entry:
                label = _label_index(entry.get("label_index"), index_path, f"{vid}: label_index")
                name = entry.get("label") if isinstance(entry.get("label"), str) else name
            if label is None:
                raise BadInput("no label_index in the file nor in a *_label.json index beside it", path)
            if label < 0:
                raise BadInput(f"label_index {label} (unlabelled clip); only labelled clips can be imported", path)
            if kp.shape[0] == 0:
                skipped.append(vid)
                continue
            if name is not None:
                if names.setdefault(label, name) != name:
                    raise BadInput(f"label_index {label} is {name!r} here but {names[label]!r} elsewhere", path)
            if not sc.any() and kp.any():
                unscored.append(vid)
            clips.append(Clip(vid, label, kp, sc, None, fps=30.0))
            split[index_split or default_split].append(vid)
    if not clips:
        raise BadInput(f"none of the {len(clip_files)} clips holds a person", root)
    num_classes = max(max(c.label for c in clips), max(names, default=0)) + 1
    classes = [names.get(k, f"class_{k}") for k in range(num_classes)]
    extra: dict = {"skipped": skipped} if skipped else {}
    warnings = []
    if unscored:
        shown = ", ".join(unscored[:3]) + (", ..." if len(unscored) > 3 else "")
        warnings.append(f"{root}: {len(unscored)} clips have every score 0 but non-zero coordinates (every joint "
                        f"reads as missing): {shown}")
    return SkeletonDataset(clips, split, classes, OPENPOSE18, extra, warnings=warnings)


IMPORTER = Importer(help="a folder of ST-GCN Kinetics-skeleton .json files (+ optional label json beside them)",
                    load=import_kinetics_json)
