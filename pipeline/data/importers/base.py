"""What an importer is, for the `IMPORTERS` dict: a loader of a dataset's native files and a line of help."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from models.contract.skeleton import SkeletonDataset


@dataclass(frozen=True)
class Importer:
    help: str  # one line for `pipeline dataset import --help`
    load: Callable[..., SkeletonDataset]  # (src, **the options it takes) -> dataset
    # The `dataset import` options `load` takes as keywords (e.g. "benchmark"); "layout" (a Layout) for one that
    # reads --layout itself instead of being converted to it afterwards.
    options: tuple[str, ...] = ()
