"""`pipeline train` / `pipeline eval` end to end on a tiny pickle: the run folder, --json, --resume, refusals."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from models.contract.errors import BadInput
from pipeline.data.pyskl_io import save_dataset
from tests.conftest import make_dataset
from tests.support.cli_support import invoke

SMALL = ["--epochs", "2", "--width", "0.125", "--depth", "4", "--length", "8", "--batch-size", "4", "--quiet",
         "--threads", "1"]


pytestmark = pytest.mark.usefixtures("restore_torch_threads")  # the commands set 1 thread here


def run_pipeline(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = [ln.rsplit("\r", 1)[-1].strip() for ln in proc.stderr.split("\n")]
    lines = [ln for ln in lines if ln]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.fixture
def tiny_pkl(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.pkl"
    save_dataset(make_dataset(n_per_class=4, num_classes=3, m=2, t=20), p)
    return p


def test_train_then_eval_json(tiny_pkl: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    out = invoke("train", "--data", tiny_pkl, "--out", run, "--features", "joint,bone", "--test-clips", "2", *SMALL)
    assert "model.pt" in out
    for name in ("model.pt", "metrics.json", "metrics.csv", "curves.png", "confusion.png", "last.pt"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"classes", "test_top1", "test_top5", "epochs", "train_seconds"} <= set(metrics)
    assert metrics["classes"] == ["class_0", "class_1", "class_2"] and metrics["epochs"] == 2
    assert metrics["input_config"]["features"] == ["joint", "bone"] and metrics["input_config"]["max_persons"] == 2
    res = json.loads(invoke("eval", "--model", run / "model.pt", "--data", tiny_pkl, "--json", "--threads", "1"))
    assert set(res) == {"top1", "top5", "n"} and res["n"] == 3
    assert res["top1"] == pytest.approx(metrics["test_top1"])  # same windows, same model
    train_res = json.loads(invoke("eval", "--model", run / "model.pt", "--data", tiny_pkl, "--split", "train",
                                  "--json"))
    assert train_res["n"] == 9
    assert "top-1" in invoke("eval", "--model", run / "model.pt", "--data", tiny_pkl)


def test_resume_and_run_folder_guards(tiny_pkl: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    invoke("train", "--data", tiny_pkl, "--out", run, *SMALL[:-2], "--epochs", "1")
    with pytest.raises(BadInput, match="already holds a run"):
        invoke("train", "--data", tiny_pkl, "--out", run, *SMALL)
    with pytest.raises(BadInput, match="started with lr=0.1"):
        invoke("train", "--data", tiny_pkl, "--out", run, "--resume", "--lr", "0.5", "--quiet")
    invoke("train", "--data", tiny_pkl, "--out", run, "--resume", "--epochs", "2", "--quiet")
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2
    invoke("train", "--data", tiny_pkl, "--out", run, "--overwrite", *SMALL)
    with pytest.raises(BadInput, match="nothing to resume"):
        invoke("train", "--data", tiny_pkl, "--out", tmp_path / "new", "--resume", "--quiet")


def test_config_file(tiny_pkl: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('epochs = 1\nwidth = 0.125\ndepth = 3\nlength = 6\nfeatures = ["joint", "motion"]\n'
                   'batch-size = 4\nflip = false\n')
    run = tmp_path / "run"
    invoke("train", "--data", tiny_pkl, "--out", run, "--config", cfg, "--quiet", "--threads", "1")
    m = json.loads((run / "metrics.json").read_text())
    assert m["epochs"] == 1 and m["model_config"]["depth"] == 3 and m["train_config"]["precision"] == "fp32"
    assert m["input_config"]["features"] == ["joint", "motion"] and m["input_config"]["aug_flip"] is False
    bf = tmp_path / "bf"
    invoke("train", "--data", tiny_pkl, "--out", bf, "--config", cfg, "--precision", "bf16", "--quiet")
    assert json.loads((bf / "metrics.json").read_text())["train_config"]["precision"] == "bf16"
    cfg.write_text("epochz = 1\n")
    with pytest.raises(BadInput, match="unknown option 'epochz'"):
        invoke("train", "--data", tiny_pkl, "--out", tmp_path / "r2", "--config", cfg)


def test_bad_inputs_one_line_exit_2(tiny_pkl: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    invoke("train", "--data", tiny_pkl, "--out", run, *SMALL[:-2], "--epochs", "1")
    # A checkpoint for another layout (17-joint coco17 model on 13-joint penn13 data).
    penn = tmp_path / "penn.pkl"
    save_dataset(make_dataset(n_per_class=2, num_classes=3, layout="penn13"), penn)
    line = one_error_line(run_pipeline("eval", "--model", run / "model.pt", "--data", penn, "--json"))
    assert line.startswith(f"Error: {run / 'model.pt'}: checkpoint is for layout coco17"), line
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(BadInput, match="empty file"):
        invoke("eval", "--model", empty, "--data", tiny_pkl)
    # Another class count, and 3D data for a 2D model.
    five = tmp_path / "five.pkl"
    save_dataset(make_dataset(n_per_class=2, num_classes=5), five)
    with pytest.raises(BadInput, match="3 classes, the data has 5"):
        invoke("eval", "--model", run / "model.pt", "--data", five)
    three_d = tmp_path / "3d.pkl"
    save_dataset(make_dataset(n_per_class=2, num_classes=3, c=3), three_d)
    with pytest.raises(BadInput, match="2D coordinates, the data has 3D"):
        invoke("eval", "--model", run / "model.pt", "--data", three_d)
    with pytest.raises(BadInput, match="no 'val' split"):
        invoke("train", "--data", tiny_pkl, "--out", tmp_path / "r3", "--test-split", "val", *SMALL)
    with pytest.raises(BadInput, match="features"):
        invoke("train", "--data", tiny_pkl, "--out", tmp_path / "r4", "--features", "joint,speed", *SMALL)
    assert not (tmp_path / "r3").exists() and not (tmp_path / "r4").exists()
