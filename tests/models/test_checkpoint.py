"""Checkpoints: self-describing, plain data (weights_only loads), atomic; foreign or broken files refused."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from models.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from models.contract.errors import BadInput
from models.contract.layouts import Layout, get_layout
from models.net.stgcn import STGCN, STGCNConfig
from models.net.transforms import InputConfig, in_channels


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _saved(path, layout: str | Layout = "penn13", classes: int = 4, dims: int = 2):
    lay = get_layout(layout)
    icfg = InputConfig(length=8, features=("joint", "bone"), max_persons=1)
    mcfg = STGCNConfig(in_channels(icfg, dims), classes, lay.to_dict(), width=0.125, max_persons=1)
    torch.manual_seed(0)
    model = STGCN(mcfg).eval()
    save_checkpoint(path, model, layout=lay, classes=[f"k{i}" for i in range(classes)], model_config=mcfg,
                    input_config=icfg, extra={"note": "test", "metrics": {"top1": 0.5}})
    return model, lay, icfg


def test_round_trip_gives_the_same_model(tmp_path) -> None:
    p = tmp_path / "m.pt"
    model, lay, icfg = _saved(p)
    raw = torch.load(p, weights_only=True)  # plain data only
    assert raw["classes"] == ["k0", "k1", "k2", "k3"] and raw["coord_dims"] == 2
    loaded, meta = load_checkpoint(p, expect_layout=lay, expect_classes=4, expect_channels=2)
    assert meta["layout"] == lay and meta["input_config"] == icfg
    assert meta["model_config"].width == 0.125 and meta["extra"]["note"] == "test"
    assert not loaded.training
    x = torch.randn(2, 1, 8, 13, 5)
    with torch.no_grad():
        assert torch.allclose(model(x), loaded(x), atol=1e-6)
    assert [f.name for f in tmp_path.iterdir()] == ["m.pt"]  # no temp files left


def test_custom_layout_round_trip(tmp_path) -> None:
    lay = Layout.from_dict({"name": "tri", "joints": ["a", "b", "c"], "edges": [[0, 1], [1, 2]], "center": 1})
    _saved(tmp_path / "m.pt", layout=lay, dims=3)
    _, meta = load_checkpoint(tmp_path / "m.pt", expect_layout=lay, expect_channels=3)
    assert meta["layout"].joints == ("a", "b", "c")


def test_other_layout_class_count_or_channels_refused(tmp_path) -> None:
    p = tmp_path / "m.pt"
    _saved(p)
    with pytest.raises(BadInput, match=r"m\.pt: checkpoint is for layout penn13 \(13 joints\), the data is coco17"):
        load_checkpoint(p, expect_layout=get_layout("coco17"))
    with pytest.raises(BadInput, match="4 classes, the data has 15"):
        load_checkpoint(p, expect_classes=15)
    with pytest.raises(BadInput, match="2D coordinates, the data has 3D"):
        load_checkpoint(p, expect_channels=3)
    # Same joints in a different order is another layout.
    pen = get_layout("penn13")
    shuffled = Layout("penn13", pen.joints[::-1], tuple((12 - i, 12 - j) for i, j in pen.edges), 12 - pen.center)
    with pytest.raises(BadInput, match="layout"):
        load_checkpoint(p, expect_layout=shuffled)


@pytest.mark.parametrize("content,reason", [
    (b"", "empty file"),
    (b"\x00garbage\xff" * 10, "not a readable checkpoint"),
])
def test_broken_files_refused(tmp_path, content: bytes, reason: str) -> None:
    p = tmp_path / "bad.pt"
    p.write_bytes(content)
    with pytest.raises(BadInput, match=reason) as e:
        load_checkpoint(p)
    assert "\n" not in str(e.value) and "bad.pt" in str(e.value)


def test_truncated_checkpoint_refused(tmp_path) -> None:
    p = tmp_path / "m.pt"
    _saved(p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInput, match="m.pt: not a readable checkpoint"):
        load_checkpoint(p)


def test_not_a_checkpoint_refused(tmp_path) -> None:
    p = tmp_path / "t.pt"
    torch.save({"weights": torch.zeros(3)}, p)
    with pytest.raises(BadInput, match="not a pipeline model checkpoint"):
        load_checkpoint(p)
    with pytest.raises(BadInput, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(BadInput, match="directory"):
        load_checkpoint(tmp_path)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_code_in_a_checkpoint_is_never_run(tmp_path) -> None:
    p = tmp_path / "evil.pt"
    torch.save({"format": "x", "payload": _Evil()}, p, pickle_module=pickle)
    with pytest.raises(BadInput, match="refused to load"):
        read_checkpoint(p)


def test_weights_that_do_not_fit_refused(tmp_path) -> None:
    p = tmp_path / "m.pt"
    _saved(p)
    raw = torch.load(p, weights_only=True)
    raw["model_config"]["width"] = 0.25
    torch.save(raw, p)
    with pytest.raises(BadInput, match="do not fit"):
        load_checkpoint(p)


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch) -> None:
    p = tmp_path / "m.pt"
    _saved(p)
    before = p.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        _saved(p, classes=7)
    assert p.read_bytes() == before
    assert [f.name for f in tmp_path.iterdir()] == ["m.pt"]
