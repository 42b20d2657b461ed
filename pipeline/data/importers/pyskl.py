"""An existing pyskl pickle as an import source (validated and re-written with its layout stored).

The reading, including PYSKL's split-keypoint annotations (`--keypoints DIR`), is in `pyskl_split.py`.
"""

from __future__ import annotations

from pipeline.data.importers.base import Importer
from pipeline.data.importers.pyskl_split import import_pyskl

IMPORTER = Importer(help="a pyskl pickle, re-written with its layout stored (--layout if it stores none); "
                         "split-keypoint ones need --keypoints DIR",
                    load=import_pyskl, options=("layout", "source_layout", "keypoints", "max_persons"))
