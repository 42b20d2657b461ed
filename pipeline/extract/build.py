"""`pipeline dataset build`: cache entries -> paired HQ and LQ pyskl pickles (same clips, same frame counts).

The labels CSV has rows `video,label[,split]` (a header row `video,label,...` is optional). Video paths are
relative to the CSV's folder. A video is found in the cache by the hash of its bytes; when the file is no
longer there, by the file name recorded at extraction. Without a split column every `test_every`-th clip of
each class (in CSV order) goes to `test`, the rest to `train`.

Entries are those of one estimator (the registry name `extract --estimator` filed them under). Each video needs
exactly one entry per tier, and each tier must come from one model across the videos (e.g. BlazePose heavy for
all HQ clips): several candidates, or a mix, are refused rather than the newest silently taken.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from estimators import DEFAULT, QUALITIES, estimator_class
from models.contract.errors import BadInput
from models.contract.layouts import Layout, convert, get_layout
from models.contract.skeleton import Clip, SkeletonDataset
from pipeline.data.labels import LabelRow, class_index, read_labels, split_of
from pipeline.data.pyskl_io import save_dataset
from pipeline.extract.cache import CacheEntry, PoseCache, hash_file


def entry_model(meta: dict) -> str:
    """The model that made an entry: recorded since entries carry "model"; for older ones, from their settings."""
    if meta.get("model"):
        return str(meta["model"])
    legacy = (meta.get("settings") or {}).get("model")
    return f"{meta.get('estimator')} {legacy}" if legacy else str(meta.get("estimator"))


class EntryFinder:
    """Cache entries of a video (by content hash, else by the file name recorded at extraction)."""

    def __init__(self, cache: PoseCache):
        self.cache = cache
        self._by_name: dict[str, list[Path]] | None = None

    def entries(self, video: Path) -> list[tuple[Path, dict]]:
        if video.is_file():
            cands = self.cache.entries_for(hash_file(video))
        else:
            if self._by_name is None:
                self._by_name = defaultdict(list)
                for e in self.cache.all_entries():
                    self._by_name[self.cache.read_meta(e).get("source", "")].append(e)
            cands = self._by_name.get(video.name, [])
        return [(e, self.cache.read_meta(e)) for e in cands]

    def tier_entry(self, video: Path, estimator: str, quality: str) -> Path | None:
        """The one entry of `estimator`'s `quality` tier of `video` (None: none; several: refused, as in build)."""
        hits = [(e, m) for e, m in self.entries(video)
                if m.get("estimator") == estimator and m.get("quality") == quality]
        return _pick(video, quality, hits, estimator, self.cache.root) if hits else None


NO_PERSON = "no person"  # CachedClip.missing of an entry whose frames never found anyone


@dataclass(frozen=True)
class CachedClip:
    """One labels row's cached skeletons in the asked layout, or `missing`: why there are none."""

    row: LabelRow
    keypoint: np.ndarray | None = None  # [M, T, V, C]
    keypoint_score: np.ndarray | None = None  # [M, T, V]
    fps: float | None = None
    missing: str = ""


def cached_clips(rows: Iterable[LabelRow], caches: Sequence[PoseCache], estimator: str, quality: str,
                 layout: Layout) -> Iterator[CachedClip]:
    """The `quality` tier skeletons `estimator` left in `caches` (the first cache that has an entry wins) for each
    row, converted to `layout`; a row without an entry, or whose entry never found a person, comes with `missing`
    set so the caller decides whether that is an error. Several entries of one tier are refused as in build."""
    finders = [EntryFinder(c) for c in caches]
    for row in rows:
        hit = next(((f.cache, e) for f in finders if (e := f.tier_entry(row.video, estimator, quality)) is not None),
                   None)
        if hit is None:
            yield CachedClip(row, missing=f"no --quality {quality} skeletons of {estimator} in the cache")
            continue
        pose = hit[0].load(hit[1]).result
        if not (pose.keypoint_score > 0).any():
            yield CachedClip(row, missing=NO_PERSON)
            continue
        kp, sc = convert(pose.keypoint, pose.keypoint_score, get_layout(pose.layout), layout)
        yield CachedClip(row, kp, sc, pose.fps)


