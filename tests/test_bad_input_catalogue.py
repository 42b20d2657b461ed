"""The bad-input catalogue: every kind of bad input of the design (docs/RELIABILITY.md lists them), each run
through the real `pipeline` console script in a subprocess.

Each row: the command line, a setup that writes the bad input into a fresh folder, and the expected message.
For every row the test checks the bad-input contract:
- exit code 2, no traceback, exactly one line on stderr, starting `Error: ` and naming the file and the reason
  (`pipeline extract` goes on past bad videos: it lists each as `  PATH: reason` in its summary on stdout and
  ends with the one line `Error: N of M videos failed`);
- nothing half-written: the folder holds exactly the files it held before (no output, no cache entry, no temp
  file; a cache's per-entry `.lock` file is allowed), and a code-running payload left no trace.
Rows for sub-commands that have not landed yet (`run`, `export`) are skipped until `pipeline --help` lists them.

Good input in awkward places (unicode and spaces in every path) and the non-finite keypoints that are masked
rather than refused are checked after the table: those commands must succeed.
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from pipeline.data.pyskl_io import load_dataset, save_dataset
from tests.conftest import make_dataset
from tests.support.cli_support import LANDED, new_files, one_error_line, run_pipeline, snapshot, visible_lines
from tests.support.native_files import make_ntu_folder
from tests.support.video_files import stick_figure_frames, truncate, write_video

PWNED = "pwned"  # a code-running payload would create this file in the case folder


# --------------------------------------------------------------------------------------------- input writers

class RunsCode:
    """Unpickling this runs a shell command: the classic pickle payload."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def tiny_pkl(path: Path, layout: str = "coco17", num_classes: int = 3, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_dataset(make_dataset(n_per_class=2, num_classes=num_classes, layout=layout, t=8, **kw), path)
    return path


def write_pickle(path: Path, obj: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj))
    return path


def ann(**over) -> dict:
    a = {"frame_dir": "a", "label": 0, "keypoint": np.zeros((1, 4, 17, 2), np.float32)}
    a.update(over)
    return a


def checkpoint(path: Path, layout: str = "coco17", num_classes: int = 3) -> Path:
    """A real, untrained checkpoint of a tiny ST-GCN (what `pipeline train` writes, minus the training)."""
    from models.checkpoint import save_checkpoint
    from models.contract.layouts import get_layout
    from models.net.transforms import InputConfig
    from pipeline.stages.training import ModelOptions, build_model

    lay, icfg = get_layout(layout), InputConfig(length=8, max_persons=1)
    model, mcfg = build_model(lay, num_classes, 2, icfg, ModelOptions(width=0.125, depth=1))
    save_checkpoint(path, model, layout=lay, classes=num_classes, model_config=mcfg, input_config=icfg)
    return path


def code_checkpoint(path: Path) -> Path:
    import torch

    torch.save({"state_dict": RunsCode(f"touch {path.parent / PWNED}")}, path)
    return path


