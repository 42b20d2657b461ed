"""The real path for every estimator that can be installed here, as a user runs it (the `pipeline` console
script): `extract --quality high` and `--quality low` on short cuts of real videos -> `dataset build` -> a tiny
`distill` -> `run --model` the student with the same estimator. Each estimator skips, naming its install
command, when its weights or packages are missing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from estimators import weights
from estimators.mmpose_hrnet import mmpose_available
from tests.conftest import SHARED
from tests.support.cli_support import run_pipeline, visible_lines
from tests.support.model_files import SHARED_MODELS, need_blazepose
from tests.support.video_files import cut

FRAMES = 24  # per clip: a second of video, enough for the tiny student's 8-frame windows
CLIPS = {"tai_chi": ("tai_chi.mp4", (0, 40)), "arm_wrestling": ("arm_wrestling.mp4", (0, 40))}


def _openpose_options(monkeypatch, tmp_path: Path) -> list[str]:
    if not weights.state("openpose-lite").installed:
        src = SHARED_MODELS / "openpose_lite"
        if not src.is_dir():
            pytest.skip(f"openpose-lite is not installed: {weights.install_hint('openpose-lite')}")
        monkeypatch.setenv("SKD_MODELS_DIR", str(tmp_path / "models"))  # the subprocesses inherit it
        weights.install(src, ["openpose-lite"])
    return []


def _blazepose_options(monkeypatch, tmp_path: Path) -> list[str]:
    need_blazepose("heavy")
    need_blazepose("lite")
    return []


def _mmpose_options(monkeypatch, tmp_path: Path) -> list[str]:
    ok, why = mmpose_available()
    if not ok:
        pytest.skip(f"mmpose does not import ({why}): pip install -e '.[mmpose]' as the README says")
    ckpt = os.environ.get("SKD_MMPOSE_CHECKPOINT")
    if not ckpt or not Path(ckpt).is_file():
        pytest.skip("no trained MMPose checkpoint: set SKD_MMPOSE_CHECKPOINT to an HRNet-W32 COCO .pth (e.g. "
                    "MMPose's hrnet_w32_coco_256x192-c78dce93_20200708.pth)")
    return ["--mmpose-checkpoint", ckpt, "--threads", "1"]


# estimator name, how to make it available (its CLI options), what `run` must be told (the student's fast tier)
ESTIMATOR_CASES = {
    "blazepose": _blazepose_options,                       # heavy (high) and lite (low)
    "mediapipe": lambda mp, tmp: [],                       # the wheel's full model in both tiers
    "openpose-lite": _openpose_options,
    "mmpose": _mmpose_options,
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"real data folder {SHARED} is absent (it sits beside the repo in development and CI only; "
                    f"SKD_SHARED_DIR names another place)")
    shared = SHARED
    folder = tmp_path_factory.mktemp("clips")
    rows = []
    for label, (name, starts) in CLIPS.items():
        for s in starts:
            cut(shared / "videos" / name, folder / f"{label}_{s}.mp4", FRAMES, start=s)
            rows.append(f"{label}_{s}.mp4,{label}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


def _ok(proc) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.parametrize("name", list(ESTIMATOR_CASES))
def test_extract_build_distill_run(name: str, clips: Path, tmp_path: Path, monkeypatch):
    options = ESTIMATOR_CASES[name](monkeypatch, tmp_path)
    cache, run = tmp_path / "cache", tmp_path / "run"
    for q in ("high", "low"):
        proc = run_pipeline("extract", clips, "--quality", q, "--estimator", name, *options, "--cache", cache,
                            "--no-progress", timeout=600)
        out = _ok(proc)
        assert out.startswith("done        4"), out
        # nothing from the estimator's native side (TFLite, absl) reaches the user, on any video
        assert visible_lines(proc.stderr) == [], proc.stderr
    assert {p.name for p in (cache / "poses").iterdir()} == {name}  # filed under the registry's name
    out = _ok(run_pipeline("dataset", "build", "--cache", cache, "--labels", clips / "labels.csv", "--estimator",
                           name, "--out-hq", tmp_path / "hq.pkl", "--out-lq", tmp_path / "lq.pkl",
                           "--test-every", "2"))
    assert "4 clips, 2 classes" in out, out
    _ok(run_pipeline("distill", "--hq", tmp_path / "hq.pkl", "--lq", tmp_path / "lq.pkl", "--epochs", "1",
                     "--teacher-epochs", "1", "--student-width", "0.1", "--teacher-width", "0.1", "--depth", "2",
                     "--length", "8", "--batch-size", "2", "--threads", "1", "--quiet", "--out", run,
                     timeout=600))
    assert (run / "student.pt").is_file()
    run_opts = [o for o in options if o != "--threads" and not o.isdigit()]
    proc = run_pipeline("run", clips / "tai_chi_0.mp4", "--estimator", name, *run_opts, "--model",
                        run / "student.pt", "--json", "--no-progress", "--threads", "1", timeout=600)
    rec = json.loads(_ok(proc))
    assert rec["frames"] == FRAMES and rec["persons"] >= 1
    assert {lab["label"] for lab in rec["labels"]} == set(CLIPS)
    assert "note:" not in proc.stderr  # the estimator asked for ran, no fallback
