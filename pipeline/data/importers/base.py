"""What an importer is, for the `IMPORTERS` dict: a loader of a dataset's native files and a line of help."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from models.contract.skeleton import SkeletonDataset


@dataclass(frozen=True)
class Importer:
    help: str  # one line for `pipeline dataset import --help`
    load: Callable[..., SkeletonDataset]  # (src, **the options it takes) -> dataset
    options: tuple[str, ...] = ()  # the `dataset import` options it takes (e.g. "benchmark")
