"""What an importer is, for the `IMPORTERS` dict: a loader of a dataset's native files and a line of help."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from models.contract.skeleton import SkeletonDataset

# Frames one imported clip may have: a count beyond this (55 minutes at 30 fps) is a broken or hostile file, not a
# clip (a split-keypoint annotation of 1.3 KB asking for 10^7 frames would make a 1.9 GiB pickle).
MAX_FRAMES = 100_000


@dataclass(frozen=True)
class Importer:
    help: str  # one line for `pipeline dataset import --help`
    load: Callable[..., SkeletonDataset]  # (src, **the options it takes) -> dataset
    # The `dataset import` options `load` takes as keywords (e.g. "benchmark"); "layout" (a Layout) for one that
    # reads --layout itself instead of being converted to it afterwards.
    options: tuple[str, ...] = ()
