"""IMPORTERS is the one list of dataset importers: `dataset import` reads its choices and help from it."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from models.contract.errors import BadInput
from pipeline.cli.dataset import import_cmd
from pipeline.data.catalog import import_dataset
from pipeline.data.importers import IMPORTERS
from pipeline.data.pyskl_io import save_dataset
from tests.conftest import make_dataset


def test_cli_choices_and_help_are_the_dict():
    kind = next(p for p in import_cmd.params if p.name == "kind")
    assert list(kind.type.choices) == list(IMPORTERS)
    for name, imp in IMPORTERS.items():
        assert f"{name:<14} {imp.help}" in import_cmd.help


def test_dispatch_through_the_dict(tmp_path: Path):
    p = tmp_path / "d.pkl"
    save_dataset(make_dataset(), p)
    ds = import_dataset("pyskl", p)
    assert len(ds.clips) == 12
    with pytest.raises(BadInput, match="unknown dataset kind"):
        import_dataset("nope", p)


def test_options_reach_only_the_importers_that_declare_them(tmp_path: Path):
    p = tmp_path / "d.pkl"
    save_dataset(make_dataset(), p)
    with pytest.raises(BadInput, match=r"^--labels is for openpose-json, not pyskl$"):
        import_dataset("pyskl", p, labels=tmp_path / "l.csv")
    with pytest.raises(BadInput, match=r"^--keypoints is for pyskl, not ntu$"):
        import_dataset("ntu", tmp_path, keypoints=tmp_path)
    with pytest.raises(BadInput, match=r"^--source-layout is for pyskl, not kinetics-json$"):
        import_dataset("kinetics-json", tmp_path, source_layout="coco17")
    for name, imp in IMPORTERS.items():  # each declared option is a keyword its load function takes
        assert set(imp.options) <= set(inspect.signature(imp.load).parameters), name
