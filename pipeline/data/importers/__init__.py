"""Dataset importers: each turns a public dataset's native files into a SkeletonDataset.

`IMPORTERS` is the one list of them (kind -> `Importer`); `pipeline dataset import` reads its choices and help
from it. Adding an importer = its module here (defining `IMPORTER`) plus one line below.
"""

from pipeline.data.importers import kinetics_json, msr_action3d, ntu, openpose_json, penn_action, pyskl
from pipeline.data.importers.base import Importer

IMPORTERS: dict[str, Importer] = {
    "penn-action": penn_action.IMPORTER,
    "ntu": ntu.IMPORTER,
    "kinetics-json": kinetics_json.IMPORTER,
    "openpose-json": openpose_json.IMPORTER,
    "pyskl": pyskl.IMPORTER,
    "msr-action3d": msr_action3d.IMPORTER,
}
