"""`pipeline dataset import|info|corrupt|export` end to end: the real console script for exit codes and messages,
click's CliRunner (in process, faster) for the rest."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from models.contract.errors import BadInput
from models.contract.skeleton import SkeletonDataset
from pipeline.cli import cli
from pipeline.data.pyskl_io import load_dataset, save_dataset
from tests.support.native_files import make_kinetics_folder, make_ntu_folder, ntu_text


def _console_script() -> list[str]:
    script = Path(sys.executable).parent / "pipeline"
    if script.is_file():
        return [str(script)]
    found = shutil.which("pipeline")
    return [found] if found else [sys.executable, "-m", "pipeline"]


def run_pipeline(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([*_console_script(), *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


def invoke(*args: str | Path) -> str:
    """Run a sub-command in process; return its stdout. Raises what the command raises (BadInput included)."""
    result = CliRunner().invoke(cli, [str(a) for a in args], standalone_mode=False, catch_exceptions=True)
    if result.exception is not None:
        raise result.exception
    return result.stdout


def assert_bad_input(proc: subprocess.CompletedProcess, path: Path | str, reason: str) -> None:
    assert proc.returncode == 2, proc.stderr
    # What a terminal shows: a progress bar redraws its line with \r and clears it before the error.
    lines = [line.rsplit("\r", 1)[-1].strip() for line in proc.stderr.split("\n")]
    lines = [line for line in lines if line]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"Error: {path}: ") and reason in lines[0], lines[0]
    assert "Traceback" not in proc.stderr


def test_penn_action_import_and_info(shared_data: Path, tmp_path: Path):
    out = tmp_path / "p.pkl"
    proc = run_pipeline("dataset", "import", "penn-action", shared_data / "penn_action" / "labels", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "2326 clips, 15 classes, layout penn13" in proc.stdout and "'train': 1258, 'test': 1068" in proc.stdout
    info = run_pipeline("dataset", "info", out)
    assert info.returncode == 0, info.stderr
    assert info.stdout.startswith(f"{out}: 2326 clips, 15 classes, layout penn13 (13 joints, 2D)")
    totals = info.stdout.strip().splitlines()[-1].split()
    assert totals == ["total", "1258", "1068", "2326"]
    assert "tennis_serve" in info.stdout and "frames per clip: min " in info.stdout
    summary = json.loads(invoke("dataset", "info", out, "--json"))
    assert summary["clips"] == 2326 and summary["splits"] == {"train": 1258, "test": 1068}
    assert summary["dims"] == 2 and len(summary["classes"]) == 15 and sum(summary["per_split"]["test"]) == 1068


def test_ntu_import_with_benchmark_and_layout(tmp_path: Path):
    folder = make_ntu_folder(tmp_path / "ntu")
    text = invoke("dataset", "import", "ntu", folder, "--out", tmp_path / "ntu.pkl", "--benchmark", "xview")
    assert "4 clips, 60 classes, layout ntu25" in text
    ds = load_dataset(tmp_path / "ntu.pkl")
    assert ds.split["train"] == ["S001C002P001R001A003", "S002C003P003R002A001"] and ds.extra["benchmark"] == "xview"
    assert ds.num_channels == 3 and ds.clips[1].num_persons == 2
    info = json.loads(invoke("dataset", "info", tmp_path / "ntu.pkl", "--json"))
    assert info["dims"] == 3 and info["max_persons"] == 2 and info["splits"]["xsub_train"] == 2
    # converted on import by joint name: NTU's head stands in for coco's nose; eyes and ears are missing
    invoke("dataset", "import", "ntu", folder, "--out", tmp_path / "coco.pkl", "--layout", "coco17")
    coco = load_dataset(tmp_path / "coco.pkl")
    assert coco.layout.name == "coco17" and coco.clips[0].keypoint.shape == (1, 12, 17, 3)
    np.testing.assert_array_equal(coco.clips[0].keypoint[..., 0, :], ds.clips[0].keypoint[..., 3, :])
    assert coco.clips[0].keypoint_score[..., 1:5].max() == 0


def test_kinetics_import(tmp_path: Path):
    folder = make_kinetics_folder(tmp_path / "kinetics-skeleton")
    text = invoke("dataset", "import", "kinetics-json", folder, "--out", tmp_path / "k.pkl")
    assert "5 clips, 3 classes, layout openpose18" in text and "skipped 1 files" in text
    ds = load_dataset(tmp_path / "k.pkl")
    assert ds.split == {"train": ["vid_a", "vid_b", "vid_c"], "test": ["vid_d", "vid_e"]}
    assert ds.extra["skipped"] == ["vid_empty"]


@pytest.fixture
def hq(tiny_dataset: SkeletonDataset, tmp_path: Path) -> Path:
    path = tmp_path / "hq.pkl"
    save_dataset(tiny_dataset, path)
    return path


def test_corrupt(hq: Path, tmp_path: Path):
    text = invoke("dataset", "corrupt", hq, "--spec", "drop=0.6,impute=3,jitter=0.02,framedrop=0.1",
                  "--seed", "3", "--out", tmp_path / "lq.pkl")
    assert "12 clips corrupted with drop=0.6,impute=3,jitter=0.02,framedrop=0.1 (seed 3)" in text
    a, b = load_dataset(hq), load_dataset(tmp_path / "lq.pkl")
    assert [c.frame_dir for c in a.clips] == [c.frame_dir for c in b.clips] and a.split == b.split
    assert [c.total_frames for c in a.clips] == [c.total_frames for c in b.clips]
    assert 0.4 < np.mean(np.concatenate([c.keypoint_score.ravel() for c in b.clips]) < 1) < 0.8
    invoke("dataset", "corrupt", hq, "--spec", "drop=0.6,impute=3,jitter=0.02,framedrop=0.1", "--seed", "3",
           "--out", tmp_path / "lq2.pkl")
    again = load_dataset(tmp_path / "lq2.pkl")
    assert all(np.array_equal(x.keypoint, y.keypoint) for x, y in zip(b.clips, again.clips))
    # `info` shows how the LQ pickle was made (the spec with its seed); HQ has none.
    spec = json.loads(invoke("dataset", "info", tmp_path / "lq.pkl", "--json"))["corruption"]
    assert spec.startswith("drop=0.6,impute=3,jitter=0.02,framedrop=0.1") and "seed=3" in spec
    assert json.loads(invoke("dataset", "info", hq, "--json"))["corruption"] is None


def test_export_to_pickle_in_another_layout_and_back(hq: Path, tmp_path: Path):
    assert "wrote" in invoke("dataset", "export", hq, "--out", tmp_path / "penn.pkl", "--layout", "penn13")
    penn = load_dataset(tmp_path / "penn.pkl")
    src = load_dataset(hq)
    assert penn.layout.name == "penn13" and penn.clips[0].keypoint.shape[2] == 13
    ls_src, ls_dst = src.layout.index("left_shoulder"), penn.layout.index("left_shoulder")
    np.testing.assert_array_equal(penn.clips[0].keypoint[..., ls_dst, :], src.clips[0].keypoint[..., ls_src, :])
    # export -> import is lossless
    invoke("dataset", "export", hq, "--out", tmp_path / "copy.pkl")
    invoke("dataset", "import", "pyskl", tmp_path / "copy.pkl", "--out", tmp_path / "back.pkl")
    back = load_dataset(tmp_path / "back.pkl")
    assert back.split == src.split and back.classes == src.classes and back.layout == src.layout
    for x, y in zip(src.clips, back.clips):
        assert x.frame_dir == y.frame_dir and x.label == y.label and x.img_shape == y.img_shape
        np.testing.assert_array_equal(x.keypoint, y.keypoint)
        np.testing.assert_array_equal(x.keypoint_score, y.keypoint_score)


def test_export_to_a_folder_of_npz(hq: Path, tmp_path: Path):
    out = tmp_path / "npz"
    assert "12 clips" in invoke("dataset", "export", hq, "--out", out)
    files = sorted(out.iterdir())
    assert len(files) == 12 and all(f.suffix == ".npz" for f in files)
    src = load_dataset(hq).by_name()
    with np.load(out / "c1_2.npz") as z:
        np.testing.assert_array_equal(z["keypoint"], src["c1_2"].keypoint)
        assert int(z["label"]) == 1 and str(z["class_name"]) == "class_1" and str(z["layout"]) == "coco17"
        assert z["keypoint_score"].shape == src["c1_2"].keypoint.shape[:3]
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(BadInput, match="exists and is not a folder"):
        invoke("dataset", "export", hq, "--out", tmp_path / "file.txt")


class _RunsCode:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_crafted_pickle_is_refused_by_every_command(tmp_path: Path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"split": {}, "annotations": [_RunsCode(f"touch {marker}")]}))
    for args, out in ((["dataset", "info", evil], None),
                      (["dataset", "import", "pyskl", evil, "--out", tmp_path / "o.pkl"], tmp_path / "o.pkl"),
                      (["dataset", "corrupt", evil, "--spec", "drop=0.5", "--out", tmp_path / "lq.pkl"],
                       tmp_path / "lq.pkl"),
                      (["dataset", "export", evil, "--out", tmp_path / "npz"], tmp_path / "npz")):
        proc = run_pipeline(*args)
        assert_bad_input(proc, evil, "refused to load")
        assert not marker.exists()
        assert out is None or not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.pkl"]


def test_bad_inputs_exit_2_with_one_line_and_no_output(tmp_path: Path):
    out = tmp_path / "out.pkl"
    missing = tmp_path / "nope"
    assert_bad_input(run_pipeline("dataset", "import", "penn-action", missing, "--out", out), missing, "not found")
    folder = make_ntu_folder(tmp_path / "ntu")
    assert_bad_input(run_pipeline("dataset", "import", "ntu", folder, "--out", out, "--layout", "coco18"),
                     "coco18", "unknown layout (built-in: coco17, blazepose33")
    bad_layout = tmp_path / "layout.json"
    bad_layout.write_text(json.dumps({"name": "x", "joints": ["a", "b"], "edges": [[0, 7]], "center": 0}))
    assert_bad_input(run_pipeline("dataset", "import", "ntu", folder, "--out", out, "--layout", bad_layout),
                     bad_layout, "edge (0, 7) out of range")
    bad_layout.write_text(json.dumps({"name": "x", "joints": ["a", "b"], "edges": [[0, 1]]}))
    assert_bad_input(run_pipeline("dataset", "import", "ntu", folder, "--out", out, "--layout", bad_layout),
                     bad_layout, "lacks center")
    truncated = folder / "S001C001P001R001A002.skeleton"
    truncated.write_text("\n".join(ntu_text([[("1", np.zeros((25, 3)))]] * 3).splitlines()[:20]))
    assert_bad_input(run_pipeline("dataset", "import", "ntu", folder, "--out", out), truncated,
                     "line 21: file ends where a joint line was expected")
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.pkl")]  # no temp file left either


def test_bad_inputs_in_process(hq: Path, tmp_path: Path):
    kin = tmp_path / "kin"
    kin.mkdir()
    (kin / "clip.json").write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(BadInput, match=f"{kin / 'clip.json'}: not a Kinetics-skeleton file"):
        invoke("dataset", "import", "kinetics-json", kin, "--out", tmp_path / "k.pkl")
    with pytest.raises(BadInput, match="unknown corruption key 'blur'"):
        invoke("dataset", "corrupt", hq, "--spec", "blur=2", "--out", tmp_path / "lq.pkl")
    with pytest.raises(BadInput, match="unknown layout"):
        invoke("dataset", "export", hq, "--out", tmp_path / "x.pkl", "--layout", "smpl24")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BadInput, match="no .skeleton files"):
        invoke("dataset", "import", "ntu", empty, "--out", tmp_path / "n.pkl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "hq.pkl", "kin"]


def test_usage_errors_exit_2(tmp_path: Path):
    proc = run_pipeline("dataset", "import", "ucf101", tmp_path, "--out", tmp_path / "x.pkl")
    assert proc.returncode == 2 and "ucf101" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_pipeline("dataset", "corrupt", tmp_path / "x.pkl", "--out", tmp_path / "y.pkl")
    assert proc.returncode == 2 and "--spec" in proc.stderr
