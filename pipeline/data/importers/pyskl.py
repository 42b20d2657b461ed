"""An existing pyskl pickle as an import source (validated and re-written, e.g. to change layout)."""

from __future__ import annotations

from pipeline.data.importers.base import Importer
from pipeline.data.pyskl_io import load_dataset

IMPORTER = Importer(help="an existing pyskl pickle (validated and re-written, e.g. to change layout)",
                    load=load_dataset)
