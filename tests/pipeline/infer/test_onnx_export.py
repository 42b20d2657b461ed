"""`pipeline export`: ONNX parity with PyTorch, dynamic batch, metadata, atomic writes, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from models.checkpoint import load_checkpoint
from models.contract.errors import BadInput
from pipeline.cli import cli
from pipeline.infer.onnx_export import METADATA_KEY, export_onnx, input_shape, load_onnx
from pipeline.infer.prediction import OnnxPredictor, TorchPredictor, classify
from tests.support.run_files import CLASSES, tiny_checkpoint


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("onnx")
    ckpt = tiny_checkpoint(d / "tiny.pt", seed=3)
    export_onnx(ckpt, d / "tiny.onnx")
    return ckpt, d / "tiny.onnx"


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_onnxruntime_matches_pytorch(exported, batch: int):
    ckpt, path = exported
    model, meta = load_checkpoint(ckpt)
    session, _ = load_onnx(path)
    x = np.random.default_rng(batch).normal(0, 1, size=input_shape(meta, batch)).astype(np.float32)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    got = session.run(None, {"skeleton": x})[0]
    assert got.shape == (batch, len(CLASSES))
    assert np.abs(ref).max() > 1.0  # scrambled weights: logits far from the near-zero of an untrained head
    assert np.abs(got - ref).max() <= 1e-4


def test_metadata_round_trip(exported):
    ckpt, path = exported
    _, meta = load_checkpoint(ckpt)
    _, m = load_onnx(path)
    assert m["layout"] == meta["layout"] and m["classes"] == meta["classes"] == CLASSES
    assert m["coord_dims"] == 2 and m["input_config"] == meta["input_config"]
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == ["skeleton"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == list(input_shape(meta)[1:])
    assert json.loads({p.key: p.value for p in proto.metadata_props}[METADATA_KEY])["source"] == "tiny.pt"


def test_run_with_onnx_gives_the_same_probabilities(exported):
    ckpt, path = exported
    rng = np.random.default_rng(0)
    kp = rng.uniform(0, 300, size=(1, 90, 13, 2)).astype(np.float32)
    score = rng.uniform(0.2, 1, size=(1, 90, 13)).astype(np.float32)
    a = classify(kp, score, 30.0, TorchPredictor(ckpt), window=1.0)
    b = classify(kp, score, 30.0, OnnxPredictor(path), window=1.0)
    assert a.bounds == b.bounds and len(a.bounds) == 5
    np.testing.assert_allclose(b.probs, a.probs, atol=1e-5)


def test_cli_export_and_failures_leave_no_file(tmp_path: Path):
    ckpt = tiny_checkpoint(tmp_path / "m.pt")
    out = tmp_path / "m.onnx"
    res = CliRunner().invoke(cli, ["export", "--model", str(ckpt), "--onnx", str(out)])
    assert res.exit_code == 0, res.output
    assert res.output.startswith(f"wrote {out} (") and "max abs diff" in res.output
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(BadInput, match="not a readable checkpoint"):
        export_onnx(junk, tmp_path / "junk.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.pt", "m.onnx", "m.pt"]


def test_a_failed_export_leaves_no_file(tmp_path: Path, monkeypatch):
    ckpt = tiny_checkpoint(tmp_path / "m.pt")
    import pipeline.infer.onnx_export as ox

    monkeypatch.setattr(ox, "parity", lambda *a, **k: 0.5)  # as if the graph computed something else
    with pytest.raises(RuntimeError, match="differ from PyTorch's"):
        export_onnx(ckpt, tmp_path / "m.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_bad_onnx_files(tmp_path: Path, exported):
    text = tmp_path / "a.onnx"
    text.write_text("not a model")
    with pytest.raises(BadInput, match="a.onnx: not a readable ONNX model"):
        load_onnx(text)
    with pytest.raises(BadInput, match="ONNX file not found"):
        load_onnx(tmp_path / "missing.onnx")
    proto = onnx.load(str(exported[1]))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(BadInput, match="without this pipeline's metadata"):
        load_onnx(bare)
