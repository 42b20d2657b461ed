"""OpenPose `*_keypoints.json` (one file per frame, as `openpose --write_json` writes them) with a labels CSV.

SRC is a folder holding either one sub-folder per video (its frame files inside), or the frame files of
several videos side by side, named `<video>_<frame:012d>_keypoints.json` as OpenPose names them. A frame file
is `{"version", "people": [{"pose_keypoints_2d": [x0, y0, c0, x1, ...], ...}, ...]}`: 25 keypoints (BODY_25,
layout `body25`) or 18 (COCO-18, layout `openpose18`), decided by the count, which must be the same in every
file. The frame number is the last run of digits before `_keypoints.json` (or `.json`); a clip starts at its
first file, and frame numbers without a file are missing frames (score 0), as are frames without people.

OpenPose has no identities: people are followed across frames with the project's tracker
(`estimators/tracking.py`, no interpolation) and the `max_persons` most present (summed mean joint score over
frames) are kept, best first. A frame file with more than `MAX_PEOPLE` (100) people keeps its 100 most confident
(summed joint confidence): tracking compares every person with every track, and a crowd of hundreds would make
that cost grow with its square while only the `max_persons` most present people are kept. Pixel coordinates
and OpenPose's confidences are kept as they are; a joint OpenPose did not find (confidence 0) stays missing.

Labels CSV (`--labels`): rows `video,label[,split]`, an optional header row `video,label,...`. `video` is the
folder name or the `<video>` prefix (an extension such as `.mp4` is ignored). `label` is a class name (classes
are then the sorted names) or an integer class index counting from 0 (labels that never use 0, as 1-based ones
do, get a warning). Without a split column every 5th clip
of each class (in CSV order) goes to `test`, the others to `train`. Videos without a row, and rows without
frames, are skipped with a warning.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from estimators.tracking import PersonTracker, TrackerConfig
from models.contract.errors import BadInput
from models.contract.jsonio import read_json
from models.contract.layouts import BODY25, OPENPOSE18
from models.contract.skeleton import Clip, SkeletonDataset
from pipeline.data.importers.base import MAX_FRAMES, Importer
from pipeline.data.labels import class_index, read_labels, split_of

LAYOUTS = {25: BODY25, 18: OPENPOSE18}
TEST_EVERY = 5
MAX_PEOPLE = 100  # people per frame given to the tracker, the most confident first (see the module docstring)
_FLAT = re.compile(r"^(.+)_(\d+)_keypoints\.json$")
_NUMBER = re.compile(r"(\d+)(?:_keypoints)?\.json$")


def _videos(root: Path) -> dict[str, list[Path]]:
    """Video id -> its frame files, from sub-folders and from OpenPose-named files side by side."""
    if not root.is_dir():
        raise BadInput("expected a folder of OpenPose *_keypoints.json files (or of one folder per video)", root)
    videos: dict[str, list[Path]] = defaultdict(list)
    for f in sorted(root.iterdir()):
        if f.is_dir():
            files = sorted(f.glob("*.json"))
            if files:
                videos[f.name] = files
        elif f.name.endswith(".json"):
            m = _FLAT.match(f.name)
            if m is None:
                raise BadInput("frame files side by side must be named <video>_<frame>_keypoints.json "
                               "(or put each video's files in a folder of its own)", f)
            if m.group(1) in videos and videos[m.group(1)] and videos[m.group(1)][0].parent != root:
                raise BadInput(f"video {m.group(1)!r} is both a folder and files named after it", f)
            videos[m.group(1)].append(f)
    if not videos:
        raise BadInput("no OpenPose .json frame files in the folder or its sub-folders", root)
    return dict(videos)


def _frame_numbers(files: list[Path]) -> list[int]:
    nums = [_NUMBER.search(f.name) for f in files]
    if all(nums):
        return [int(m.group(1)) for m in nums]
    return list(range(len(files)))  # no numbers: the files' sorted order


def _read_people(path: Path) -> list[np.ndarray]:
    """Each person's `[K, 3]` (x, y, confidence) array; K is 25 or 18."""
    obj = read_json(path)
    if not isinstance(obj, dict) or not isinstance(obj.get("people"), list):
        raise BadInput("not an OpenPose keypoints file (expected {\"version\", \"people\": [...]})", path)
    people = []
    for n, person in enumerate(obj["people"]):
        pose = person.get("pose_keypoints_2d") if isinstance(person, dict) else None
        if not isinstance(pose, list):
            raise BadInput(f"people[{n}] has no pose_keypoints_2d list", path)
        if not pose:
            continue  # OpenPose writes [] when the body model was off or found nothing
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in pose):
            raise BadInput(f"people[{n}].pose_keypoints_2d holds something that is not a number", path)
        if len(pose) % 3 or len(pose) // 3 not in LAYOUTS:
            raise BadInput(f"people[{n}].pose_keypoints_2d has {len(pose)} values; expected 75 (BODY_25) or 54 "
                           f"(COCO-18): x, y, confidence per keypoint", path)
        a = np.asarray(pose, np.float64).reshape(-1, 3)
        bad = ~np.isfinite(a).all(-1)
        a[bad] = 0  # a non-finite value is a missing joint, never a coordinate
        people.append(a.astype(np.float32))
    return people