def empty(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def unreadable(path: Path) -> Path:
    path.chmod(0)
    return path


def labels_csv(d: Path, rows: str = "video,label\nv.mp4,a\n") -> Path:
    (d / "cache").mkdir(exist_ok=True)
    (d / "labels.csv").write_text(rows)
    return d / "labels.csv"


def corrupt_cache_entry(d: Path) -> None:
    """A video and a damaged cache entry for it (a truncated zip where an .npz entry should be)."""
    from pipeline.extract.cache import hash_file

    video = d / "v.mp4"
    video.write_bytes(b"any bytes: the cache finds entries by content hash")
    h = hash_file(video)
    entry = d / "cache" / "poses" / "mediapipe" / h[:2] / f"{h}_0123456789abcdef.npz"
    entry.parent.mkdir(parents=True)
    entry.write_bytes(b"PK\x03\x04" + b"\x00" * 20)
    labels_csv(d)


def pickled_object_cache_entry(d: Path) -> None:
    """A cache entry whose arrays are pickled objects: np.load(allow_pickle=False) must refuse it, not run it."""
    from pipeline.extract.cache import hash_file

    video = d / "v.mp4"
    video.write_bytes(b"video bytes")
    h = hash_file(video)
    entry = d / "cache" / "poses" / "mediapipe" / h[:2] / f"{h}_0123456789abcdef.npz"
    entry.parent.mkdir(parents=True)
    payload = np.array([RunsCode(f"touch {d / PWNED}")], dtype=object)
    with open(entry, "wb") as fh:
        np.savez(fh, meta=payload, keypoint=payload, keypoint_score=payload)
    labels_csv(d)


def pair(d: Path, rename: bool = False, frames: bool = False) -> None:
    """HQ and LQ pickles of the same clips, except one renamed or one with a different frame count."""
    hq = make_dataset(n_per_class=2, num_classes=3, t=8)
    save_dataset(hq, d / "hq.pkl")
    lq = make_dataset(n_per_class=2, num_classes=3, t=8, seed=1)
    if rename:
        lq.clips[0].frame_dir = "someone_else"
        lq.split = {k: ["someone_else" if n == "c0_0" else n for n in v] for k, v in lq.split.items()}
    if frames:
        c = lq.clips[1]
        c.keypoint, c.keypoint_score = c.keypoint[:, :5], c.keypoint_score[:, :5]
    save_dataset(lq, d / "lq.pkl")


def stick_video(path: Path, n: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_video(path, stick_figure_frames(n))


def truncated_avi(d: Path) -> None:
    # MJPG in AVI opens and decodes until the cut: the container announces 20 frames, about half decode.
    full = write_video(d / "full.avi", stick_figure_frames(20), fourcc="MJPG")
    truncate(full, d / "cut.avi", 0.5)
    full.unlink()


def truncated_mp4(d: Path) -> None:
    full = stick_video(d / "full.mp4", 10)
    truncate(full, d / "cut.mp4", 0.5)  # an mp4 cut in half loses its index (moov): it does not open
    full.unlink()


# --- special files and hostile checkpoints (issue 13)

def fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def null_device(path: Path) -> Path:
    """A character device node like /dev/null (1, 3); PermissionError where this user may not make one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return path


def symlink(path: Path, target: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    return path


def unix_socket(path: Path) -> Path:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))  # the socket file stays after close
    sock.close()
    return path


def edited_checkpoint(path: Path, **model_config) -> Path:
    """A real checkpoint whose stored model configuration asks for something else (a crafted file)."""
    import torch

    checkpoint(path)
    obj = torch.load(path, weights_only=True)
    obj["model_config"].update(model_config)
    torch.save(obj, path)
    return path


def nan_checkpoint(path: Path) -> Path:
    import torch

    checkpoint(path)
    obj = torch.load(path, weights_only=True)
    name = next(k for k, v in obj["state_dict"].items() if v.is_floating_point() and v.numel() > 1)
    obj["state_dict"][name][0] = float("nan")
    torch.save(obj, path)
    return path


def built_cache(d: Path) -> None:
    """A cache holding HQ and LQ entries for two labelled videos, as `pipeline extract` would leave it, so that
    `dataset build` would succeed but for its outputs."""
    from estimators.base import PoseResult
    from pipeline.extract.cache import PoseCache, hash_file

    cache = PoseCache(d / "cache")
    rng = np.random.default_rng(0)
    for name in ("v1.mp4", "v2.mp4", "v3.mp4", "v4.mp4"):
        (d / name).write_bytes(name.encode() * 10)
        h = hash_file(d / name)
        for q in ("high", "low"):
            kp = (rng.random((1, 8, 33, 2)) * 100).astype(np.float32)
            res = PoseResult(kp, np.full((1, 8, 33), 0.9, np.float32), "blazepose33", (480, 640), 30.0)
            entry = cache.entry_path(h, "mediapipe", {"quality": q})
            entry.parent.mkdir(parents=True, exist_ok=True)
            cache.save(entry, res, {"video_hash": h, "estimator": "mediapipe", "settings": {"quality": q},
                                    "quality": q, "source": name})
    (d / "labels.csv").write_text("video,label,split\nv1.mp4,a,train\nv2.mp4,b,train\nv3.mp4,a,test\n"
                                  "v4.mp4,b,test\n")


def penn_fifo(d: Path) -> None:
    _penn_mat(d / "labels" / "0001.mat")
    fifo(d / "labels" / "0002.mat")


def toml_file(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------------ the table

@dataclass
class Case:
    id: str
    argv: tuple[str, ...]          # "{d}" is the case folder
    setup: Callable[[Path], object]
    expect: str                    # a substring of the message
    names: str                     # the path the message must name ("{d}" substituted)
    item: str                      # which entry of the bad-input list it covers (docs/RELIABILITY.md)
    extract: bool = False          # `pipeline extract` reports per video on stdout, then one summary line
    needs: tuple[str, ...] = field(default_factory=tuple)  # "unreadable": skipped where chmod 000 cannot stop reads
    #                                                        "mknod": skipped where this user cannot make a device
    keep: tuple[str, ...] = field(default_factory=tuple)   # special files ("{d}/...") that must stay what they are

    @property
    def command(self) -> str:
        return self.argv[0]


# BlazePose full (in the wheel): these rows are about bad videos, and must not depend on lite/heavy being installed
# (without them the default estimator stops first, with the install command: tests/estimators/test_blazepose_tiers.py)
EXTRACT = ("--quality", "low", "--estimator", "mediapipe", "--cache", "{d}/cache", "--no-progress")
FULL = ("--pose-model", "full")  # likewise for run: no fallback note beside the one error line when lite is absent
SMALL_TRAIN = ("--epochs", "1", "--width", "0.125", "--depth", "1", "--length", "8", "--quiet", "--threads", "1")

CASES = [
    # --- pyskl pickles (any command that reads one: dataset info/import/corrupt/export, train, eval, distill)
    Case("pickle-missing", ("dataset", "info", "{d}/nope.pkl"), lambda d: None, "file not found", "{d}/nope.pkl",
         "missing file"),
    Case("pickle-0-bytes", ("dataset", "info", "{d}/e.pkl"), lambda d: empty(d / "e.pkl"), "empty file",
         "{d}/e.pkl", "empty file"),
    Case("pickle-truncated", ("dataset", "corrupt", "{d}/t.pkl", "--spec", "drop=0.5", "--out", "{d}/lq.pkl"),
         lambda d: (d / "t.pkl").write_bytes(pickle.dumps({"annotations": [ann()]})[:60]),
         "not a readable pickle", "{d}/t.pkl", "truncated file"),
    Case("pickle-not-a-pickle", ("dataset", "info", "{d}/text.pkl"),
         lambda d: (d / "text.pkl").write_text("name,label\nclip1,3\n"), "not a readable pickle", "{d}/text.pkl",
         "corrupt / wrong-format file"),
    Case("pickle-is-a-directory", ("dataset", "info", "{d}/dir.pkl"), lambda d: (d / "dir.pkl").mkdir(),
         "is a directory", "{d}/dir.pkl", "directory where a file is expected"),
    Case("pickle-runs-code", ("dataset", "export", "{d}/evil.pkl", "--out", "{d}/npz"),
         lambda d: write_pickle(d / "evil.pkl", {"annotations": [ann(keypoint=RunsCode(f"touch {d / PWNED}"))]}),
         "refused to load: the pickle references posix.system", "{d}/evil.pkl", "pickle holding code"),
    Case("pickle-non-array-keypoint", ("dataset", "import", "pyskl", "{d}/list.pkl", "--out", "{d}/o.pkl"),
         lambda d: write_pickle(d / "list.pkl", {"annotations": [ann(keypoint=[[[[0.0, 0.0]]]])]}),
         "keypoint is list, expected a numpy array", "{d}/list.pkl", "pickle holding a non-array"),
    Case("pickle-string-array", ("dataset", "info", "{d}/str.pkl"),
         lambda d: write_pickle(d / "str.pkl", {"annotations": [ann(keypoint=np.full((1, 4, 17, 2), "x"))]}),
         "expected numbers", "{d}/str.pkl", "pickle holding a non-array"),
    Case("pickle-holds-a-string", ("dataset", "info", "{d}/s.pkl"),
         lambda d: write_pickle(d / "s.pkl", "just a string"), "not a pyskl annotation pickle", "{d}/s.pkl",
         "pickle holding a non-array"),
    Case("pickle-no-clips", ("dataset", "info", "{d}/none.pkl"),
         lambda d: write_pickle(d / "none.pkl", {"split": {}, "annotations": []}), "'annotations' is empty",
         "{d}/none.pkl", "empty dataset"),
    Case("pickle-bad-fps", ("dataset", "info", "{d}/fps.pkl"),
         lambda d: write_pickle(d / "fps.pkl", {"annotations": [ann(fps="thirty")]}), "fps 'thirty' is not a number",
         "{d}/fps.pkl", "pickle holding a non-array"),
    Case("pickle-unicode-path", ("dataset", "info", "{d}/dönnées ü/mauvais fichier 動作.pkl"),
         lambda d: empty(d / "dönnées ü" / "mauvais fichier 動作.pkl"), "empty file",
         "{d}/dönnées ü/mauvais fichier 動作.pkl", "unicode and spaces in paths"),
    Case("pickle-unreadable", ("dataset", "info", "{d}/u.pkl"), lambda d: unreadable(tiny_pkl(d / "u.pkl")),
         "cannot read", "{d}/u.pkl", "unreadable file", needs=("unreadable",)),
    Case("pickle-io-error", ("dataset", "info", "/proc/self/mem"), lambda d: None, "cannot read",
         "/proc/self/mem", "unreadable file"),
    # --- layouts
    Case("layout-unknown-name", ("dataset", "info", "{d}/ok.pkl", "--layout", "smpl24"),
         lambda d: tiny_pkl(d / "ok.pkl"), "unknown layout (built-in: coco17", "smpl24", "unknown layout"),
    Case("layout-json-missing", ("dataset", "export", "{d}/ok.pkl", "--out", "{d}/o.pkl", "--layout", "{d}/l.json"),
         lambda d: tiny_pkl(d / "ok.pkl"), "layout file not found", "{d}/l.json", "unknown layout"),
    Case("layout-json-invalid", ("dataset", "info", "{d}/ok.pkl", "--layout", "{d}/l.json"),
         lambda d: (tiny_pkl(d / "ok.pkl"), (d / "l.json").write_text('{"name": "x", "joints": [')),
         "not valid JSON", "{d}/l.json", "unknown layout"),
    Case("layout-json-wrong-joint-count", ("dataset", "info", "{d}/ok.pkl", "--layout", "{d}/l.json"),
         lambda d: (tiny_pkl(d / "ok.pkl"), (d / "l.json").write_text(json.dumps(
             {"name": "five", "joints": list("abcde"), "edges": [[0, 1]], "center": 0}))),
         "layout five (5 joints) shares no joint name with the clips' layout coco17", "{d}/ok.pkl", "unknown layout"),
    Case("layout-stored-unknown", ("dataset", "info", "{d}/s.pkl"),
         lambda d: write_pickle(d / "s.pkl", {"annotations": [ann()], "layout": "../../etc/passwd.json"}),
         "neither a built-in layout name nor a layout dict", "{d}/s.pkl", "unknown layout"),
    Case("layout-json-io-error", ("dataset", "info", "{d}/ok.pkl", "--layout", "/proc/self/mem"),
         lambda d: tiny_pkl(d / "ok.pkl"), "cannot read", "/proc/self/mem", "unreadable file"),
    # --- dataset import sources
    Case("penn-empty-folder", ("dataset", "import", "penn-action", "{d}/labels", "--out", "{d}/p.pkl"),
         lambda d: (d / "labels").mkdir(), "no .mat files in folder", "{d}/labels", "empty folder"),
    Case("penn-0-byte-mat", ("dataset", "import", "penn-action", "{d}/labels", "--out", "{d}/p.pkl"),
         lambda d: empty(d / "labels" / "0001.mat"), "not a readable .mat file", "{d}/labels/0001.mat",
         "empty file"),
    Case("penn-text-field", ("dataset", "import", "penn-action", "{d}/labels", "--out", "{d}/p.pkl"),
         lambda d: _penn_mat(d / "labels" / "0001.mat", x="not numbers"), "numeric T x 13 arrays",
         "{d}/labels/0001.mat", "corrupt / wrong-format file"),
    Case("ntu-empty-folder", ("dataset", "import", "ntu", "{d}/ntu", "--out", "{d}/n.pkl"),
         lambda d: (d / "ntu").mkdir(), "no .skeleton files in folder", "{d}/ntu", "empty folder"),
    Case("ntu-truncated", ("dataset", "import", "ntu", "{d}/ntu", "--out", "{d}/n.pkl"),
         lambda d: _truncate_text(make_ntu_folder(d / "ntu") / "S001C001P001R001A001.skeleton", 40),
         "file ends where", "{d}/ntu/S001C001P001R001A001.skeleton", "truncated file"),
    Case("kinetics-empty-folder", ("dataset", "import", "kinetics-json", "{d}/kin", "--out", "{d}/k.pkl"),
         lambda d: (d / "kin").mkdir(), "no Kinetics-skeleton .json clip files", "{d}/kin", "empty folder"),
    Case("kinetics-nan-frame-index", ("dataset", "import", "kinetics-json", "{d}/kin/v.json", "--out", "{d}/k.pkl"),
         lambda d: _kinetics(d / "kin" / "v.json", frame_index=float("nan")), "is not an integer",
         "{d}/kin/v.json", "NaN or infinite values"),
    # --- corrupt / export / build
    Case("corrupt-profile-missing",
         ("dataset", "corrupt", "{d}/ok.pkl", "--spec", "drop=0.1,profile={d}/prof.json", "--out", "{d}/lq.pkl"),
         lambda d: tiny_pkl(d / "ok.pkl"), "corruption profile not found", "{d}/prof.json", "missing file"),
    Case("corrupt-profile-is-a-directory",
         ("dataset", "corrupt", "{d}/ok.pkl", "--spec", "profile={d}/prof.json", "--out", "{d}/lq.pkl"),
         lambda d: (tiny_pkl(d / "ok.pkl"), (d / "prof.json").mkdir()), "is a directory, expected a corruption profile",
         "{d}/prof.json", "directory where a file is expected"),
    Case("export-onto-a-file", ("dataset", "export", "{d}/ok.pkl", "--out", "{d}/notes.txt"),
         lambda d: (tiny_pkl(d / "ok.pkl"), (d / "notes.txt").write_text("keep me")), "exists and is not a folder",
         "{d}/notes.txt", "file where a directory is expected"),
    Case("build-labels-is-a-directory",
         ("dataset", "build", "--cache", "{d}/cache", "--labels", "{d}/labels", "--out-hq", "{d}/hq.pkl",
          "--out-lq", "{d}/lq.pkl"), lambda d: ((d / "cache").mkdir(), (d / "labels").mkdir()),
         "is a directory, expected a labels .csv file", "{d}/labels", "directory where a file is expected"),
    Case("build-damaged-cache-entry",
         ("dataset", "build", "--cache", "{d}/cache", "--labels", "{d}/labels.csv", "--out-hq", "{d}/hq.pkl",
          "--out-lq", "{d}/lq.pkl"), corrupt_cache_entry, "unreadable cache entry", "{d}/cache/poses/mediapipe/",
         "corrupt cache entry"),
    Case("build-pickled-object-cache-entry",
         ("dataset", "build", "--cache", "{d}/cache", "--labels", "{d}/labels.csv", "--out-hq", "{d}/hq.pkl",
          "--out-lq", "{d}/lq.pkl"), pickled_object_cache_entry, "unreadable cache entry",
         "{d}/cache/poses/mediapipe/", "pickle holding code"),
    # --- videos (pipeline extract goes on past a bad file and reports each at the end)
    Case("video-0-bytes", ("extract", "{d}/empty.mp4", *EXTRACT), lambda d: empty(d / "empty.mp4"),
         "empty file (0 bytes)", "{d}/empty.mp4", "empty file", extract=True),
    Case("video-not-a-video", ("extract", "{d}/text.mp4", *EXTRACT),
         lambda d: (d / "text.mp4").write_text("this is not a video\n"), "not a readable video", "{d}/text.mp4",
         "non-video file", extract=True),
    Case("video-corrupt-index", ("extract", "{d}/cut.mp4", *EXTRACT), truncated_mp4, "not a readable video",
         "{d}/cut.mp4", "corrupt / wrong-format file", extract=True),
    Case("video-truncated", ("extract", "{d}/cut.avi", *EXTRACT), truncated_avi, "truncated or corrupt: decoded",
         "{d}/cut.avi", "truncated file", extract=True),
    Case("video-one-frame", ("extract", "{d}/one.mp4", *EXTRACT),
         lambda d: write_video(d / "one.mp4", stick_figure_frames(1)), "only 1 frame", "{d}/one.mp4",
         "one frame", extract=True),
    Case("video-no-person", ("extract", "{d}/vidéo sans personne.mp4", *EXTRACT),
         lambda d: stick_video(d / "vidéo sans personne.mp4"), "no person found in 8 frames",
         "{d}/vidéo sans personne.mp4", "video with no person", extract=True),
    Case("video-missing", ("extract", "{d}/gone.mp4", *EXTRACT), lambda d: None, "file not found",
         "{d}/gone.mp4", "missing file", extract=True),
    Case("video-unreadable", ("extract", "{d}/u.mp4", *EXTRACT), lambda d: unreadable(stick_video(d / "u.mp4")),
         "cannot read", "{d}/u.mp4", "unreadable file", extract=True, needs=("unreadable",)),
    Case("video-io-error", ("extract", "/proc/self/mem", *EXTRACT), lambda d: None, "cannot read",
         "/proc/self/mem", "unreadable file", extract=True),
    Case("videos-empty-folder", ("extract", "{d}/videos", *EXTRACT), lambda d: (d / "videos").mkdir(),
         "no videos found in", "{d}/videos", "empty folder"),
    # --- training
    Case("train-data-is-a-directory", ("train", "--data", "{d}/data.pkl", "--out", "{d}/run", *SMALL_TRAIN),
         lambda d: (d / "data.pkl").mkdir(), "is a directory", "{d}/data.pkl", "directory where a file is expected"),
    Case("train-unknown-layout", ("train", "--data", "{d}/ok.pkl", "--out", "{d}/run", "--layout", "coco18",
                                  *SMALL_TRAIN),
         lambda d: tiny_pkl(d / "ok.pkl"), "unknown layout", "coco18", "unknown layout"),
    Case("train-resume-0-byte-state", ("train", "--data", "{d}/ok.pkl", "--out", "{d}/run", "--resume", "--quiet"),
         lambda d: (tiny_pkl(d / "ok.pkl"), empty(d / "run" / "last.pt"), (d / "run" / "request.json").write_text(
             json.dumps({"data": "", "train": {}, "input": {}, "model": {}, "train_split": "train",
                         "test_split": "test"}))),
         "cannot resume from this file", "{d}/run/last.pt", "0-byte checkpoint"),
    # --- checkpoints
    Case("eval-0-byte-checkpoint", ("eval", "--model", "{d}/m.pt", "--data", "{d}/ok.pkl"),
         lambda d: (tiny_pkl(d / "ok.pkl"), empty(d / "m.pt")), "empty file (0 bytes), not a checkpoint",
         "{d}/m.pt", "0-byte checkpoint"),
    Case("eval-checkpoint-other-layout", ("eval", "--model", "{d}/coco.pt", "--data", "{d}/penn.pkl"),
         lambda d: (checkpoint(d / "coco.pt"), tiny_pkl(d / "penn.pkl", layout="penn13")),
         "checkpoint is for layout coco17 (17 joints), the data is penn13 (13 joints)", "{d}/coco.pt",
         "checkpoint for another layout"),
    Case("eval-checkpoint-other-class-count", ("eval", "--model", "{d}/m.pt", "--data", "{d}/five.pkl"),
         lambda d: (checkpoint(d / "m.pt"), tiny_pkl(d / "five.pkl", num_classes=5)),
         "checkpoint has 3 classes, the data has 5", "{d}/m.pt", "checkpoint for another class count"),
    Case("eval-checkpoint-truncated", ("eval", "--model", "{d}/m.pt", "--data", "{d}/ok.pkl"),
         lambda d: (tiny_pkl(d / "ok.pkl"), truncate(checkpoint(d / "full.pt"), d / "m.pt", 0.5),
                    (d / "full.pt").unlink()),
         "not a readable checkpoint", "{d}/m.pt", "truncated file"),
    Case("eval-checkpoint-runs-code", ("eval", "--model", "{d}/evil.pt", "--data", "{d}/ok.pkl"),
         lambda d: (tiny_pkl(d / "ok.pkl"), code_checkpoint(d / "evil.pt")), "refused to load", "{d}/evil.pt",
         "pickle holding code"),
    Case("eval-pyskl-pickle-as-model", ("eval", "--model", "{d}/ok.pkl", "--data", "{d}/ok.pkl"),
         lambda d: tiny_pkl(d / "ok.pkl"), "checkpoint", "{d}/ok.pkl", "corrupt / wrong-format file"),
    # --- distillation
    Case("distill-clips-do-not-pair", ("distill", "--hq", "{d}/hq.pkl", "--lq", "{d}/lq.pkl", "--out", "{d}/run"),
         lambda d: pair(d, rename=True), "clips do not pair: 1 only in HQ (c0_0); 1 only in LQ (someone_else)",
         "HQ {d}/hq.pkl and LQ {d}/lq.pkl", "HQ/LQ pickles that do not pair"),
    Case("distill-frame-counts-differ", ("distill", "--hq", "{d}/hq.pkl", "--lq", "{d}/lq.pkl", "--out", "{d}/run"),
         lambda d: pair(d, frames=True), "1 with different frame counts (c0_1)", "HQ {d}/hq.pkl and LQ {d}/lq.pkl",
         "HQ/LQ pickles that do not pair"),
    Case("distill-teacher-other-layout",
         ("distill", "--hq", "{d}/penn.pkl", "--corrupt", "drop=0.5", "--teacher", "{d}/coco.pt", "--out", "{d}/run"),
         lambda d: (checkpoint(d / "coco.pt"), tiny_pkl(d / "penn.pkl", layout="penn13")),
         "checkpoint is for layout coco17", "{d}/coco.pt", "checkpoint for another layout"),
    # --- inference and export (activate when `pipeline run` / `pipeline export` land)
    Case("run-0-byte-clip", ("run", "{d}/clip.mp4", "--model", "{d}/m.pt", "--render", "{d}/out.mp4", *FULL),
         lambda d: (checkpoint(d / "m.pt"), empty(d / "clip.mp4")), "empty file", "{d}/clip.mp4", "empty file"),
    Case("run-not-a-video", ("run", "{d}/clip.mp4", "--model", "{d}/m.pt", "--json", *FULL),
         lambda d: (checkpoint(d / "m.pt"), (d / "clip.mp4").write_text("not a video")),
         "not a readable video", "{d}/clip.mp4", "non-video file"),
    Case("run-empty-folder", ("run", "{d}/clips", "--model", "{d}/m.pt"),
         lambda d: (checkpoint(d / "m.pt"), (d / "clips").mkdir()), "no videos found in", "{d}/clips",
         "empty folder"),
    Case("run-no-person", ("run", "{d}/stick figure.mp4", "--model", "{d}/m.pt", "--render", "{d}/out.mp4", *FULL),
         lambda d: (checkpoint(d / "m.pt"), stick_video(d / "stick figure.mp4")), "no person",
         "{d}/stick figure.mp4", "video with no person"),
    Case("run-0-byte-checkpoint", ("run", "{d}/clip.mp4", "--model", "{d}/m.pt"),
         lambda d: (empty(d / "m.pt"), stick_video(d / "clip.mp4")), "empty file (0 bytes)", "{d}/m.pt",
         "0-byte checkpoint"),
    Case("export-0-byte-checkpoint", ("export", "--model", "{d}/m.pt", "--onnx", "{d}/m.onnx"),
         lambda d: empty(d / "m.pt"), "empty file (0 bytes)", "{d}/m.pt", "0-byte checkpoint"),
    Case("export-checkpoint-runs-code", ("export", "--model", "{d}/evil.pt", "--onnx", "{d}/m.onnx"),
         lambda d: code_checkpoint(d / "evil.pt"), "refused to load", "{d}/evil.pt", "pickle holding code"),
    Case("export-checkpoint-is-a-directory", ("export", "--model", "{d}/m.pt", "--onnx", "{d}/m.onnx"),
         lambda d: (d / "m.pt").mkdir(), "is a directory", "{d}/m.pt", "directory where a file is expected"),

    # --- issue 13: outputs that cannot or must not be written (checked before anything is written)
    Case("out-train-under-proc", ("train", "--data", "{d}/ok.pkl", "--out", "/proc/x", *SMALL_TRAIN),
         lambda d: tiny_pkl(d / "ok.pkl"), "is under /proc", "/proc/x", "output path that cannot be written"),
    Case("out-import-is-a-directory", ("dataset", "import", "pyskl", "{d}/ok.pkl", "--out", "{d}/existing"),
         lambda d: (tiny_pkl(d / "ok.pkl"), (d / "existing").mkdir()), "is a directory, expected a file name",
         "{d}/existing", "output path that cannot be written"),
    Case("out-corrupt-under-proc", ("dataset", "corrupt", "{d}/ok.pkl", "--spec", "drop=0.5", "--out", "/proc/x.pkl"),
         lambda d: tiny_pkl(d / "ok.pkl"), "is under /proc", "/proc/x.pkl", "output path that cannot be written"),
    Case("out-export-under-sys", ("dataset", "export", "{d}/ok.pkl", "--out", "/sys/npz"),
         lambda d: tiny_pkl(d / "ok.pkl"), "is under /sys", "/sys/npz", "output path that cannot be written"),
    Case("out-export-folder-cannot-be-made", ("dataset", "export", "{d}/ok.pkl", "--out", "{d}/notes.txt/sub/o.pkl"),
         lambda d: (tiny_pkl(d / "ok.pkl"), (d / "notes.txt").write_text("keep")), "cannot create its folder",
         "{d}/notes.txt/sub/o.pkl", "output path that cannot be written"),
    Case("out-render-under-proc", ("run", "{d}/clip.mp4", "--model", "{d}/m.pt", "--render", "/proc/x.mp4"),
         lambda d: (checkpoint(d / "m.pt"), stick_video(d / "clip.mp4")), "is under /proc", "/proc/x.mp4",
         "output path that cannot be written"),
    Case("out-onnx-under-proc", ("export", "--model", "{d}/m.pt", "--onnx", "/proc/x.onnx"),
         lambda d: checkpoint(d / "m.pt"), "is under /proc", "/proc/x.onnx", "output path that cannot be written"),
    Case("out-cache-under-proc", ("extract", "{d}/clip.mp4", "--quality", "low", "--cache", "/proc/c", "--no-progress"),
         lambda d: stick_video(d / "clip.mp4"), "is under /proc", "/proc/c", "output path that cannot be written"),
    Case("out-build-half-a-pair", ("dataset", "build", "--cache", "{d}/cache", "--labels", "{d}/labels.csv",
                                   "--out-hq", "{d}/hq.pkl", "--out-lq", "/proc/x.pkl"),
         built_cache, "is under /proc", "/proc/x.pkl", "output path that cannot be written"),
    Case("out-build-lq-is-a-directory", ("dataset", "build", "--cache", "{d}/cache", "--labels", "{d}/labels.csv",
                                         "--out-hq", "{d}/hq.pkl", "--out-lq", "{d}/lq"),
         lambda d: (built_cache(d), (d / "lq").mkdir()), "is a directory, expected a file name", "{d}/lq",
         "output path that cannot be written"),
    Case("out-device-node", ("dataset", "import", "pyskl", "{d}/ok.pkl", "--out", "{d}/null"),
         lambda d: (tiny_pkl(d / "ok.pkl"), null_device(d / "null")), "is a character device", "{d}/null",
         "special file as output", needs=("mknod",), keep=("{d}/null",)),
    Case("out-device-node-checkpoint", ("export", "--model", "{d}/m.pt", "--onnx", "{d}/null"),
         lambda d: (checkpoint(d / "m.pt"), null_device(d / "null")), "is a character device", "{d}/null",
         "special file as output", needs=("mknod",), keep=("{d}/null",)),
    Case("out-fifo", ("dataset", "corrupt", "{d}/ok.pkl", "--spec", "drop=0.5", "--out", "{d}/pipe.pkl"),
         lambda d: (tiny_pkl(d / "ok.pkl"), fifo(d / "pipe.pkl")), "is a named pipe", "{d}/pipe.pkl",
         "special file as output", keep=("{d}/pipe.pkl",)),
    Case("out-symlink-to-dev-null", ("dataset", "export", "{d}/ok.pkl", "--out", "{d}/o.pkl"),
         lambda d: (tiny_pkl(d / "ok.pkl"), symlink(d / "o.pkl", "/dev/null")), "is a character device",
         "{d}/o.pkl", "special file as output"),
    Case("out-same-file-as-input", ("export", "--model", "{d}/m.pt", "--onnx", "{d}/m.pt"),
         lambda d: checkpoint(d / "m.pt"), "is the same file as the input", "{d}/m.pt", "output is an input"),
    Case("out-hard-link-to-its-input", ("dataset", "corrupt", "{d}/ok.pkl", "--spec", "drop=0.5", "--out",
                                        "{d}/alias.pkl"),
         lambda d: os.link(tiny_pkl(d / "ok.pkl"), d / "alias.pkl"), "is the same file as the input",
         "{d}/alias.pkl", "output is an input"),
    Case("out-train-onto-its-data", ("train", "--data", "{d}/ok.pkl", "--out", "{d}/ok.pkl", *SMALL_TRAIN),
         lambda d: tiny_pkl(d / "ok.pkl"), "exists and is not a folder", "{d}/ok.pkl", "output is an input"),
    # --- issue 13: inputs that are not regular files (a FIFO would block, /dev/zero would never end)
    Case("in-fifo-pickle", ("dataset", "info", "{d}/pipe.pkl"), lambda d: fifo(d / "pipe.pkl"),
         "is a named pipe (FIFO), not a regular file", "{d}/pipe.pkl", "special file as input", keep=("{d}/pipe.pkl",)),
    Case("in-socket-pickle", ("dataset", "info", "{d}/s.pkl"), lambda d: unix_socket(d / "s.pkl"),
         "is a socket, not a regular file", "{d}/s.pkl", "special file as input"),
    Case("in-broken-symlink", ("dataset", "info", "{d}/gone.pkl"), lambda d: symlink(d / "gone.pkl", str(d / "x")),
         "broken symbolic link", "{d}/gone.pkl", "special file as input"),
    Case("in-profile-dev-zero", ("dataset", "corrupt", "{d}/ok.pkl", "--spec", "profile={d}/zero.json", "--out",
                                 "{d}/lq.pkl"),
         lambda d: (tiny_pkl(d / "ok.pkl"), symlink(d / "zero.json", "/dev/zero")), "is a character device",
         "{d}/zero.json", "special file as input"),
    Case("in-profile-dev-urandom", ("dataset", "corrupt", "{d}/ok.pkl", "--spec", "profile={d}/r.json", "--out",
                                    "{d}/lq.pkl"),
         lambda d: (tiny_pkl(d / "ok.pkl"), symlink(d / "r.json", "/dev/urandom")), "is a character device",
         "{d}/r.json", "special file as input"),
    Case("in-fifo-video", ("extract", "{d}/pipe.mp4", *EXTRACT), lambda d: fifo(d / "pipe.mp4"),
         "is a named pipe (FIFO)", "{d}/pipe.mp4", "special file as input", extract=True, keep=("{d}/pipe.mp4",)),
    Case("in-dev-zero-video", ("extract", "{d}/zero.mp4", *EXTRACT), lambda d: symlink(d / "zero.mp4", "/dev/zero"),
         "is a character device", "{d}/zero.mp4", "special file as input", extract=True),
    Case("in-fifo-penn-mat", ("dataset", "import", "penn-action", "{d}/labels", "--out", "{d}/p.pkl"), penn_fifo,
         "is a named pipe (FIFO)", "{d}/labels/0002.mat", "special file as input", keep=("{d}/labels/0002.mat",)),
    Case("in-fifo-run-clip", ("run", "{d}/pipe.mp4", "--model", "{d}/m.pt"),
         lambda d: (checkpoint(d / "m.pt"), fifo(d / "pipe.mp4")), "is a named pipe (FIFO)", "{d}/pipe.mp4",
         "special file as input", keep=("{d}/pipe.mp4",)),
    Case("in-device-checkpoint", ("eval", "--model", "{d}/null.pt", "--data", "{d}/ok.pkl"),
         lambda d: (tiny_pkl(d / "ok.pkl"), null_device(d / "null.pt")), "is a character device", "{d}/null.pt",
         "special file as input", needs=("mknod",), keep=("{d}/null.pt",)),
    Case("in-fifo-layout", ("dataset", "info", "{d}/ok.pkl", "--layout", "{d}/l.json"),
         lambda d: (tiny_pkl(d / "ok.pkl"), fifo(d / "l.json")), "is a named pipe", "{d}/l.json",
         "special file as input", keep=("{d}/l.json",)),
    Case("in-fifo-config", ("train", "--data", "{d}/ok.pkl", "--out", "{d}/run", "--config", "{d}/c.toml"),
         lambda d: (tiny_pkl(d / "ok.pkl"), fifo(d / "c.toml")), "is a named pipe", "{d}/c.toml",
         "special file as input", keep=("{d}/c.toml",)),
    Case("in-fifo-onnx", ("run", "{d}/clip.mp4", "--onnx", "{d}/m.onnx"),
         lambda d: (stick_video(d / "clip.mp4"), fifo(d / "m.onnx")), "is a named pipe", "{d}/m.onnx",
         "special file as input", keep=("{d}/m.onnx",)),
    # --- issue 13: options that are not finite or out of range (refused before the run folder exists)
    Case("opt-train-lr-nan", ("train", "--data", "{d}/ok.pkl", "--out", "{d}/run", "--lr", "nan", *SMALL_TRAIN),
         lambda d: tiny_pkl(d / "ok.pkl"), "lr must be a finite number, got nan", "lr",
         "non-finite or out-of-range option"),
    Case("opt-train-lr-inf", ("train", "--data", "{d}/ok.pkl", "--out", "{d}/run", "--lr", "inf", *SMALL_TRAIN),
         lambda d: tiny_pkl(d / "ok.pkl"), "lr must be a finite number, got inf", "lr",
         "non-finite or out-of-range option"),
    Case("opt-train-weight-decay-nan", ("train", "--data", "{d}/ok.pkl", "--out", "{d}/run", "--weight-decay", "nan",
                                        *SMALL_TRAIN),
         lambda d: tiny_pkl(d / "ok.pkl"), "must be a finite number", "weight_decay",
         "non-finite or out-of-range option"),
    Case("opt-train-width-nan", ("train", "--data", "{d}/ok.pkl", "--out", "{d}/run", *SMALL_TRAIN, "--width", "nan"),
         lambda d: tiny_pkl(d / "ok.pkl"), "must be a finite number", "width", "non-finite or out-of-range option"),
    Case("opt-train-label-smoothing-2", ("train", "--data", "{d}/ok.pkl", "--out", "{d}/run", "--label-smoothing",
                                         "2", *SMALL_TRAIN),
         lambda d: tiny_pkl(d / "ok.pkl"), "must be >= 0 and < 1, got 2", "label_smoothing",
         "non-finite or out-of-range option"),
    Case("opt-train-dropout-1.5", ("train", "--data", "{d}/ok.pkl", "--out", "{d}/run", "--dropout", "1.5",
                                   *SMALL_TRAIN),
         lambda d: tiny_pkl(d / "ok.pkl"), "must be >= 0 and < 1, got 1.5", "dropout",
         "non-finite or out-of-range option"),
    Case("opt-train-workers-negative", ("train", "--data", "{d}/ok.pkl", "--out", "{d}/run", "--workers", "-1",
                                        *SMALL_TRAIN),
         lambda d: tiny_pkl(d / "ok.pkl"), "must be >= 0, got -1", "num_workers", "non-finite or out-of-range option"),
    Case("opt-train-threads-0", ("train", "--data", "{d}/ok.pkl", "--out", "{d}/run", *SMALL_TRAIN, "--threads", "0"),
         lambda d: tiny_pkl(d / "ok.pkl"), "0 is not in the range", "--threads", "non-finite or out-of-range option"),
    Case("opt-train-aug-scale-inf", ("train", "--data", "{d}/ok.pkl", "--out", "{d}/run", "--aug-scale", "inf",
                                     *SMALL_TRAIN),
         lambda d: tiny_pkl(d / "ok.pkl"), "must be a finite number, got inf", "aug_scale",
         "non-finite or out-of-range option"),
    Case("opt-train-config-lr-nan", ("train", "--data", "{d}/ok.pkl", "--out", "{d}/run", "--config", "{d}/c.toml"),
         lambda d: (tiny_pkl(d / "ok.pkl"), toml_file(d / "c.toml", "lr = nan\n")), "lr must be a finite number",
         "{d}/c.toml", "non-finite or out-of-range option"),
    Case("opt-export-opset-99", ("export", "--model", "{d}/m.pt", "--onnx", "{d}/m.onnx", "--opset", "99"),
         lambda d: checkpoint(d / "m.pt"), "is not supported here", "--opset 99", "non-finite or out-of-range option"),
    Case("opt-distill-tau-nan", ("distill", "--hq", "{d}/ok.pkl", "--corrupt", "drop=0.5", "--out", "{d}/run",
                                 "--tau", "nan"),
         lambda d: tiny_pkl(d / "ok.pkl"), "tau must be a finite number, got nan", "tau",
         "non-finite or out-of-range option"),
    Case("opt-distill-lr-nan", ("distill", "--hq", "{d}/ok.pkl", "--corrupt", "drop=0.5", "--out", "{d}/run",
                                "--lr", "nan"),
         lambda d: tiny_pkl(d / "ok.pkl"), "lr must be a finite number, got nan", "lr",
         "non-finite or out-of-range option"),
    Case("opt-distill-width-nan", ("distill", "--hq", "{d}/ok.pkl", "--corrupt", "drop=0.5", "--out", "{d}/run",
                                   "--student-width", "nan"),
         lambda d: tiny_pkl(d / "ok.pkl"), "width must be a finite number", "width",
         "non-finite or out-of-range option"),
    # --- issue 13: checkpoints that ask for an absurd model, or hold non-finite weights
    Case("ckpt-depth-100000", ("eval", "--model", "{d}/deep.pt", "--data", "{d}/ok.pkl"),
         lambda d: (tiny_pkl(d / "ok.pkl"), edited_checkpoint(d / "deep.pt", depth=100_000)),
         "depth must be >= 1 and <= 100", "{d}/deep.pt", "checkpoint asking for a huge model"),
    Case("ckpt-width-1e6", ("run", "{d}/clip.mp4", "--model", "{d}/wide.pt"),
         lambda d: (stick_video(d / "clip.mp4"), edited_checkpoint(d / "wide.pt", width=1e6)),
         "channels (at most 4096)", "{d}/wide.pt", "checkpoint asking for a huge model"),
    Case("ckpt-classes-1e9", ("export", "--model", "{d}/many.pt", "--onnx", "{d}/m.onnx"),
         lambda d: edited_checkpoint(d / "many.pt", num_classes=10**9), "num_classes must be", "{d}/many.pt",
         "checkpoint asking for a huge model"),
    Case("ckpt-nan-weights-run", ("run", "{d}/clip.mp4", "--model", "{d}/nan.pt"),
         lambda d: (stick_video(d / "clip.mp4"), nan_checkpoint(d / "nan.pt")), "the weights are not finite",
         "{d}/nan.pt", "checkpoint with non-finite weights"),
    Case("ckpt-nan-weights-export", ("export", "--model", "{d}/nan.pt", "--onnx", "{d}/m.onnx"),
         lambda d: nan_checkpoint(d / "nan.pt"), "the weights are not finite", "{d}/nan.pt",
         "checkpoint with non-finite weights"),
    Case("ckpt-nan-weights-teacher", ("distill", "--hq", "{d}/ok.pkl", "--corrupt", "drop=0.5", "--teacher",
                                      "{d}/nan.pt", "--out", "{d}/run"),
         lambda d: (tiny_pkl(d / "ok.pkl"), nan_checkpoint(d / "nan.pt")), "the weights are not finite",
         "{d}/nan.pt", "checkpoint with non-finite weights"),
    # --- issue 13, smaller items
    Case("distill-resume-empty-folder", ("distill", "--hq", "{d}/ok.pkl", "--corrupt", "drop=0.5", "--out", "{d}/run",
                                         "--resume"),
         lambda d: (tiny_pkl(d / "ok.pkl"), (d / "run").mkdir()), "nothing to resume", "{d}/run",
         "empty folder"),
    Case("build-numeric-label-too-large", ("dataset", "build", "--cache", "{d}/cache", "--labels", "{d}/labels.csv",
                                           "--out-hq", "{d}/hq.pkl", "--out-lq", "{d}/lq.pkl"),
         lambda d: labels_csv(d, "video,label\nv.mp4,1000000\n"), "numeric label 1000000 is too large",
         "{d}/labels.csv", "corrupt / wrong-format file"),
    Case("usage-missing-option", ("train", "--data", "{d}/ok.pkl"), lambda d: tiny_pkl(d / "ok.pkl"),
         "Missing option '--out'", "--out", "command-line usage error"),
    Case("usage-unknown-option", ("dataset", "info", "{d}/ok.pkl", "--lyout", "coco17"),
         lambda d: tiny_pkl(d / "ok.pkl"), "No such option", "--lyout", "command-line usage error"),
]


def _penn_mat(path: Path, **fields) -> None:
    import scipy.io

    path.parent.mkdir(parents=True, exist_ok=True)
    base = {"x": np.ones((4, 13)), "y": np.ones((4, 13)), "visibility": np.ones((4, 13)), "action": "squat",
            "train": np.array([[1]])}
    base.update(fields)
    scipy.io.savemat(path, base)


def _truncate_text(path: Path, lines: int) -> None:
    path.write_text("\r\n".join(path.read_text().splitlines()[:lines]), newline="")


def _kinetics(path: Path, frame_index: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pose = {"pose": [0.5] * 36, "score": [0.9] * 18}
    path.write_text(json.dumps({"data": [{"frame_index": frame_index, "skeleton": [pose]}], "label": "x",
                                "label_index": 0}))


def _reads_despite_chmod(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.read(1)
        return True
    except OSError:
        return False


@dataclass
class Ran:
    """One row, set up and run: the case folder, the command's result and the files it left (or a skip reason)."""

    d: Path
    proc: subprocess.CompletedProcess | None = None
    left: list[str] = field(default_factory=list)
    skip: str = ""
    new_dirs: list[str] = field(default_factory=list)
    kept: dict[str, tuple[int, int]] = field(default_factory=dict)  # special file -> (file type, device) before


def _kind(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return stat.S_IFMT(st.st_mode), st.st_rdev


def _folders(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_dir() and not p.is_symlink()}


def _prepare(case: Case, root: Path) -> Ran:
    d = root / case.id
    d.mkdir()
    try:
        case.setup(d)
    except PermissionError as e:
        if "mknod" not in case.needs:
            raise
        return Ran(d, skip=f"this user may not make a device node with os.mknod ({e.strerror})")
    if "unreadable" in case.needs:
        target = next(p for p in d.rglob("*") if p.is_file() and p.stat().st_mode & 0o777 == 0)
        if _reads_despite_chmod(target):
            return Ran(d, skip="chmod 000 does not stop this user (root) from reading the file; the /proc/self/mem "
                               "rows cover read errors")
    if case.names.startswith("/proc/") and not Path("/proc/self").exists():
        return Ran(d, skip="needs Linux /proc")
    return Ran(d, kept={k: _kind(Path(k.replace("{d}", str(d)))) for k in case.keep})


def _run(case: Case, ran: Ran) -> Ran:
    before, folders = snapshot(ran.d), _folders(ran.d)
    ran.proc = run_pipeline(*(a.replace("{d}", str(ran.d)) for a in case.argv), timeout=120)
    ran.left = new_files(before, ran.d)
    # A new folder is left behind too (an empty run folder), unless it only holds a cache's allowed .lock files.
    ran.new_dirs = sorted(f for f in _folders(ran.d) - folders if not any((ran.d / f).rglob("*.lock")))
    return ran


@pytest.fixture(scope="module")
def catalogue(request, tmp_path_factory) -> dict[str, Ran]:
    """Set up every selected row, then run their subprocesses a few at a time (each is mostly interpreter and
    library start-up, so overlapping them roughly halves the wall time; every row has its own folder)."""
    selected = [item.callspec.params["case"] for item in request.session.items
                if item.module is sys.modules[__name__] and getattr(item, "originalname", "") == "test_bad_input"
                and item.callspec.params["case"].command in LANDED]
    root = tmp_path_factory.mktemp("catalogue")
    prepared = {c.id: _prepare(c, root) for c in selected}
    todo = [c for c in selected if not prepared[c.id].skip]
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda c: _run(c, prepared[c.id]), todo))
    return prepared


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=pytest.mark.skipif(
    c.command not in LANDED, reason=f"`pipeline {c.command}` has not landed yet (not in `pipeline --help`)"))
    for c in CASES])
