"""`pipeline dataset build`: cache entries -> paired HQ and LQ pyskl pickles (same clips, same frame counts).

The labels CSV has rows `video,label[,split]` (a header row `video,label,...` is optional). Video paths are
relative to the CSV's folder. A video is found in the cache by the hash of its bytes; when the file is no
longer there, by the file name recorded at extraction. Without a split column every `test_every`-th clip of
each class (in CSV order) goes to `test`, the rest to `train`.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from models.contract.errors import BadInput
from models.contract.layouts import convert, get_layout
from models.contract.skeleton import Clip, SkeletonDataset
from pipeline.data.labels import LabelRow, class_index, read_labels, split_of
from pipeline.data.pyskl_io import save_dataset
from pipeline.extract.cache import CacheEntry, PoseCache, hash_file


class _Finder:
    """Cache entries of one estimator, per quality, for a video (by content hash, else by recorded name)."""

    def __init__(self, cache: PoseCache, estimator: str):
        self.cache, self.estimator = cache, estimator
        self._by_name: dict[str, list[Path]] | None = None

    def find(self, video: Path, quality: str) -> Path | None:
        if video.is_file():
            cands = self.cache.entries_for(hash_file(video))
        else:
            if self._by_name is None:
                self._by_name = defaultdict(list)
                for e in self.cache.all_entries():
                    self._by_name[self.cache.read_meta(e).get("source", "")].append(e)
            cands = self._by_name.get(video.name, [])
        hits = [e for e in cands if (m := self.cache.read_meta(e)).get("estimator") == self.estimator
                and m.get("quality") == quality]
        # Several settings of one tier (e.g. with and without --flip-average): the newest extraction wins.
        return max(hits, key=lambda e: e.stat().st_mtime) if hits else None


def build_paired(cache_dir: str | os.PathLike, labels_csv: str | os.PathLike, out_hq: str | os.PathLike,
                 out_lq: str | os.PathLike, layout: str | None = None, estimator: str = "mediapipe",
                 test_every: int = 5) -> tuple[SkeletonDataset, SkeletonDataset]:
    """Write the HQ and LQ pickles; every check runs before either file is written."""
    if Path(out_hq).resolve() == Path(out_lq).resolve():
        raise BadInput("--out-hq and --out-lq are the same file", out_hq)
    if test_every < 2:
        raise BadInput("test_every must be >= 2")
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        raise BadInput("cache folder not found", cache_dir)
    cache = PoseCache(cache_dir)
    rows = read_labels(labels_csv)
    classes, labels = class_index(rows, labels_csv)
    finder = _Finder(cache, estimator)
    missing: list[str] = []
    pairs: list[tuple[CacheEntry, CacheEntry]] = []
    for r in rows:
        found = [finder.find(r.video, q) for q in ("high", "low")]
        if None in found:
            missing.append(f"{r.video.name} ({'/'.join(q for q, f in zip(('HQ', 'LQ'), found) if f is None)})")
            continue
        pairs.append((cache.load(found[0]), cache.load(found[1])))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise BadInput(f"{len(missing)} video(s) have no {estimator} cache entry: {shown}; run `pipeline extract "
                       f"--quality high` and `--quality low` on them with --cache {cache_dir}", labels_csv)
    src_layout = {e.result.layout for pair in pairs for e in pair}
    if len(src_layout) != 1:
        raise BadInput(f"cache entries mix layouts {sorted(src_layout)}", cache_dir)
    src = get_layout(src_layout.pop())
    dst = get_layout(layout) if layout is not None else src
    names = _frame_dirs(rows, pairs, labels_csv)
    hq_clips, lq_clips = [], []
    split: dict[str, list[str]] = defaultdict(list)
    seen_per_class: dict[int, int] = defaultdict(int)
    for r, name, label, (hq, lq) in zip(rows, names, labels, pairs):
        if hq.result.total_frames != lq.result.total_frames:
            raise BadInput(f"HQ has {hq.result.total_frames} frames and LQ {lq.result.total_frames}: the two "
                           f"entries are not of the same video decode; re-extract it", r.video)
        m = max(hq.result.keypoint.shape[0], lq.result.keypoint.shape[0])
        for entry, clips in ((hq, hq_clips), (lq, lq_clips)):
            kp, sc = _pad_persons(entry.result.keypoint, entry.result.keypoint_score, m)
            if dst != src:
                kp, sc = convert(kp, sc, src, dst)
            clips.append(Clip(name, label, kp.astype(np.float32), sc.astype(np.float32),
                              tuple(entry.result.img_shape), entry.result.fps))
        split[split_of(r, label, seen_per_class, test_every)].append(name)
    ds_hq = SkeletonDataset(hq_clips, dict(split), classes, dst)
    ds_lq = SkeletonDataset(lq_clips, dict(split), classes, dst)
    save_dataset(ds_hq, out_hq)
    save_dataset(ds_lq, out_lq)
    return ds_hq, ds_lq


def _pad_persons(kp: np.ndarray, sc: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    if kp.shape[0] == m:
        return kp, sc
    pad = m - kp.shape[0]
    return (np.concatenate([kp, np.zeros((pad,) + kp.shape[1:], kp.dtype)]),
            np.concatenate([sc, np.zeros((pad,) + sc.shape[1:], sc.dtype)]))


def _frame_dirs(rows: list[LabelRow], pairs: list[tuple[CacheEntry, CacheEntry]],
                path: str | os.PathLike | None = None) -> list[str]:
    """Clip names: the video's file stem, with a hash suffix where two videos share a stem."""
    stems = [r.video.stem for r in rows]
    count = defaultdict(int)
    for s in stems:
        count[s] += 1
    names = [s if count[s] == 1 else f"{s}_{hq.meta['video_hash'][:8]}" for s, (hq, _) in zip(stems, pairs)]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise BadInput(f"the labels list the same video twice: {', '.join(dup)}", path)
    return names