def _read_clip(vid: str, files: list[Path], max_persons: int) -> tuple[np.ndarray, np.ndarray, int] | None:
    nums = _frame_numbers(files)
    first, last = min(nums), max(nums)
    if last - first >= MAX_FRAMES:
        raise BadInput(f"video {vid!r}: frame numbers run {first}..{last}, more than {MAX_FRAMES} frames",
                       files[0].parent)
    by_frame: dict[int, list[np.ndarray]] = defaultdict(list)
    k_seen: dict[int, Path] = {}
    for f, num in zip(files, nums):
        if num - first in by_frame:
            raise BadInput(f"video {vid!r}: two files for frame {num}", f)
        people = _read_people(f)
        if len(people) > MAX_PEOPLE:  # stable: ties keep the file's order
            people = sorted(people, key=lambda p: -float(p[:, 2].sum()))[:MAX_PEOPLE]
        by_frame[num - first] = people
        for p in people:
            k_seen.setdefault(p.shape[0], f)
    if len(k_seen) > 1:
        (k1, f1), (k2, f2) = list(k_seen.items())[:2]
        raise BadInput(f"video {vid!r} mixes {k1} keypoints ({f1.name}) and {k2} ({f2.name}) per person", f2)
    if not k_seen:
        return None
    k = next(iter(k_seen))
    total = last - first + 1
    tracker = PersonTracker(TrackerConfig(max_persons=max_persons, interpolate=False, hold_tail=False), k, 2)
    for t in range(total):  # every frame counts as processed: a frame without a file or people is missing
        tracker.update(t, [(p[:, :2], p[:, 2]) for p in by_frame.get(t, [])])
    kp, sc = tracker.finalize(total)
    return kp, sc, k


def import_openpose_json(src: str | os.PathLike, labels_csv: str | os.PathLike, max_persons: int = 2
                         ) -> SkeletonDataset:
    """Read the OpenPose frame files under `src`, labelled by `labels_csv` (see the module docstring)."""
    root = Path(src)
    if max_persons < 1:
        raise BadInput(f"--max-persons must be at least 1, got {max_persons}")
    videos = _videos(root)
    rows = read_labels(labels_csv)
    classes, labels = class_index(rows, labels_csv)
    warnings: list[str] = []
    if classes[0] == "0" and 0 not in labels:
        warnings.append(f"{labels_csv}: integer labels are 0-based class indices and none is 0, so class 0 has no "
                        f"clip; if yours count from 1, subtract 1 (or use class names)")
    clips: list[Clip] = []
    split: dict[str, list[str]] = defaultdict(list)
    if rows[0].split is None:
        split.update(train=[], test=[])
    per_class: dict[int, int] = defaultdict(int)
    layouts: dict[int, str] = {}
    listed: set[str] = set()
    for r, label in zip(rows, labels):
        vid = r.video.name
        if vid not in videos and Path(vid).stem in videos:
            vid = Path(vid).stem
        if vid in listed:
            raise BadInput(f"line {r.line}: video {vid!r} is listed twice", labels_csv)
        listed.add(vid)
        if vid not in videos:
            warnings.append(f"{labels_csv}: line {r.line}: no frame files for video {vid!r} in {root}; skipped")
            continue
        got = _read_clip(vid, videos[vid], max_persons)
        if got is None:
            warnings.append(f"{root}: video {vid!r} has no person in any frame; skipped")
            continue
        kp, sc, k = got
        layouts.setdefault(k, vid)
        if len(layouts) > 1:
            raise BadInput(f"video {vid!r} has {k} keypoints per person but {layouts[25]!r} has 25 and "
                           f"{layouts[18]!r} 18: import BODY_25 and COCO-18 videos separately", root)
        clips.append(Clip(vid, label, kp, sc))
        split[split_of(r, label, per_class, TEST_EVERY)].append(vid)
    unlisted = sorted(set(videos) - listed)
    if unlisted:
        shown = ", ".join(unlisted[:3]) + (", ..." if len(unlisted) > 3 else "")
        warnings.append(f"{root}: {len(unlisted)} videos have no row in {labels_csv} and were skipped ({shown})")
    if not clips:
        raise BadInput(f"none of the {len(rows)} labelled videos has frame files with a person", root)
    return SkeletonDataset(clips, dict(split), classes, LAYOUTS[next(iter(layouts))], warnings=warnings)


def _load(src: Path, labels: str | os.PathLike | None = None, max_persons: int = 2) -> SkeletonDataset:
    if labels is None:
        raise BadInput("openpose-json needs --labels labels.csv (rows video,label[,split])", src)
    return import_openpose_json(src, labels, max_persons=max_persons)


IMPORTER = Importer(help="OpenPose *_keypoints.json frame files (a folder per video, or side by side); BODY_25 "
                         "or COCO-18; needs --labels",
                    load=_load, options=("labels", "max_persons"))