def test_bad_input(case: Case, catalogue: dict[str, Ran]):
    ran = catalogue[case.id]
    if ran.skip:
        pytest.skip(ran.skip)
    names = case.names.replace("{d}", str(ran.d))
    line = one_error_line(ran.proc)
    if case.extract:
        assert line == "Error: 1 of 1 videos failed (listed above)", line
        reasons = [ln for ln in visible_lines(ran.proc.stdout) if ln.startswith(names)]
        assert len(reasons) == 1 and case.expect in reasons[0], ran.proc.stdout
    else:
        assert case.expect in line, line
        assert names in line, f"the message should name {names}: {line}"
    assert ran.left == [], "a failed command left files behind"
    assert ran.new_dirs == [], "a failed command left folders behind"
    for name, before in ran.kept.items():  # a device node is still that device, a FIFO still a FIFO
        assert _kind(Path(name.replace("{d}", str(ran.d)))) == before, f"{name} was replaced"
    assert not (ran.d / PWNED).exists()


def test_the_catalogue_covers_every_item_of_the_design():
    """Each entry of DESIGN.md's bad-input list, and the extra kinds issue 7 names, has at least one row."""
    required = {"missing file", "empty file", "truncated file", "corrupt / wrong-format file", "non-video file",
                "video with no person", "one frame", "NaN or infinite values", "HQ/LQ pickles that do not pair",
                "unknown layout", "checkpoint for another layout", "checkpoint for another class count",
                "pickle holding a non-array", "pickle holding code", "empty folder", "unreadable file",
                "unicode and spaces in paths", "directory where a file is expected", "0-byte checkpoint",
                # issue 13
                "output path that cannot be written", "special file as output", "output is an input",
                "special file as input", "non-finite or out-of-range option", "checkpoint asking for a huge model",
                "checkpoint with non-finite weights", "command-line usage error"}
    assert required <= {c.item for c in CASES}, required - {c.item for c in CASES}


