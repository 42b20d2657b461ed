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
from models.training.policy import DEFAULT_STEPS
from pipeline.data.pyskl_io import save_dataset
from pipeline.stages.distilling import make_request, run_distill
from tests.conftest import make_dataset
from tests.support.cli_support import run_pipeline

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


def test_every_method_gets_the_same_steps(hq_pkl: Path, teacher_pt: Path, tmp_path: Path):
    # The unlabeled pool lengthens a distillation student's epoch, not its budget: at --steps every method, the
    # plain student included, takes the same optimizer steps (its epochs differ).
    tiny = {k: v for k, v in TINY.items() if k != "epochs"} | {"steps": 5, "train_fraction": 0.5}
    runs = {method: run_distill(hq_pkl, tmp_path / method, make_request(method=method, **tiny), corrupt="drop=0.5",
                                teacher_ckpt=teacher_pt, progress=False) for method in ("none", "kd")}
    assert runs["kd"]["n_unlabeled"] == 3 and runs["none"]["n_unlabeled"] == 0
    assert runs["none"]["steps"] == runs["kd"]["steps"] == 5
    assert runs["none"]["epochs"] == 5 and runs["kd"]["epochs"] == 3  # 1 and 2 steps per epoch at batch 4
    assert runs["kd"]["budget"] == "--steps 5"
    # No budget given: the default steps, for the teacher too; --epochs is kept exactly when given.
    req = make_request()
    assert (req.student_train.steps, req.student_train.epochs) == (DEFAULT_STEPS, None)
    assert (req.teacher_train.steps, req.teacher_train.epochs) == (DEFAULT_STEPS, None)
    req = make_request(epochs=3)
    assert (req.student_train.epochs, req.student_train.steps, req.teacher_train.epochs) == (3, None, 3)
    req = make_request(steps=40, teacher_epochs=2)
    assert (req.teacher_train.epochs, req.teacher_train.steps) == (2, None)
    with pytest.raises(BadInput, match="not both"):
        make_request(epochs=3, steps=40)


def test_config_file_sets_what_the_command_line_sets(tmp_path: Path):
    cfg = tmp_path / "d.toml"
    cfg.write_text('method = "kd"\nsteps = 40\nstudent-width = 0.5\ndepth = 4\nlength = 16\nscore = false\n'
                   'grad-revision = false\nweights = "kd=0.5"\ntrain_fraction = 0.5\nfeatures = ["joint", "bone"]\n'
                   'batch-size = 8\nseed = 2\n')
    from_file = make_request(cfg)
    from_cli = make_request(method="kd", steps=40, student_width=0.5, depth=4, length=16, use_score=False,
                            grad_revision=False, weights="kd=0.5", train_fraction=0.5, features="joint,bone",
                            batch_size=8, seed=2)
    assert from_file.to_dict() == from_cli.to_dict()
    assert from_file.distill.grad_revision == "none" and from_file.distill.kd_weight == 0.5
    assert from_file.teacher_model.depth == 4 and from_file.teacher_train.batch_size == 8
    # The command line wins over the file.
    assert make_request(cfg, method="rkd", steps=None).distill.method == "rkd"
    cfg.write_text("stpes = 40\n")
    with pytest.raises(BadInput, match="unknown option 'stpes'"):
        make_request(cfg)
    with pytest.raises(TypeError, match="stpes"):
        make_request(stpes=40)


def test_cli_config_overwrite_and_plain_progress(hq_pkl: Path, teacher_pt: Path, tmp_path: Path):
    cfg = tmp_path / "d.toml"
    cfg.write_text('method = "kd"\nsteps = 3\nstudent-width = 0.1\ndepth = 2\nlength = 8\nbatch-size = 4\n')
    out = tmp_path / "run"
    args = ["distill", "--hq", hq_pkl, "--corrupt", "drop=0.5", "--teacher", teacher_pt, "--config", cfg,
            "--out", out]
    r = run_pipeline(*args)  # stderr is a pipe: plain progress lines, no bar frames
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr and "student (kd): step 3/3 (100%)" in r.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "kd" and m["steps"] == 3 and m["request"]["student_model"]["width"] == 0.1
    r = run_pipeline(*args, "--quiet")
    assert r.returncode == 2 and "--overwrite to start over" in r.stderr
    r = run_pipeline(*args, "--quiet", "--overwrite", "--steps", "2")
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "metrics.json").read_text())["steps"] == 2


def test_student_init_teacher_starts_from_the_teachers_weights(hq_pkl: Path, teacher_pt: Path, tmp_path: Path):
    teacher, _ = load_checkpoint(teacher_pt)
    same = {**TINY, "student_width": 0.15, "use_score": False, "lr": 1e-9}
    run_distill(hq_pkl, tmp_path / "init", make_request(method="kd", student_init="teacher", **same),
                corrupt="drop=0.5", teacher_ckpt=teacher_pt, progress=False)
    student, _ = load_checkpoint(tmp_path / "init" / "student.pt")
    t = dict(teacher.named_parameters())
    for name, p in student.named_parameters():  # a learning rate of 1e-9 leaves the copied weights where they were
        torch.testing.assert_close(p, t[name], atol=1e-6, rtol=0)
    run_distill(hq_pkl, tmp_path / "rand", make_request(method="kd", **same), corrupt="drop=0.5",
                teacher_ckpt=teacher_pt, progress=False)
    drawn, _ = load_checkpoint(tmp_path / "rand" / "student.pt")
    assert any(not torch.allclose(p, t[n]) for n, p in drawn.named_parameters())


@pytest.mark.parametrize("change", [{"student_width": 0.1, "use_score": False}, {"student_width": 0.15}])
def test_student_init_teacher_refuses_another_architecture(change: dict, hq_pkl: Path, teacher_pt: Path,
                                                           tmp_path: Path):
    with pytest.raises(BadInput, match="--student-init teacher needs the teacher's architecture"):
        run_distill(hq_pkl, tmp_path / "run", make_request(method="kd", student_init="teacher", **{**TINY, **change}),
                    corrupt="drop=0.5", teacher_ckpt=teacher_pt, progress=False)


def test_unknown_student_init_is_bad_input():
    with pytest.raises(BadInput, match="student-init must be one of random, teacher"):
        make_request(student_init="fitnet")
