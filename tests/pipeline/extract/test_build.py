"""`pipeline dataset build`: cache entries -> paired HQ/LQ pickles (entries written directly, no estimator)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from estimators.base import PoseResult
from models.contract.errors import BadInput
from models.contract.layouts import get_layout
from pipeline.data.labels import read_labels
from pipeline.data.pyskl_io import load_dataset
from pipeline.extract.build import build_paired, cached_clips
from pipeline.extract.cache import PoseCache, hash_file

V = 33


def add_entry(cache: PoseCache, video: Path, quality: str, t: int, m: int = 1, seed: int = 0,
              estimator: str = "blazepose", model: str | None = None, **settings) -> Path:
    """An entry as `extract --estimator ESTIMATOR --quality QUALITY` files it (model: heavy for high, lite for low)."""
    rng = np.random.default_rng(seed)
    kp = rng.uniform(0, 300, (m, t, V, 2)).astype(np.float32)
    sc = rng.uniform(0.5, 1, (m, t, V)).astype(np.float32)
    h = hash_file(video)
    model = model or ("heavy" if quality == "high" else "lite")
    settings = {"quality": quality, "model": model, **settings}
    entry = cache.entry_path(h, estimator, settings)
    cache.save(entry, PoseResult(kp, sc, "blazepose33", (240, 320), 25.0),
               {"video_hash": h, "estimator": estimator, "model": f"BlazePose {model}", "settings": settings,
                "quality": quality, "source": video.name})
    return entry


@pytest.fixture
def setup(tmp_path: Path):
    vids = tmp_path / "videos"
    vids.mkdir()
    cache = PoseCache(tmp_path / "cache")
    frames = {"jump1": 10, "jump2": 12, "wave1": 8}
    for i, (name, t) in enumerate(frames.items()):
        v = vids / f"{name}.mp4"
        v.write_bytes(f"video bytes {name}".encode())  # build only hashes the files
        add_entry(cache, v, "high", t, m=2 if name == "jump2" else 1, seed=i)
        add_entry(cache, v, "low", t, seed=10 + i)
    return tmp_path, vids, cache, frames


def test_round_trip_with_layout_conversion(setup):
    root, vids, cache, frames = setup
    labels = root / "labels.csv"
    labels.write_text("videos/jump1.mp4,jump,train\nvideos/wave1.mp4,wave,test\n"
                      f"{vids / 'jump2.mp4'},jump,test\n")
    hq, lq = build_paired(root / "cache", labels, root / "hq.pkl", root / "lq.pkl", layout="penn13")
    for ds in (load_dataset(root / "hq.pkl"), load_dataset(root / "lq.pkl")):
        assert [c.frame_dir for c in ds.clips] == ["jump1", "wave1", "jump2"]
        assert [c.total_frames for c in ds.clips] == [10, 8, 12]
        assert ds.classes == ["jump", "wave"] and [c.label for c in ds.clips] == [0, 1, 0]
        assert ds.split == {"train": ["jump1"], "test": ["wave1", "jump2"]}
        assert ds.layout.name == "penn13" and ds.clips[0].keypoint.shape == (1, 10, 13, 2)
        assert ds.clips[0].img_shape == (240, 320) and ds.clips[0].fps == 25.0
    # HQ found two persons in jump2, LQ one: both are padded to the same shape (the extra person missing).
    h2, l2 = load_dataset(root / "hq.pkl").clips[2], load_dataset(root / "lq.pkl").clips[2]
    assert h2.keypoint.shape == l2.keypoint.shape == (2, 12, 13, 2)
    assert not l2.keypoint_score[1].any()
    # penn13 head comes from BlazePose's nose (joint 0), by name.
    high = [cache.load(e) for e in cache.entries_for(hash_file(vids / "jump1.mp4"))]
    src = next(e.result for e in high if e.meta["quality"] == "high")
    np.testing.assert_allclose(hq.clips[0].keypoint[0, :, 0], src.keypoint[0, :, 0])


def test_found_by_recorded_name_when_the_video_is_gone(setup):
    root, vids, cache, frames = setup
    labels = root / "labels.csv"
    labels.write_text("video,label\nvideos/jump1.mp4,jump\nvideos/wave1.mp4,wave\n")
    (vids / "jump1.mp4").unlink()
    hq, lq = build_paired(root / "cache", labels, root / "hq.pkl", root / "lq.pkl")
    assert [c.total_frames for c in hq.clips] == [10, 8] and hq.layout.name == "blazepose33"
    assert hq.split == {"train": ["jump1", "wave1"]}


def test_default_split_every_nth_clip_per_class(tmp_path: Path):
    vids = tmp_path / "v"
    vids.mkdir()
    cache = PoseCache(tmp_path / "cache")
    rows = []
    for i in range(6):
        v = vids / f"c{i}.mp4"
        v.write_bytes(bytes([i]) * 10)
        add_entry(cache, v, "high", 4)
        add_entry(cache, v, "low", 4)
        rows.append(f"v/c{i}.mp4,{i % 2}")
    (tmp_path / "l.csv").write_text("\n".join(rows))
    hq, _ = build_paired(tmp_path / "cache", tmp_path / "l.csv", tmp_path / "h.pkl", tmp_path / "l.pkl",
                         test_every=3)
    assert hq.classes == ["0", "1"]  # numeric labels are class indices
    assert hq.split == {"train": ["c0", "c1", "c2", "c3"], "test": ["c4", "c5"]}


def test_missing_entry_or_mismatched_frames_write_nothing(setup):
    root, vids, cache, frames = setup
    extra = vids / "new.mp4"
    extra.write_bytes(b"never extracted")
    labels = root / "labels.csv"
    labels.write_text("videos/jump1.mp4,jump\nvideos/new.mp4,jump\n")
    with pytest.raises(BadInput, match=r"1 video\(s\) lack a blazepose cache entry: new.mp4 \[high/low\]; run "
                                       r"`pipeline extract --estimator blazepose --quality high`"):
        build_paired(root / "cache", labels, root / "hq.pkl", root / "lq.pkl")
    add_entry(cache, extra, "high", 5)
    add_entry(cache, extra, "low", 6)
    with pytest.raises(BadInput, match="HQ has 5 frames and LQ 6"):
        build_paired(root / "cache", labels, root / "hq.pkl", root / "lq.pkl")
    assert not (root / "hq.pkl").exists() and not (root / "lq.pkl").exists()


def test_bad_labels(tmp_path: Path):
    p = tmp_path / "l.csv"
    p.write_text("a.mp4\n")
    with pytest.raises(BadInput, match="line 1: expected video,label"):
        read_labels(p)
    p.write_text("a.mp4,x,train\nb.mp4,y\n")
    with pytest.raises(BadInput, match="some rows have a split"):
        read_labels(p)
    p.write_text("video,label\n")
    with pytest.raises(BadInput, match="no rows"):
        read_labels(p)
    with pytest.raises(BadInput, match="not found"):
        read_labels(tmp_path / "none.csv")
    with pytest.raises(BadInput, match="same file"):
        build_paired(tmp_path, p, tmp_path / "x.pkl", tmp_path / "x.pkl")


def test_the_estimator_is_the_registry_name_and_others_are_named(setup):
    """Entries of another estimator are not taken; the error says which estimator the video has entries of."""
    root, vids, cache, frames = setup
    labels = root / "labels.csv"
    labels.write_text("videos/jump1.mp4,jump\n")
    other = vids / "other.mp4"
    other.write_bytes(b"openpose only")
    add_entry(cache, other, "high", 5, estimator="openpose-lite")
    add_entry(cache, other, "low", 5, estimator="openpose-lite")
    labels.write_text("videos/jump1.mp4,jump\nvideos/other.mp4,jump\n")
    with pytest.raises(BadInput, match=r"other.mp4 \(has entries of --estimator openpose-lite only\) \[high/low\]"):
        build_paired(root / "cache", labels, root / "hq.pkl", root / "lq.pkl")
    labels.write_text("videos/other.mp4,jump\n")
    hq, _ = build_paired(root / "cache", labels, root / "hq.pkl", root / "lq.pkl", estimator="openpose-lite")
    assert [c.total_frames for c in hq.clips] == [5]
    with pytest.raises(BadInput, match="unknown estimator 'nope'"):
        build_paired(root / "cache", labels, root / "hq.pkl", root / "lq.pkl", estimator="nope")


def test_several_entries_of_one_tier_are_refused_not_the_newest_taken(setup):
    root, vids, cache, frames = setup
    labels = root / "labels.csv"
    labels.write_text("videos/jump1.mp4,jump\nvideos/wave1.mp4,wave\n")
    add_entry(cache, vids / "jump1.mp4", "high", 10, model="full")  # `extract --quality high --pose-model full`
    with pytest.raises(BadInput, match=r"jump1.mp4: 2 `--quality high` entries of blazepose with different "
                                       r"settings \(model: 'heavy', 'full'|model: 'full', 'heavy'"):
        build_paired(root / "cache", labels, root / "hq.pkl", root / "lq.pkl")
    assert not (root / "hq.pkl").exists()


def test_tiers_from_different_models_across_videos_are_refused(setup):
    root, vids, cache, frames = setup
    labels = root / "labels.csv"
    labels.write_text("videos/jump1.mp4,jump\nvideos/wave1.mp4,wave\n")
    entry = next(e for e in cache.entries_for(hash_file(vids / "wave1.mp4")) if cache.read_meta(e)["quality"] == "high")
    entry.unlink()
    add_entry(cache, vids / "wave1.mp4", "high", 8, model="full")
    with pytest.raises(BadInput, match=r"the `--quality high` entries mix models: BlazePose full \(1 video\(s\), "
                                       r"e.g. wave1.mp4\), BlazePose heavy \(1 video\(s\), e.g. jump1.mp4\)"):
        build_paired(root / "cache", labels, root / "hq.pkl", root / "lq.pkl")


def test_bare_names_in_the_labels_say_what_was_looked_for(setup):
    root, vids, cache, frames = setup
    labels = root / "labels.csv"
    labels.write_text("jump1,jump\n")  # neither relative to the CSV nor with its extension
    with pytest.raises(BadInput, match=r"jump1 \(no such file: looked for .*/jump1; video paths are relative to "
                                       r"the CSV's folder, with their extension"):
        build_paired(root / "cache", labels, root / "hq.pkl", root / "lq.pkl")


def test_entries_written_before_the_registry_names_stay_readable(setup):
    """Before estimators were named by the registry, BlazePose heavy/lite entries were filed under `mediapipe`
    with no "model" in their metadata: `--estimator mediapipe` still pairs them, by the model in their settings,
    and `--estimator blazepose` names where they are."""
    root, vids, cache, frames = setup
    old = vids / "old.mp4"
    old.write_bytes(b"extracted long ago")
    for q, model in (("high", "heavy"), ("low", "lite")):
        h = hash_file(old)
        settings = {"model": model, "quality": q}
        rng = np.random.default_rng(0)
        cache.save(cache.entry_path(h, "mediapipe", settings),
                   PoseResult(rng.uniform(0, 9, (1, 6, V, 2)).astype(np.float32), np.ones((1, 6, V), np.float32),
                              "blazepose33", (240, 320), 25.0),
                   {"video_hash": h, "estimator": "mediapipe", "settings": settings, "quality": q, "source": old.name})
    labels = root / "labels.csv"
    labels.write_text("videos/old.mp4,jump\n")
    with pytest.raises(BadInput, match=r"has entries of --estimator mediapipe only"):
        build_paired(root / "cache", labels, root / "hq.pkl", root / "lq.pkl")
    hq, lq = build_paired(root / "cache", labels, root / "hq.pkl", root / "lq.pkl", estimator="mediapipe")
    assert hq.clips[0].total_frames == lq.clips[0].total_frames == 6


def test_cached_clips_second_cache_missing_entries_and_no_person(setup):
    root, vids, cache, frames = setup
    other = PoseCache(root / "cache2")
    extra = vids / "kick1.mp4"
    extra.write_bytes(b"video bytes kick1")
    add_entry(other, extra, "low", 6, seed=3)
    empty = vids / "idle1.mp4"
    empty.write_bytes(b"video bytes idle1")
    e = add_entry(cache, empty, "low", 5)
    r = cache.load(e).result
    cache.save(e, PoseResult(r.keypoint, np.zeros_like(r.keypoint_score), r.layout, r.img_shape, r.fps),
               cache.read_meta(e))
    labels = root / "labels.csv"
    labels.write_text("videos/jump1.mp4,jump,dev\nvideos/kick1.mp4,kick,dev\nvideos/idle1.mp4,idle,dev\n"
                      "videos/gone.mp4,jump,dev\n")
    got = list(cached_clips(read_labels(labels), [cache, other], "blazepose", "low", get_layout("penn13")))
    assert [c.row.video.name for c in got] == ["jump1.mp4", "kick1.mp4", "idle1.mp4", "gone.mp4"]
    assert got[0].keypoint.shape == (1, 10, 13, 2) and got[0].fps == 25.0 and not got[0].missing
    assert got[1].keypoint.shape == (1, 6, 13, 2)  # found in the second cache
    assert got[2].missing == "no person" and got[2].keypoint is None
    assert got[3].missing.startswith("no --quality low skeletons of blazepose")
    # the low tier, not the high one: jump1's low entry was drawn with seed 10
    low = next(cache.load(x).result for x in cache.entries_for(hash_file(vids / "jump1.mp4"))
               if cache.read_meta(x)["quality"] == "low")
    np.testing.assert_allclose(got[0].keypoint[0, :, 0], low.keypoint[0, :, 0])
    assert list(cached_clips(read_labels(labels), [cache], "openpose", "low", get_layout("penn13")))[0].missing