def _differences(metas: list[dict]) -> str:
    """What differs between the settings of several entries of one video and tier, for the refusal."""
    sets = [m.get("settings") or {} for m in metas]
    keys = sorted({k for s in sets for k in s if len({repr(x.get(k)) for x in sets}) > 1})
    return "; ".join(f"{k}: {', '.join(repr(x.get(k)) for x in sets)}" for k in keys[:4]) or "same settings"


def _pick(video: Path, quality: str, hits: list[tuple[Path, dict]], estimator: str, cache_dir: Path) -> Path:
    """The one entry of `video`'s tier; several (e.g. extracted with and without --flip-average, or with another
    --pose-model) are refused: building must not pick one of them silently."""
    if len(hits) == 1:
        return hits[0][0]
    raise BadInput(f"{len(hits)} `--quality {quality}` entries of {estimator} with different settings "
                   f"({_differences([m for _, m in hits])}); `dataset build` takes one per video and tier: extract "
                   f"each variant into its own --cache (or delete the unwanted entries under {cache_dir})", video)


def _one_model(quality: str, models: dict[str, list[str]], labels_csv) -> None:
    if len(models) > 1:
        shown = ", ".join(f"{m} ({len(v)} video(s), e.g. {v[0]})" for m, v in sorted(models.items()))
        raise BadInput(f"the `--quality {quality}` entries mix models: {shown}; re-extract so that each tier "
                       f"comes from one model", labels_csv)


def _missing_reason(video: Path, found_any: list[dict], estimator: str) -> str:
    if not found_any and not video.is_file():
        return (f"{video.name} (no such file: looked for {video}; video paths are relative to the CSV's folder, with "
                f"their extension, and no cache entry was made from a file of that name)")
    others = sorted({str(m.get("estimator")) for m in found_any} - {estimator})
    if others:
        return f"{video.name} (has entries of --estimator {', '.join(others)} only)"
    return video.name


def build_paired(cache_dir: str | os.PathLike, labels_csv: str | os.PathLike, out_hq: str | os.PathLike,
                 out_lq: str | os.PathLike, layout: str | None = None, estimator: str = DEFAULT,
                 test_every: int = 5) -> tuple[SkeletonDataset, SkeletonDataset]:
    """Write the HQ and LQ pickles from the entries `pipeline extract --estimator E --quality high|low` wrote;
    every check runs before either file is written."""
    if Path(out_hq).resolve() == Path(out_lq).resolve():
        raise BadInput("--out-hq and --out-lq are the same file", out_hq)
    if test_every < 2:
        raise BadInput("test_every must be >= 2")
    estimator_class(estimator)
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        raise BadInput("cache folder not found", cache_dir)
    cache = PoseCache(cache_dir)
    rows = read_labels(labels_csv)
    classes, labels = class_index(rows, labels_csv)
    finder = EntryFinder(cache)
    missing: list[str] = []
    found: list[tuple[Path, Path]] = []
    models: dict[str, dict[str, list[str]]] = {"high": defaultdict(list), "low": defaultdict(list)}
    for r in rows:
        everything = finder.entries(r.video)
        ours = [(e, m) for e, m in everything if m.get("estimator") == estimator]
        by_tier = {q: [(e, m) for e, m in ours if m.get("quality") == q] for q in QUALITIES}
        if not all(by_tier.values()):
            lacking = "/".join(q for q in QUALITIES if not by_tier[q])
            missing.append(f"{_missing_reason(r.video, [m for _, m in everything], estimator)} [{lacking}]")
            continue
        pair = tuple(_pick(r.video, q, by_tier[q], estimator, cache_dir) for q in QUALITIES)
        for q, e in zip(QUALITIES, pair):
            models[q][entry_model(next(m for x, m in by_tier[q] if x == e))].append(r.video.name)
        found.append(pair)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise BadInput(f"{len(missing)} video(s) lack a {estimator} cache entry: {shown}; run `pipeline extract "
                       f"--estimator {estimator} --quality high` and `--quality low` on them with --cache "
                       f"{cache_dir}", labels_csv)
    for q in QUALITIES:
        _one_model(q, models[q], labels_csv)
    pairs = [(cache.load(hq), cache.load(lq)) for hq, lq in found]
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
