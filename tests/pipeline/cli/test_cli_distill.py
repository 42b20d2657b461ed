"""`pipeline distill` end to end on small datasets the tests make: the metrics contract, every method,
a reused teacher, a custom 3D layout, and the pairing error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.checkpoint import load_checkpoint
from models.contract.errors import BadInput
from pipeline.data.pyskl_io import save_dataset
from pipeline.stages.distilling import make_request, run_distill
from tests.conftest import make_dataset

TINY = dict(epochs=1, teacher_epochs=1, student_width=0.1, teacher_width=0.15, depth=2, length=8, batch_size=4)


@pytest.fixture(scope="module")
def hq_pkl(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("data") / "hq.pkl"
    save_dataset(make_dataset(n_per_class=4), p)
    return p


@pytest.fixture(scope="module")
def teacher_pt(hq_pkl: Path, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("teacher_src")
    run_distill(hq_pkl, run, make_request(method="none", **TINY), corrupt="drop=0.5", progress=False)
    return run / "teacher.pt"


def test_cli_writes_the_contract(hq_pkl: Path, tmp_path: Path):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "pipeline", "distill", "--hq", str(hq_pkl), "--corrupt",
                        "drop=0.6,impute=3,jitter=0.02,framedrop=0.1", "--method", "skd", "--epochs", "2",
                        "--teacher-epochs", "2", "--student-width", "0.1", "--teacher-width", "0.15", "--depth", "2",
                        "--length", "8", "--batch-size", "4", "--seed", "3", "--quiet", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert {"method", "seed", "classes", "teacher", "student", "epochs", "train_seconds"} <= set(m)
    assert m["method"] == "skd" and m["seed"] == 3 and m["epochs"] == 2
    assert m["classes"] == ["class_0", "class_1", "class_2"]
    for v in (m["teacher"]["hq_top1"], m["teacher"]["lq_top1"], m["student"]["lq_top1"], m["student"]["lq_top5"]):
        assert 0.0 <= v <= 1.0
    assert m["student"]["lq_top5"] == 1.0  # 3 classes: the true one is always among the top 5
    # The default skd: the edge term on a middle block too, its revision decided on the tail.
    assert set(m["revision"]) == {"conflict/kd", "conflict/node", "conflict/edge", "conflict/mid_edge"}
    assert m["grad_revision"] == "tail"
    for name in ("teacher.pt", "student.pt", "student_metrics.csv", "student_curves.png", "comparison.png"):
        assert (out / name).is_file(), name
    student, meta = load_checkpoint(out / "student.pt")
    assert meta["classes"] == m["classes"] and meta["layout"].name == "coco17"
    # The teacher learnt from ground truth (every score 1.0), so it takes no score channel; the student does.
    _, tmeta = load_checkpoint(out / "teacher.pt")
    assert not tmeta["input_config"].use_score and meta["input_config"].use_score
    assert "wrote" in r.stdout and r.stderr.count("Error") == 0
    # A finished run is not overwritten.
    r2 = subprocess.run([sys.executable, "-m", "pipeline", "distill", "--hq", str(hq_pkl), "--corrupt", "drop=0.5",
                         "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert r2.returncode == 2 and "already holds a finished run" in r2.stderr


@pytest.mark.parametrize("method,revision", [("none", "none"), ("kd", "global"), ("fitnet", "global"),
                                             ("rkd", "global"), ("at", "global"), ("skd", "none"),
                                             ("skd", "tail"), ("skd-authors", "per_tensor"),
                                             ("dkd", "none")])
def test_every_method_with_a_reused_teacher(method: str, revision: str, hq_pkl: Path, teacher_pt: Path,
                                           tmp_path: Path):
    out = tmp_path / method
    req = make_request(method=method, grad_revision=revision, tau=2.0, weights="kd=0.5", **TINY)
    m = run_distill(hq_pkl, out, req, corrupt="drop=0.5", teacher_ckpt=teacher_pt, progress=False)
    assert m["method"] == method
    src = torch.load(teacher_pt, weights_only=True)["state_dict"]
    copy = torch.load(out / "teacher.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(src[k], copy[k]) for k in src)  # reused as it is, not retrained
    terms = {k.removeprefix("loss_") for k in (out / "student_metrics.csv").read_text().splitlines()[0].split(",")
             if k.startswith("loss_")}
    expected = {"none": set(), "kd": {"kd"}, "fitnet": {"fitnet"}, "rkd": {"rkd_dist", "rkd_angle"}, "at": {"at"},
                "skd": {"kd", "node", "edge", "mid_edge"}, "skd-authors": {"kd", "node", "edge"},
                "dkd": {"dkd"}}[method] | {"ce"}
    assert terms == expected


def test_custom_3d_layout(tmp_path: Path):
    layout = tmp_path / "stick6.json"
    layout.write_text(json.dumps({"name": "stick6", "joints": ["head", "neck", "pelvis", "left_hand",
                                                               "right_hand", "feet"],
                                  "edges": [[0, 1], [1, 2], [1, 3], [1, 4], [2, 5]], "center": 1}))
    ds = make_dataset(layout=str(layout), c=3, m=2)
    save_dataset(ds, tmp_path / "d3.pkl")
    m = run_distill(tmp_path / "d3.pkl", tmp_path / "run", make_request(method="skd", **TINY), corrupt="drop=0.3",
                    progress=False)
    assert m["layout"] == "stick6"
    _, meta = load_checkpoint(tmp_path / "run" / "student.pt")
    assert meta["coord_dims"] == 3 and meta["layout"].num_joints == 6


def test_no_score_student_takes_no_score_channel(hq_pkl: Path, teacher_pt: Path, tmp_path: Path):
    # The deployed estimator's scores need not look like simulated LQ's; --no-score drops the channel.
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "pipeline", "distill", "--hq", str(hq_pkl), "--corrupt", "drop=0.5",
                        "--teacher", str(teacher_pt), "--method", "none", "--epochs", "1", "--student-width", "0.1",
                        "--depth", "2", "--length", "8", "--batch-size", "4", "--no-score", "--quiet",
                        "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    _, meta = load_checkpoint(out / "student.pt")
    assert not meta["input_config"].use_score
    assert meta["model_config"].in_channels == 2  # joint x, y only


def test_unpaired_pickles_are_bad_input(hq_pkl: Path, tmp_path: Path):
    other = make_dataset(n_per_class=3)
    save_dataset(other, tmp_path / "lq.pkl")
    with pytest.raises(BadInput, match="do not pair"):
        run_distill(hq_pkl, tmp_path / "run", make_request(**TINY), lq_path=tmp_path / "lq.pkl", progress=False)
    with pytest.raises(BadInput, match="exactly one of"):
        run_distill(hq_pkl, tmp_path / "run", make_request(**TINY), progress=False)


def test_bad_weights_are_bad_input():
    with pytest.raises(BadInput, match="unknown loss 'nodes'"):
        make_request(weights="nodes=1")
    with pytest.raises(BadInput, match="finite number"):
        make_request(weights="kd=-1")


def test_resume_refuses_a_folder_without_a_run(hq_pkl: Path, tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BadInput, match="nothing to resume"):
        run_distill(hq_pkl, empty, make_request(method="none", **TINY), corrupt="drop=0.5", progress=False,
                    resume=True)


def test_bf16_distillation_runs_the_shared_loop(hq_pkl: Path, teacher_pt: Path, tmp_path: Path):
    m = run_distill(hq_pkl, tmp_path / "bf16", make_request(method="skd", precision="bf16", **TINY),
                    corrupt="drop=0.5", teacher_ckpt=teacher_pt, progress=False)
    assert m["request"]["student_train"]["precision"] == "bf16"
    assert 0.0 <= m["student"]["lq_top1"] <= 1.0 and m["skipped_steps"] == 0


def test_unlabeled_pairs(hq_pkl: Path, teacher_pt: Path, tmp_path: Path):
    # The train clips --train-fraction leaves out are the unlabeled pool by default; --no-unlabeled-rest drops it.
    tiny = {**TINY, "train_fraction": 0.5}
    m = run_distill(hq_pkl, tmp_path / "rest", make_request(method="kd", **tiny), corrupt="drop=0.5",
                    teacher_ckpt=teacher_pt, progress=False)
    assert m["n_train"] == 6 and m["n_unlabeled"] == 3  # 9 train clips: 2 labeled per class
    m = run_distill(hq_pkl, tmp_path / "norest", make_request(method="kd", unlabeled_rest=False, **tiny),
                    corrupt="drop=0.5", teacher_ckpt=teacher_pt, progress=False)
    assert m["n_unlabeled"] == 0
    # The plain student has nothing to learn from them.
    m = run_distill(hq_pkl, tmp_path / "none", make_request(method="none", **tiny), corrupt="drop=0.5",
                    teacher_ckpt=teacher_pt, progress=False)
    assert m["n_unlabeled"] == 0
    # An unlabeled pickle: its LQ corrupted with --corrupt, or given; with --lq it must be given.
    u = tmp_path / "u.pkl"
    save_dataset(make_dataset(n_per_class=2, seed=9), u)
    m = run_distill(hq_pkl, tmp_path / "file", make_request(method="skd", **TINY), corrupt="drop=0.5",
                    teacher_ckpt=teacher_pt, progress=False, unlabeled=u)
    assert m["n_unlabeled"] == 6
    m = run_distill(hq_pkl, tmp_path / "file_lq", make_request(method="kd", **TINY), corrupt="drop=0.5",
                    teacher_ckpt=teacher_pt, progress=False, unlabeled=u, unlabeled_lq=u)
    assert m["n_unlabeled"] == 6
    with pytest.raises(BadInput, match="--unlabeled-lq"):
        run_distill(hq_pkl, tmp_path / "bad", make_request(method="kd", **TINY), lq_path=hq_pkl,
                    teacher_ckpt=teacher_pt, progress=False, unlabeled=u)