# ------------------------------------------------------------------------ good input that must go through

UNICODE_DIR = "dönnées d'entrée 動作/sous dossier"


def test_unicode_and_spaces_in_every_path_work(tmp_path: Path):
    root = tmp_path / UNICODE_DIR
    src = make_ntu_folder(root / "NTU skeletons ü")
    out = root / "sortie Ωmega" / "clips é.pkl"
    proc = run_pipeline("dataset", "import", "ntu", src, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}: 4 clips" in proc.stdout
    lay = root / "mon squelette.json"
    lay.write_text(json.dumps({"name": "tête", "joints": ["tête", "cou"], "edges": [[0, 1]], "center": 1}))
    proc = run_pipeline("dataset", "corrupt", out, "--spec", "drop=0.3,impute=2", "--out", root / "lq é.pkl")
    assert proc.returncode == 0, proc.stderr
    npz = root / "export npz ü"
    proc = run_pipeline("dataset", "export", root / "lq é.pkl", "--out", npz)
    assert proc.returncode == 0, proc.stderr
    assert len(list(npz.glob("*.npz"))) == 4
    proc = run_pipeline("dataset", "info", out, "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["clips"] == 4
    # A custom layout file whose path and joint names are not ASCII: refused (no joint in common), by name.
    line = one_error_line(run_pipeline("dataset", "info", out, "--layout", lay))
    assert line == (f"Error: {out}: layout tête (2 joints) shares no joint name with the clips' layout ntu25 "
                    f"(25 joints, stored in the file): nothing to convert"), line
    line = one_error_line(run_pipeline("dataset", "info", out, "--source-layout", lay))
    assert line == f"Error: {out}: layout tête has 2 joints but the clips have 25", line


def test_non_finite_keypoints_are_masked_not_refused(tmp_path: Path):
    """NaN/inf coordinates or scores load (as missing joints, score 0) and every dataset command succeeds."""
    ds = make_dataset(n_per_class=2, num_classes=3, t=8)
    ds.clips[0].keypoint[0, 2, 5] = np.nan
    ds.clips[1].keypoint[0, 3, 0, 1] = np.inf
    ds.clips[2].keypoint[0, :, :, :] = -np.inf  # a clip with no valid joint at all
    ds.clips[3].keypoint_score[0, 1, 1] = np.nan
    src = tmp_path / "nan.pkl"
    save_dataset(ds, src)
    proc = run_pipeline("dataset", "info", src)
    assert proc.returncode == 0 and "6 clips" in proc.stdout, proc.stderr
    proc = run_pipeline("dataset", "corrupt", src, "--spec", "drop=0.5,jitter=0.05,framedrop=0.2", "--out",
                        tmp_path / "lq.pkl")
    assert proc.returncode == 0, proc.stderr
    proc = run_pipeline("dataset", "export", src, "--out", tmp_path / "npz")
    assert proc.returncode == 0, proc.stderr
    for path in (src, tmp_path / "lq.pkl"):
        for c in load_dataset(path).clips:
            assert np.isfinite(c.keypoint).all() and np.isfinite(c.scores()).all()
    hq = load_dataset(src)
    assert hq.clips[0].keypoint_score[0, 2, 5] == 0 and hq.clips[1].keypoint_score[0, 3, 0] == 0
    assert hq.clips[3].keypoint_score[0, 1, 1] == 0 and (hq.clips[2].scores() == 0).all()
    for f in (tmp_path / "npz").glob("*.npz"):
        with np.load(f, allow_pickle=False) as z:
            assert np.isfinite(z["keypoint"]).all() and np.isfinite(z["keypoint_score"]).all()


# -------------------------------------------------- issue 13: the vetters, the atomic writer, the cache, in-process

def test_vet_input_names_what_the_path_is(tmp_path: Path, monkeypatch):
    from models.contract import paths
    from models.contract.errors import BadInput

    (tmp_path / "ok.json").write_text("{}")
    assert paths.vet_input(tmp_path / "ok.json", "json") == tmp_path / "ok.json"
    cases = {fifo(tmp_path / "p.json"): "is a named pipe (FIFO)", unix_socket(tmp_path / "s.json"): "is a socket",
             symlink(tmp_path / "z.json", "/dev/zero"): "is a character device", tmp_path: "is a directory",
             tmp_path / "missing.json": "file not found",
             symlink(tmp_path / "broken.json", str(tmp_path / "nowhere")): "broken symbolic link"}
    for path, reason in cases.items():
        with pytest.raises(BadInput) as e:
            paths.vet_input(path, "json")
        assert str(e.value).startswith(f"{path}: {reason}") and "\n" not in str(e.value), str(e.value)
    # The size bound: a file over its kind's limit is refused before it is read.
    monkeypatch.setitem(paths.INPUT_KINDS, "json", paths.InputKind("file", "a .json file", 1))
    with pytest.raises(BadInput, match="over the 1 bytes limit"):
        paths.vet_input(tmp_path / "ok.json", "json")


def test_vet_output_creates_nothing_and_refuses_inputs(tmp_path: Path):
    from models.contract.errors import BadInput
    from models.contract.paths import vet_output

    assert vet_output(tmp_path / "new" / "deeper" / "o.pkl") == tmp_path / "new" / "deeper" / "o.pkl"
    assert vet_output(tmp_path / "run", folder=True) == tmp_path / "run"
    assert sorted(tmp_path.iterdir()) == []  # vetting wrote nothing
    (tmp_path / "in.pkl").write_bytes(b"x")
    os.link(tmp_path / "in.pkl", tmp_path / "alias.pkl")
    for path, kw, reason in [
            (tmp_path / "in.pkl", {"inputs": [tmp_path / "in.pkl"]}, "is the same file as the input"),
            (tmp_path / "alias.pkl", {"inputs": [tmp_path / "in.pkl"]}, "is the same file as the input"),
            (tmp_path / "in.pkl", {"folder": True}, "exists and is not a folder"),
            (tmp_path, {}, "is a directory, expected a file name"),
            (fifo(tmp_path / "p.pkl"), {}, "is a named pipe"),
            (tmp_path / "in.pkl" / "sub" / "o.pkl", {}, "cannot create its folder"),
            (Path("/proc/self/x.pkl"), {}, "is under /proc"), (Path("/sys/x"), {"folder": True}, "is under /sys")]:
        with pytest.raises(BadInput) as e:
            vet_output(path, **kw)
        assert str(e.value).startswith(f"{path}: {reason}"), str(e.value)


def test_atomic_writer_never_replaces_a_special_file(tmp_path: Path):
    from models.contract.atomic import atomic_write_bytes
    from models.contract.errors import BadInput

    targets = [fifo(tmp_path / "pipe"), symlink(tmp_path / "null", "/dev/null"), tmp_path / "dir"]
    (tmp_path / "dir").mkdir()
    try:
        targets.append(null_device(tmp_path / "dev"))
    except PermissionError:
        pass  # not root: the FIFO and the link to /dev/null show the same
    for t in targets:
        before = _kind(t), os.stat(t).st_mode
        with pytest.raises(BadInput, match="refusing to replace it"):
            atomic_write_bytes(t, b"data")
        assert (_kind(t), os.stat(t).st_mode) == before, t
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    atomic_write_bytes(tmp_path / "regular", b"a")
    atomic_write_bytes(tmp_path / "regular", b"b")  # a regular file is replaced as before
    assert (tmp_path / "regular").read_bytes() == b"b"


def test_no_checkpoint_with_non_finite_weights_is_written(tmp_path: Path):
    import torch

    from models.checkpoint import load_checkpoint, save_checkpoint
    from models.contract.errors import BadInput

    model, meta = load_checkpoint(checkpoint(tmp_path / "m.pt"))
    with torch.no_grad():
        next(p for p in model.parameters() if p.numel() > 1).view(-1)[0] = float("inf")
    with pytest.raises(BadInput, match="the weights are not finite"):
        save_checkpoint(tmp_path / "bad.pt", model, layout=meta["layout"], classes=meta["classes"],
                        model_config=meta["model_config"], input_config=meta["input_config"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


class _FakeEstimator:
    """Finds one still person in every frame: enough to make and remake cache entries without MediaPipe."""

    name, layout, model = "mediapipe", "blazepose33", "fake"

    def settings(self) -> dict:
        return {"fake": 1}

    def needs_frame(self, t: int) -> bool:
        return True

    def estimate(self, frames, fps, img_shape):
        from estimators.base import PoseResult

        n = sum(1 for _ in frames)
        return PoseResult(np.full((1, n, 33, 2), 10, np.float32), np.full((1, n, 33), 0.9, np.float32),
                          self.layout, img_shape, fps)


def test_a_damaged_cache_entry_is_extracted_again_and_said_so(tmp_path: Path):
    from pipeline.extract.cache import PoseCache
    from pipeline.extract.driver import ExtractOptions, extract_one

    video = stick_video(tmp_path / "v.mp4")
    cache = PoseCache(tmp_path / "cache")
    opts = ExtractOptions(quality="low", cache_dir=tmp_path / "cache")
    first = extract_one(video, opts, _FakeEstimator(), cache)
    assert first.status == "done" and first.reason == "", first
    entry = Path(first.entry)
    entry.write_bytes(entry.read_bytes()[:40])  # cut short: a damaged zip
    again = extract_one(video, opts, _FakeEstimator(), cache)
    assert again.status == "done" and again.reason.startswith("re-extracted: its cache entry"), again
    assert "was damaged" in again.reason and entry.name in again.reason
    assert cache.load(entry).result.total_frames == 8  # whole again
    assert extract_one(video, opts, _FakeEstimator(), cache).status == "skipped"
