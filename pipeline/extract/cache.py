"""The skeleton cache: one `.npz` per (video content, estimator, estimator settings) under `data_cache/`.

Layout: `ROOT/poses/<estimator>/<hash[:2]>/<video hash>_<settings digest>.npz`. The video is identified by a
BLAKE2b hash of its bytes (so renaming or moving a video keeps its entry), the settings by a digest of the
estimator's `settings()`. Entries are written atomically (temp file + rename) and each is built under an
exclusive `flock` on its own `.lock` file, so two extractions into one cache neither corrupt an entry nor
compute it twice. Entry names come only from hex digests and a checked estimator name: nothing a video or a
CSV says can place a file outside the cache folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from estimators.base import PoseResult
from models.contract.atomic import atomic_write_bytes, no_room, remove_stale_temps, write_failed
from models.contract.errors import BadInput
from models.contract.jsonio import loads_json
from models.contract.paths import vet_input

DEFAULT_ROOT = Path("data_cache")
# What np.load and the metadata checks raise for a damaged or foreign entry (a pickled object array is refused
# by allow_pickle=False with a ValueError).
_UNREADABLE = (BadInput, OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile)
FORMAT_VERSION = 1
REMAKE = "`pipeline extract` on its video makes it again"  # it replaces a damaged entry
_HEX = re.compile(r"[0-9a-f]{16,128}")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def hash_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """BLAKE2b-160 of the file's bytes, read in 1 MiB chunks (memory does not depend on file size)."""
    h = hashlib.blake2b(digest_size=20)
    vet_input(path, "video")  # a FIFO or /dev/zero would block or never end
    try:
        with open(path, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    except FileNotFoundError:
        raise BadInput("file not found", path) from None
    except IsADirectoryError:
        raise BadInput("is a folder, not a video", path) from None
    except OSError as e:
        raise BadInput(f"cannot read ({e.strerror})", path) from None
    return h.hexdigest()


def settings_digest(estimator: str, settings: dict) -> str:
    blob = json.dumps({"estimator": estimator, "settings": settings, "format": FORMAT_VERSION}, sort_keys=True)
    return hashlib.blake2b(blob.encode(), digest_size=8).hexdigest()


@dataclass
class CacheEntry:
    path: Path
    meta: dict           # video_hash, estimator, settings, quality, source, format
    result: PoseResult


class PoseCache:
    def __init__(self, root: str | os.PathLike = DEFAULT_ROOT):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise BadInput("cache path exists and is not a folder", self.root)

    def entry_path(self, video_hash: str, estimator: str, settings: dict) -> Path:
        if not _HEX.fullmatch(video_hash):
            raise ValueError(f"not a hex digest: {video_hash!r}")
        if not _NAME.fullmatch(estimator):
            raise ValueError(f"bad estimator name {estimator!r}")
        name = f"{video_hash}_{settings_digest(estimator, settings)}.npz"
        p = self.root / "poses" / estimator / video_hash[:2] / name
        # Belt and braces: the parts above cannot contain separators or '..', but check the result anyway.
        if not p.resolve().is_relative_to(self.root.resolve()):
            raise ValueError(f"cache entry {p} would leave the cache folder")
        return p

    @contextlib.contextmanager
    def lock(self, entry: Path) -> Iterator[None]:
        """Exclusive lock for building `entry` (blocks while another process holds it)."""
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            fh = open(entry.with_suffix(".lock"), "a+")
        except OSError as e:
            if no_room(e):
                raise write_failed(entry, e) from None
            raise
        with fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            # Temp files of this entry left by a process that was killed mid-write: nobody else can be writing
            # this entry while we hold its lock, so they are stale.
            remove_stale_temps(entry)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def save(self, entry: Path, result: PoseResult, meta: dict) -> None:
        meta = dict(meta, layout=result.layout, img_shape=list(result.img_shape), fps=result.fps,
                    timing=result.timing, format=FORMAT_VERSION)
        buf = io.BytesIO()  # (in memory first: a zip cut short by a full disk is not left half-closed)
        np.savez(buf, keypoint=result.keypoint.astype(np.float32),
                 keypoint_score=result.keypoint_score.astype(np.float32), meta=np.array(json.dumps(meta)))
        atomic_write_bytes(entry, buf.getvalue())

    def load(self, entry: Path) -> CacheEntry:
        vet_input(entry, "cache-entry")
        try:
            with np.load(entry, allow_pickle=False) as z:
                meta = loads_json(str(z["meta"]), entry, "cache entry metadata")
                kp, sc = z["keypoint"], z["keypoint_score"]
            res = PoseResult(kp, sc, meta["layout"], tuple(meta["img_shape"]), float(meta["fps"]),
                             meta.get("timing", {}))
        except _UNREADABLE as e:
            raise BadInput(f"unreadable cache entry ({type(e).__name__}: {' '.join(str(e).split())[:160]}); "
                           f"{REMAKE}", entry) from None
        return CacheEntry(entry, meta, res)

    def damage(self, entry: Path) -> str | None:
        """None when `entry` loads completely, else why not (the entry is then rebuilt, not skipped)."""
        try:
            self.load(entry)
        except BadInput as e:
            return str(e).removeprefix(f"{entry}: ").removesuffix(f"; {REMAKE}")
        return None

    def read_meta(self, entry: Path) -> dict:
        vet_input(entry, "cache-entry")
        try:
            with np.load(entry, allow_pickle=False) as z:
                meta = loads_json(str(z["meta"]), entry, "cache entry metadata")
        except _UNREADABLE as e:
            raise BadInput(f"unreadable cache entry ({type(e).__name__}: {' '.join(str(e).split())[:160]}); "
                           f"{REMAKE}", entry) from None
        if not isinstance(meta, dict):
            raise BadInput(f"unreadable cache entry (its metadata is not a JSON object); {REMAKE}",
                           entry)
        return meta

    def entries_for(self, video_hash: str) -> list[Path]:
        """All entries (any estimator, any settings) of one video."""
        if not _HEX.fullmatch(video_hash):
            raise ValueError(f"not a hex digest: {video_hash!r}")
        base = self.root / "poses"
        if not base.is_dir():
            return []
        return sorted(base.glob(f"*/{video_hash[:2]}/{video_hash}_*.npz"))

    def all_entries(self) -> list[Path]:
        base = self.root / "poses"
        return sorted(base.glob("*/*/*.npz")) if base.is_dir() else []
