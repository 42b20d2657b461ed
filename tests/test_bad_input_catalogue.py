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
         lambda d: _kinetics(d / "kin" / "v.json", frame_index=float("nan")), "NaN is not a JSON number",
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


# ============================================================================================================
# Issue 24, classes 4-10 (branch badio-b): JSON depth and numbers, model-file schema and self-consistency,
# limits, MP4 edit lists, `live` sources, the OpenPose importer's tracker. Each row failed (a traceback, an
# endless decode, a hang, or exit 0) before the fixes named in docs/RELIABILITY.md.
# ============================================================================================================

def deep_json(path: Path, depth: int = 100_000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[" * depth + "]" * depth)
    return path


def kinetics_raw(path: Path, label_index: str = "0", pose_value: str = "0.5") -> Path:
    """A Kinetics-skeleton file written as text, so a number can be what `json.dumps` never writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pose = ", ".join([pose_value] + ["0.5"] * 35)
    path.write_text('{"data": [{"frame_index": 1, "skeleton": [{"pose": [' + pose + '], "score": ['
                    + ", ".join(["0.9"] * 18) + ']}]}], "label": "x", "label_index": ' + label_index + "}")
    return path


def openpose_folder(d: Path, frames: dict[str, str]) -> None:
    """An OpenPose json folder (one video `v`, frame files as given) and its labels CSV."""
    (d / "op").mkdir(parents=True, exist_ok=True)
    for name, text in frames.items():
        (d / "op" / name).write_text(text)
    (d / "labels.csv").write_text("video,label\nv,a\n")


def meta_checkpoint(path: Path, num_classes: int = 3, **fields) -> Path:
    """A real checkpoint whose top-level metadata fields are replaced (a crafted file)."""
    import torch

    checkpoint(path, num_classes=num_classes)
    obj = torch.load(path, weights_only=True)
    obj.update(fields)
    torch.save(obj, path)
    return path


_EXPORTED: dict[str, Path] = {}


def onnx_with_meta(path: Path, edit: Callable[[dict], object] | None = None, raw: str | None = None) -> Path:
    """A real `pipeline export` of a tiny coco17 checkpoint, with its metadata edited by `edit` (which returns
    the new metadata) or replaced by the text `raw`. One export per session, copied."""
    import shutil
    import tempfile

    import onnx

    from pipeline.infer.onnx_export import METADATA_KEY, export_onnx

    if "file" not in _EXPORTED:
        tmp = Path(tempfile.mkdtemp(prefix="issue24-onnx-"))
        export_onnx(checkpoint(tmp / "m.pt"), tmp / "m.onnx")
        _EXPORTED["file"] = tmp / "m.onnx"
    shutil.copyfile(_EXPORTED["file"], path)
    proto = onnx.load(str(path))
    entry = next(e for e in proto.metadata_props if e.key == METADATA_KEY)
    entry.value = raw if raw is not None else json.dumps(edit(json.loads(entry.value)))
    onnx.save(proto, str(path))
    return path


def fewer_joints(meta: dict) -> dict:
    """The metadata of a 16-joint layout (coco17 less its last joint) in both places: consistent with itself,
    not with the graph, which takes 17 joints."""
    lay = meta["layout"]
    lay = {"name": "coco16", "joints": lay["joints"][:16], "edges": [e for e in lay["edges"] if max(e) < 16],
           "center": lay["center"]}
    meta["layout"] = meta["model_config"]["layout"] = lay
    return meta


def set_key(key: str, value: object) -> Callable[[dict], dict]:
    return lambda meta: {**meta, key: value}


def split_keypoint_release(d: Path, total_frames: int | None = None, kpfile: bytes | None = None) -> None:
    """A PYSKL split-keypoint table of contents (one clip) and its kpfile."""
    (d / "kp").mkdir()
    kp = np.concatenate([np.ones((2, 17, 2)), np.full((2, 17, 1), 0.9)], -1).astype(np.float16)
    (d / "kp" / "part.pkl").write_bytes(kpfile if kpfile is not None else pickle.dumps({"a": {"keypoint": kp}}))
    ann = {"frame_dir": "a", "label": 0, "frame_inds": np.array([0, 1], np.int64), "raw_file": "part.pkl",
           "img_shape": (256, 340), "original_shape": (256, 340)}
    if total_frames is not None:
        ann["total_frames"] = total_frames
    (d / "toc.pkl").write_bytes(pickle.dumps({"split": {"train": ["a"]}, "annotations": [ann]}))


# bytearray(1_000_000_000) as a pickle calls it: 44 bytes that allocated 1 GB (3 GB with 3 * 10**9)
BYTEARRAY_BOMB = b"\x80\x02cbuiltins\nbytearray\nJ\x00\xca\x9a;\x85R."


def edit_listed_video(path: Path, entries: int, seconds_each: float = 1.0) -> Path:
    """40 frames at 25 fps (1.6 s) whose edit list plays `entries` x `seconds_each` s."""
    from tests.support.mp4_boxes import with_edit_list

    src = stick_video(path.with_name("plain.mp4"), 40)
    with_edit_list(src, path, entries, seconds_each)
    src.unlink()
    return path


def layout_with_joints(path: Path, n: int, name: str = "big") -> Path:
    """A layout holding coco17's joints (so it converts from the data) plus `n - 17` more."""
    from models.contract.layouts import COCO17

    joints = list(COCO17.joints) + [f"extra_{i}" for i in range(n - 17)]
    path.write_text(json.dumps({"name": name, "joints": joints, "edges": [list(e) for e in COCO17.edges],
                                "center": COCO17.center}))
    return path


ISSUE24_B = [
    # --- class 4: one bounded JSON reader (depth, integers, non-finite numbers)
    Case("json-layout-100000-deep", ("dataset", "info", "{d}/ok.pkl", "--layout", "{d}/deep.json"),
         lambda d: (tiny_pkl(d / "ok.pkl"), deep_json(d / "deep.json")), "nested 100000 levels deep (at most 64)",
         "{d}/deep.json", "JSON too deep or a number out of range"),
    Case("json-profile-100000-deep", ("dataset", "corrupt", "{d}/ok.pkl", "--spec", "profile={d}/deep.json",
                                      "--out", "{d}/lq.pkl"),
         lambda d: (tiny_pkl(d / "ok.pkl"), deep_json(d / "deep.json")), "nested 100000 levels deep",
         "{d}/deep.json", "JSON too deep or a number out of range"),
    Case("json-openpose-100000-deep", ("dataset", "import", "openpose-json", "{d}/op", "--labels", "{d}/labels.csv",
                                       "--out", "{d}/o.pkl"),
         lambda d: openpose_folder(d, {"v_000000000000_keypoints.json": "[" * 100_000 + "]" * 100_000}),
         "nested 100000 levels deep", "{d}/op/v_000000000000_keypoints.json", "JSON too deep or a number out of range"),
    Case("json-kinetics-5000-digit-integer", ("dataset", "import", "kinetics-json", "{d}/v.json", "--out", "{d}/k.pkl"),
         lambda d: kinetics_raw(d / "v.json", label_index="7" * 5000), "(5000 digits) is out of range",
         "{d}/v.json", "JSON too deep or a number out of range"),
    Case("json-kinetics-integer-beyond-float", ("dataset", "import", "kinetics-json", "{d}/v.json", "--out",
                                                "{d}/k.pkl"),
         lambda d: kinetics_raw(d / "v.json", pose_value="9" * 400), "(400 digits) is out of range", "{d}/v.json",
         "JSON too deep or a number out of range"),
    Case("json-onnx-coord-dims-infinity", ("run", "--onnx", "{d}/m.onnx", "--classes"),
         lambda d: onnx_with_meta(d / "m.onnx", set_key("coord_dims", float("inf"))),
         "Infinity is not a JSON number", "{d}/m.onnx", "JSON too deep or a number out of range"),
    # --- class 5: one schema for a model file's metadata, checkpoint and ONNX alike
    Case("meta-onnx-is-a-list", ("run", "--onnx", "{d}/m.onnx", "--classes"),
         lambda d: onnx_with_meta(d / "m.onnx", raw="[1, 2]"), "ONNX metadata is invalid: it is a list",
         "{d}/m.onnx", "model metadata of the wrong type"),
    Case("meta-onnx-is-a-string", ("run", "--onnx", "{d}/m.onnx", "--classes"),
         lambda d: onnx_with_meta(d / "m.onnx", raw='"coco17"'), "ONNX metadata is invalid: it is a string",
         "{d}/m.onnx", "model metadata of the wrong type"),
    Case("meta-classes-an-int", ("run", "--model", "{d}/m.pt", "--classes"),
         lambda d: meta_checkpoint(d / "m.pt", classes=3), "'classes' is an integer, expected a list", "{d}/m.pt",
         "model metadata of the wrong type"),
    Case("meta-coord-dims-a-string", ("export", "--model", "{d}/m.pt", "--onnx", "{d}/m.onnx"),
         lambda d: meta_checkpoint(d / "m.pt", coord_dims="two"), "'coord_dims' is 'two', expected 2 or 3",
         "{d}/m.pt", "model metadata of the wrong type"),
    Case("meta-extra-a-list", ("run", "--model", "{d}/m.pt", "--classes"),
         lambda d: meta_checkpoint(d / "m.pt", extra=[1, 2]), "'extra' is a list, expected an object", "{d}/m.pt",
         "model metadata of the wrong type"),
    Case("meta-model-config-a-list", ("eval", "--model", "{d}/m.pt", "--data", "{d}/ok.pkl"),
         lambda d: (tiny_pkl(d / "ok.pkl"), meta_checkpoint(d / "m.pt", model_config=[1])),
         "'model_config' is a list, expected an object", "{d}/m.pt", "model metadata of the wrong type"),
    Case("meta-input-config-a-list", ("run", "--model", "{d}/m.pt", "--classes"),
         lambda d: meta_checkpoint(d / "m.pt", input_config=["joint"]), "'input_config' is a list, expected an object",
         "{d}/m.pt", "model metadata of the wrong type"),
    # --- class 6: a model file consistent with itself (its weights, its graph) or refused
    Case("meta-one-name-for-15-outputs-run", ("run", "--model", "{d}/m.pt", "--classes"),
         lambda d: meta_checkpoint(d / "m.pt", 15, classes=["walk"]), "1 class names for a model with 15 outputs",
         "{d}/m.pt", "model file inconsistent with itself"),
    Case("meta-one-name-for-15-outputs-export", ("export", "--model", "{d}/m.pt", "--onnx", "{d}/m.onnx"),
         lambda d: meta_checkpoint(d / "m.pt", 15, classes=["walk"]), "1 class names for a model with 15 outputs",
         "{d}/m.pt", "model file inconsistent with itself"),
    Case("meta-a-million-names", ("export", "--model", "{d}/m.pt", "--onnx", "{d}/m.onnx"),
         lambda d: meta_checkpoint(d / "m.pt", classes=[f"c{i}" for i in range(1_000_000)]),
         "'classes' has 1000000 names", "{d}/m.pt", "model file inconsistent with itself"),
    Case("meta-classes-a-15-letter-string", ("run", "--model", "{d}/m.pt", "--classes"),
         lambda d: meta_checkpoint(d / "m.pt", 15, classes="abcdefghijklmno"), "'classes' is a string",
         "{d}/m.pt", "model file inconsistent with itself"),
    Case("meta-layout-not-the-models", ("run", "--model", "{d}/m.pt", "--classes"),
         lambda d: meta_checkpoint(d / "m.pt", layout=_penn13()), "the layout (penn13, 13 joints) is not the model's "
         "(coco17, 17 joints)", "{d}/m.pt", "model file inconsistent with itself"),
    Case("meta-coord-dims-3-on-a-2d-model", ("export", "--model", "{d}/m.pt", "--onnx", "{d}/m.onnx"),
         lambda d: meta_checkpoint(d / "m.pt", coord_dims=3), "coord_dims 3 and the input configuration make 4 input "
         "channels, the model takes 3", "{d}/m.pt", "model file inconsistent with itself"),
    Case("meta-onnx-graph-takes-17-joints-for-16", ("run", "--onnx", "{d}/m.onnx", "--classes"),
         lambda d: onnx_with_meta(d / "m.onnx", fewer_joints), "the ONNX graph takes input ['batch', 1, 8, 17, 3]",
         "{d}/m.onnx", "model file inconsistent with itself"),
    # --- class 7: limits that surfaced as tracebacks, allocations or multi-line errors
    Case("limit-train-layout-2000-joints", ("train", "--data", "{d}/ok.pkl", "--out", "{d}/run", "--layout",
                                            "{d}/big.json", *SMALL_TRAIN),
         lambda d: (tiny_pkl(d / "ok.pkl"), layout_with_joints(d / "big.json", 2000)),
         "layout has 2000 joints (at most 1000)", "{d}/big.json", "limit exceeded"),
    Case("limit-split-keypoint-total-frames-1e9", ("dataset", "import", "pyskl", "{d}/toc.pkl", "--keypoints",
                                                   "{d}/kp", "--out", "{d}/o.pkl"),
         lambda d: split_keypoint_release(d, total_frames=10 ** 9), "total_frames 1000000000 is more than 100000",
         "{d}/toc.pkl", "limit exceeded"),
    Case("limit-split-keypoint-total-frames-2e5", ("dataset", "import", "pyskl", "{d}/toc.pkl", "--keypoints",
                                                   "{d}/kp", "--out", "{d}/o.pkl"),
         lambda d: split_keypoint_release(d, total_frames=200_000), "total_frames 200000 is more than 100000",
         "{d}/toc.pkl", "limit exceeded"),
    Case("limit-kpfile-bytearray-bomb", ("dataset", "import", "pyskl", "{d}/toc.pkl", "--keypoints", "{d}/kp",
                                         "--out", "{d}/o.pkl"),
         lambda d: split_keypoint_release(d, kpfile=BYTEARRAY_BOMB), "builtins.bytearray called with int",
         "{d}/kp/part.pkl", "limit exceeded"),
    Case("limit-csv-200000-character-field", ("dataset", "build", "--cache", "{d}/cache", "--labels",
                                              "{d}/labels.csv", "--out-hq", "{d}/hq.pkl", "--out-lq", "{d}/lq.pkl"),
         lambda d: labels_csv(d, "video,label\n" + "v" * 200_000 + ".mp4,a\n"), "field larger than field limit",
         "{d}/labels.csv", "limit exceeded"),
    Case("limit-layout-name-with-newlines", ("dataset", "info", "{d}/ok.pkl", "--layout", "{d}/l.json"),
         lambda d: (tiny_pkl(d / "ok.pkl"), (d / "l.json").write_text(json.dumps(
             {"name": "five\nError: a second line\r\x1b[2K", "joints": list("abcde"), "edges": [[0, 1]],
              "center": 0}))),
         "layout five\\nError: a second line\\r\\x1b[2K (5 joints) shares no joint name", "{d}/ok.pkl",
         "limit exceeded"),
    # --- class 8: MP4 edit lists that would replay the video without end
    Case("mp4-100000-edits-extract", ("extract", "{d}/loop.mp4", *EXTRACT),
         lambda d: edit_listed_video(d / "loop.mp4", 100_000), "its edit list has 100000 entries (at most 1000)",
         "{d}/loop.mp4", "MP4 edit list beyond its media", extract=True),
    Case("mp4-100000-edits-run", ("run", "{d}/loop.mp4", "--model", "{d}/m.pt", *FULL),
         lambda d: (checkpoint(d / "m.pt"), edit_listed_video(d / "loop.mp4", 100_000)),
         "its edit list has 100000 entries", "{d}/loop.mp4", "MP4 edit list beyond its media"),
    Case("mp4-100000-edits-live", ("live", "{d}/loop.mp4", "--model", "{d}/m.pt", "--no-realtime", *FULL),
         lambda d: (checkpoint(d / "m.pt"), edit_listed_video(d / "loop.mp4", 100_000)),
         "its edit list has 100000 entries", "{d}/loop.mp4", "MP4 edit list beyond its media"),
    Case("mp4-edits-play-300-s-of-1.6", ("extract", "{d}/long.mp4", *EXTRACT),
         lambda d: edit_listed_video(d / "long.mp4", 3, 100.0), "its edit list plays 300 s but the video track "
         "holds 1.6 s", "{d}/long.mp4", "MP4 edit list beyond its media", extract=True),
    # --- class 9 (sources): what `pipeline live SOURCE` takes
    Case("live-superscript-two", ("live", "²", "--model", "{d}/m.pt"), lambda d: checkpoint(d / "m.pt"),
         "file not found", "²", "live source that is none of camera, stream, file"),
    Case("live-20-digit-camera", ("live", "12345678901234567890", "--model", "{d}/m.pt"),
         lambda d: checkpoint(d / "m.pt"), "camera index 12345678901234567890 is out of range",
         "12345678901234567890", "live source that is none of camera, stream, file"),
    Case("live-file-url-to-a-fifo", ("live", "file://{d}/pipe.mp4", "--model", "{d}/m.pt"),
         lambda d: (checkpoint(d / "m.pt"), fifo(d / "pipe.mp4")), "is a named pipe (FIFO)", "{d}/pipe.mp4",
         "live source that is none of camera, stream, file", keep=("{d}/pipe.mp4",)),
]
CASES += ISSUE24_B
ISSUE24_B_ITEMS = {"JSON too deep or a number out of range", "model metadata of the wrong type",
                   "model file inconsistent with itself", "limit exceeded", "MP4 edit list beyond its media",
                   "live source that is none of camera, stream, file"}


def _penn13() -> dict:
    from models.contract.layouts import PENN13

    return PENN13.to_dict()


def test_issue_24_classes_4_to_10_are_all_in_the_catalogue():
    assert ISSUE24_B_ITEMS <= {c.item for c in CASES}, ISSUE24_B_ITEMS - {c.item for c in CASES}


def openpose_crowd(root: Path, people: int = 300, frames: int = 12) -> Path:
    """`people` BODY_25 skeletons on a grid, each moving a little from frame to frame."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 40, (people, 25, 2)) + np.stack(np.divmod(np.arange(people), 20), -1)[:, None] * 60.0
    conf = rng.uniform(0.3, 1, (people, 25, 1))  # each person's confidence is the same in every frame
    (root / "crowd").mkdir(parents=True)
    for t in range(frames):
        pts = base + rng.normal(0, 1, base.shape) + t
        doc = {"version": 1.3, "people": [{"pose_keypoints_2d": np.concatenate([p, c], 1).round(2).ravel().tolist()}
                                          for p, c in zip(pts, conf)]}
        (root / "crowd" / f"crowd_{t:012d}_keypoints.json").write_text(json.dumps(doc))
    (root / "labels.csv").write_text("video,label\ncrowd,wave\n")
    return root


def test_openpose_import_of_a_crowd_is_fast(tmp_path: Path):
    """300 people in each of 12 frames took 36-92 s in the importer's tracker (every pair scored in Python); now
    the costs are computed at once and a frame gives the tracker its 100 most confident people."""
    import time

    from pipeline.data.importers.openpose_json import MAX_PEOPLE, import_openpose_json

    root = openpose_crowd(tmp_path)
    t0 = time.perf_counter()
    ds = import_openpose_json(root / "crowd", root / "labels.csv", max_persons=2)
    seconds = time.perf_counter() - t0
    assert seconds < 20, f"importing 300 people x 12 frames took {seconds:.1f} s"
    (clip,) = ds.clips
    assert clip.keypoint.shape == (2, 12, 25, 2) and (clip.keypoint_score > 0).all() and MAX_PEOPLE == 100
    # the two kept people are each one person throughout: no jump between grid cells (60 px apart)
    assert (np.abs(np.diff(clip.keypoint, axis=1)) < 10).all()


# ============================================================================= end of issue 24 (badio-b) block


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


# =====================================================================================================================
# Issue 24, classes 1, 2, 3 and the SIGTERM part of 9 (branch badio-a): exclusive temp files, full disks, bounded
# all-or-nothing model installs, SIGTERM in `live`. One block of its own (the other classes are elsewhere in this
# file). Every case here failed before the fix (docs/RELIABILITY.md says how).
# =====================================================================================================================

# --- shared helpers of this block

from tests.support.cli_support import console_script, invoke, pipeline_env, popen_pipeline  # noqa: E402


def _cli(*args, env: dict | None = None, fsize: int | None = None, timeout: float = 180
         ) -> subprocess.CompletedProcess:
    """The real `pipeline` script; `fsize`: a file-size limit (RLIMIT_FSIZE) in the child, so that every write past
    that many bytes fails in the kernel with EFBIG, for any user and in native code (OpenCV, torch) too."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run([*console_script(), *map(os.fspath, args)], capture_output=True, encoding="utf-8",
                          errors="replace", env=dict(pipeline_env(), PYTHONDONTWRITEBYTECODE="1", **(env or {})),
                          timeout=timeout, preexec_fn=limit if fsize else None)


def _one_line(proc: subprocess.CompletedProcess, code: int) -> str:
    """Exit `code`, no traceback, exactly one `Error: ` line on stderr; that line."""
    assert proc.returncode == code, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = visible_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    return lines[0]


def _mount_tmpfs(where: Path, options: str) -> str:
    """Mount a small tmpfs at `where`; "" when done, else why it could not be (not root, no mount)."""
    if os.geteuid() != 0 or sys.platform != "linux":
        return "mounting a tmpfs needs root on Linux"
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True,
                          text=True)
    return "" if proc.returncode == 0 else f"mount -t tmpfs failed: {proc.stderr.strip()[:200]}"


def _umount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _fill(folder: Path) -> None:
    """Write until the file system says it is full: no byte is left for an output."""
    with open(folder / "filler", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\1" * 4096)
        except OSError:
            pass


def _scored_pkl(path: Path, t: int = 8) -> Path:
    """A small dataset with estimator-like scores (all 1.0 would add a note line to `train`'s output), `t` frames
    per clip: at t=64 each clip's .npz is larger than the "fsize" limit below."""
    ds = make_dataset(n_per_class=2, num_classes=3, t=t)
    rng = np.random.default_rng(0)
    for c in ds.clips:
        c.keypoint_score = rng.uniform(0.5, 1.0, c.keypoint_score.shape).astype(np.float32)
    save_dataset(ds, path)
    return path


def _real_clip(d: Path, n: int = 30) -> Path:
    """A short cut of a real video with one person (so `run`/`extract` reach their output)."""
    from tests.conftest import SHARED
    from tests.support.video_files import cut

    if not SHARED.is_dir():
        pytest.skip(f"real data folder {SHARED} is absent (it sits beside the repo in development and CI only)")
    return cut(SHARED / "videos" / "tai_chi.mp4", d / "clip.mp4", n)


def _openpose_source(d: Path) -> Path:
    from tests.support.model_files import shared_models

    src = shared_models() / "openpose_lite"
    (d / "src").mkdir()
    for f in src.iterdir():
        if f.name.startswith("human-pose-estimation-0001."):
            (d / "src" / f.name).write_bytes(f.read_bytes())
    return d / "src"


# --- class 1: every temp file is made exclusively by the one atomic writer

def test_live_render_never_writes_through_a_planted_temp_name(tmp_path: Path):
    """`live --render OUT` used `.OUT.<pid>.live.mp4`: a symlink planted under that name made it overwrite the
    link's target (any file the user can write) and turned OUT into a symlink. The child here is held before it
    becomes `pipeline`, so its pid (kept across exec) is known and the link planted first."""
    clip = stick_video(tmp_path / "clip.mp4", 20)
    victim = tmp_path / "elsewhere" / "precious.txt"
    victim.parent.mkdir()
    victim.write_text("keep me")
    out = tmp_path / "out.mp4"
    args = [*console_script(), "live", str(clip), "--no-realtime", *FULL, "--render", str(out)]
    hold = "import os, sys; sys.stdin.readline(); os.execv(sys.argv[1], sys.argv[1:])"
    proc = subprocess.Popen([sys.executable, "-c", hold, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, encoding="utf-8", errors="replace", env=pipeline_env())
    for name in (f".out.{proc.pid}.live.mp4", f".{out.name}.{proc.pid}.live.mp4"):
        (tmp_path / name).symlink_to(victim)
    _, stderr = proc.communicate("go\n", timeout=180)
    assert proc.returncode == 0, stderr
    assert victim.read_text() == "keep me", "the render was written through a planted symlink"
    assert out.is_file() and not out.is_symlink()
    cap = cv2_capture(out)
    assert cap == 20, f"OUT holds {cap} frames"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.is_symlink()) == ["clip.mp4", "elsewhere", "out.mp4"]


def cv2_capture(path: Path) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else -1
    cap.release()
    return n


ONE_WRITER = "models/contract/atomic.py"
ONE_VIDEO_WRITER = "pipeline/infer/rendering.py"


def test_only_the_atomic_writer_makes_temp_files_and_renames():
    """A grep over the package: temp files, renames onto an output and pid-named files exist only in the one
    atomic writer, and OpenCV's video writer only in the one verified video writer (which writes through it)."""
    import re

    root = Path(__file__).resolve().parents[1]
    rules = {r"\bmkstemp\(|\bmktemp\(|NamedTemporaryFile\(|\bos\.(replace|rename|renames)\(|shutil\.move\(":
             ONE_WRITER, r"getpid\(\)": ONE_WRITER, r"VideoWriter\(": ONE_VIDEO_WRITER}
    bad = []
    for pkg in ("pipeline", "models", "estimators"):
        for f in sorted((root / pkg).rglob("*.py")):
            rel = f.relative_to(root).as_posix()
            for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
                code = line.split("#", 1)[0]
                for pattern, allowed in rules.items():
                    if re.search(pattern, code) and rel != allowed:
                        bad.append(f"{rel}:{n}: {line.strip()}")
    assert not bad, "\n".join(bad)


def test_the_atomic_writer_never_follows_a_link_at_its_temp_name(tmp_path: Path, monkeypatch):
    """Whatever the random name generator gives, a name that exists (a planted symlink) is not opened: the temp
    file is a new file (O_EXCL), and the target gets the data."""
    import tempfile

    from models.contract import atomic

    victim = tmp_path / "victim"
    victim.write_text("keep me")
    names = iter(["planted0", "fresh000"])
    monkeypatch.setattr(tempfile, "_get_candidate_names", lambda: names)
    (tmp_path / ".out.bin.planted0.tmp").symlink_to(victim)
    atomic.atomic_write_bytes(tmp_path / "out.bin", b"data")
    assert victim.read_text() == "keep me" and (tmp_path / "out.bin").read_bytes() == b"data"
    assert not (tmp_path / "out.bin").is_symlink()
    # The temp names it makes, and only those, are recognised as its own (for cleaning a killed writer's).
    assert atomic.is_temp_of(".out.bin.k2j4x_9a.tmp", "out.bin")
    assert atomic.is_temp_of(".out.mp4.k2j4x_9a.tmp.mp4", "out.mp4")
    assert atomic.is_temp_of(".e.npz.abc123.npz.tmp", "e.npz")  # the form earlier versions left
    for other in (".out.bin.k2j4x_9a.tmp.evil", ".out.binx.k2j4x_9a.tmp", "out.bin.k2j4x_9a.tmp",
                  ".out.bin.a.b.tmp", ".out.bin..tmp"):
        assert not atomic.is_temp_of(other, "out.bin"), other


# --- class 2: a full disk never commits an incomplete output, and says so in one line (exit 1)

@dataclass
class FullDisk:
    id: str
    argv: tuple[str, ...]                 # "{d}": the case folder; "{full}": the folder without room
    setup: Callable[[Path], object]
    names: str                            # the output the message names
    expect: str = "nothing was written"
    env: dict[str, str] = field(default_factory=dict)


FULL_DISK = [
    FullDisk("run-render", ("run", "{d}/clip.mp4", *FULL, "--render", "{full}/out.mp4"), _real_clip,
             "{full}/out.mp4", "cannot write the video"),
    FullDisk("live-render", ("live", "{d}/clip.mp4", "--no-realtime", *FULL, "--render", "{full}/out.mp4"),
             lambda d: stick_video(d / "clip.mp4", 40), "{full}/out.mp4", "cannot write the video"),
    FullDisk("dataset-corrupt", ("dataset", "corrupt", "{d}/ok.pkl", "--spec", "drop=0.5", "--out", "{full}/lq.pkl"),
             lambda d: tiny_pkl(d / "ok.pkl"), "{full}/lq.pkl"),
    FullDisk("dataset-export", ("dataset", "export", "{d}/ok.pkl", "--out", "{full}/npz"),
             lambda d: _scored_pkl(d / "ok.pkl", t=64), "{full}/npz/"),
    FullDisk("train", ("train", "--data", "{d}/ok.pkl", "--out", "{full}/run", *SMALL_TRAIN),
             lambda d: _scored_pkl(d / "ok.pkl"), "{full}/run/"),
    FullDisk("extract", ("extract", "{d}/clip.mp4", *EXTRACT[:-3], "--cache", "{full}/cache", "--no-progress"),
             _real_clip, "{full}/cache/"),
    FullDisk("export-onnx", ("export", "--model", "{d}/m.pt", "--onnx", "{full}/m.onnx"),
             lambda d: checkpoint(d / "m.pt"), "{full}/m.onnx"),
    FullDisk("models-install", ("models", "install", "{d}/src", "openpose-lite"), _openpose_source,
             "{full}/models/openpose-lite/", env={"SKD_MODELS_DIR": "{full}/models"}),
]
FSIZE = 4096  # the file-size limit of the "fsize" variant: every output above is larger


@pytest.mark.parametrize("how", ["tmpfs", "fsize"])
@pytest.mark.parametrize("case", FULL_DISK, ids=[c.id for c in FULL_DISK])
def test_full_disk(case: FullDisk, how: str, tmp_path: Path):
    """`tmpfs`: the output folder is a 64 KiB tmpfs filled to the last byte (a real ENOSPC; needs root, skipped
    otherwise). `fsize`: a file-size limit in the child (a real EFBIG from the kernel, for any user). Either way:
    exit 1 (nothing is wrong with the input), one line naming the output, nothing committed or left behind."""
    d = tmp_path
    full = d / "full"
    full.mkdir()
    case.setup(d)
    mounted = False
    try:
        if how == "tmpfs":
            why = _mount_tmpfs(full, "size=64k")
            if why:
                pytest.skip(why)
            mounted = True
            _fill(full)
        before, folders = snapshot(d), _folders(d)
        sub = {"{d}": str(d), "{full}": str(full)}

        def fill_in(text: str) -> str:
            for k, v in sub.items():
                text = text.replace(k, v)
            return text

        proc = _cli(*(fill_in(a) for a in case.argv), env={k: fill_in(v) for k, v in case.env.items()},
                    fsize=FSIZE if how == "fsize" else None)
        line = _one_line(proc, 1)
        assert fill_in(case.names) in line and case.expect in line, line
        assert "wrote" not in proc.stdout + proc.stderr
        assert new_files(before, d) == [], "an incomplete output (or its temp file) was left"
        assert sorted(f for f in _folders(d) - folders if not any((d / f).rglob("*.lock"))) == [], \
            "a folder the command made was left"
    finally:
        if mounted:
            _umount(full)


def _fail_writes(monkeypatch, when: Callable[[Path], bool]) -> list[Path]:
    """Every `Path.write_bytes` (the atomic writer's) to a path for which `when` is true writes half its bytes,
    then fails with ENOSPC, as a write onto a full disk does. Returns the paths it failed."""
    import errno

    real, failed = Path.write_bytes, []

    def write_bytes(self: Path, data) -> int:
        if when(self):
            real(self, bytes(data)[: len(data) // 2])
            failed.append(self)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    return failed


def test_enospc_injected_into_python_writers(tmp_path: Path, monkeypatch):
    """The same contract where only a Python write fails with ENOSPC (no mount, no limit, any user): the pickle
    writer, the per-clip export (its third clip of six), a training run's first file. One line, nothing
    committed, no folder left."""
    import errno

    import pipeline.data.pyskl_io as pyskl_io
    from models.contract.errors import WriteFailed

    src = tiny_pkl(tmp_path / "ok.pkl")

    def half_then_full(obj, fh, **kw):
        fh.write(pickle.dumps(obj)[:100])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pyskl_io.pickle, "dump", half_then_full)
    npz: list[Path] = []
    failed = _fail_writes(monkeypatch, lambda p: (".npz." in p.name and (npz.append(p) or len(npz) == 3))
                          or p.parent.name == "run")
    for args, named in [(("dataset", "corrupt", src, "--spec", "drop=0.5", "--out", tmp_path / "lq.pkl"), "lq.pkl"),
                        (("dataset", "export", src, "--out", tmp_path / "npz"), "npz"),
                        (("train", "--data", src, "--out", tmp_path / "run", *SMALL_TRAIN), "run")]:
        with pytest.raises(WriteFailed) as e:
            invoke(*args)
        msg = str(e.value)
        assert "\n" not in msg and "No space left on device" in msg and str(tmp_path / named) in msg, msg
        assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.pkl"], args
    assert len(npz) == 3 and len(failed) == 2  # the export got to its third clip; training failed at its first file


def test_a_video_that_does_not_read_back_is_not_committed(tmp_path: Path, monkeypatch):
    """The verified video writer in process: a writer that loses frames (as OpenCV does on a full disk, without a
    word) is caught by reading the file back; OUT is never touched. A complete one is committed."""
    import cv2

    from models.contract.errors import WriteFailed
    from pipeline.infer.rendering import VideoOut

    frames = stick_figure_frames(12)
    out = tmp_path / "out.mp4"
    out.write_bytes(b"the previous render")
    real = cv2.VideoWriter

    class Lossy:
        def __init__(self, *a):
            self.w, self.n = real(*a), 0

        def __getattr__(self, name):
            return getattr(self.w, name)

        def write(self, frame):
            self.n += 1
            if self.n <= 6:
                self.w.write(frame)

    monkeypatch.setattr(cv2, "VideoWriter", Lossy)
    video = VideoOut(out, 25.0)
    for f in frames:
        video.write(f)
    with pytest.raises(WriteFailed, match=r"cannot write the video: it holds 6 of the 12 frames written"):
        video.commit()
    assert out.read_bytes() == b"the previous render" and sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]
    monkeypatch.setattr(cv2, "VideoWriter", real)
    video = VideoOut(out, 25.0)
    for f in frames:
        video.write(f)
    assert video.commit() and cv2_capture(out) == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_train_keeps_a_resumable_run_and_says_how(tmp_path: Path, monkeypatch):
    """A disk that fills after the first epoch's state was saved: the run folder stays (its last.pt resumes), the
    one line says so; nothing half-written is in it."""
    from models.contract.errors import WriteFailed

    src = tiny_pkl(tmp_path / "ok.pkl")
    states: list[Path] = []
    _fail_writes(monkeypatch, lambda p: p.name.startswith(".last.pt.") and (states.append(p) or len(states) > 1))
    args = [a if a != "1" or i != 1 else "2" for i, a in enumerate(SMALL_TRAIN)]  # --epochs 2
    with pytest.raises(WriteFailed, match=r"`--resume` continues once there is room"):
        invoke("train", "--data", src, "--out", tmp_path / "run", *args)
    assert (tmp_path / "run" / "last.pt").is_file() and len(states) == 2
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]


# --- class 3: `models install` vets its source, streams within the catalogue's sizes, is all or nothing

LITE = "pose_landmark_lite.tflite"


def _sparse_tar(path: Path, name: str, real_size: int) -> Path:
    """A GNU sparse tar whose one member is `real_size` bytes of holes: under 100 bytes gzipped."""
    import gzip
    import tarfile

    info = tarfile.TarInfo(name)
    info.size = 0
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    header[156:157] = tarfile.GNUTYPE_SPARSE
    header[483:495] = tarfile.itn(real_size, 12, tarfile.GNU_FORMAT)
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header[:512])
    path.write_bytes(gzip.compress(bytes(header[:512]) + b"\0" * 1024))
    return path


def _gzip_bomb(path: Path, name: str, size: int) -> Path:
    """A tgz whose member is `size` zero bytes (64 MiB: under 300 KB on disk)."""
    import io
    import tarfile

    class Zeros(io.RawIOBase):
        def __init__(self, n: int):
            self.left = n

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:
            k = min(len(b), self.left)
            b[:k] = b"\0" * k
            self.left -= k
            return k

    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo(name)
        info.size = size
        tar.addfile(info, io.BufferedReader(Zeros(size)))
    return path


def _damaged_tgz(path: Path) -> Path:
    """A tgz of a member of the right name and size, cut part-way through its compressed bytes. Fixed mtimes: the
    same bytes every run (bytes flipped part-way through the stream of a file's own mtime sometimes inflated to
    wrong bytes, which the sha256 check refused first, with another message)."""
    import gzip
    import io
    import tarfile

    from estimators.weights import CATALOGUE

    size = CATALOGUE["blazepose-lite"]["sizes"][LITE]
    payload = bytes(range(256)) * (size // 256) + b"\0" * (size % 256)
    info = tarfile.TarInfo(f"package/{LITE}")
    info.size, info.mtime = size, 0
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        tar.addfile(info, io.BytesIO(payload))
    path.write_bytes(gzip.compress(raw.getvalue(), mtime=0))
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[:len(data) // 2]))  # cut part-way: the stream ends inside the member
    return path


@dataclass
class Install:
    id: str
    args: tuple[str, ...]                 # after `models install`; "{d}" the case folder
    setup: Callable[[Path], object]
    expect: str
    names: str
    fsize: int | None = None              # a file-size limit: what the install may write at most
    env: dict[str, str] = field(default_factory=dict)
    keep: tuple[str, ...] = ()


LITE_LIMIT = 3 << 20  # just above blazepose-lite's 2.8 MB: an install that writes more than that fails loudly

INSTALL = [
    Install("fifo-named-tgz", ("{d}/x.tgz",), lambda d: fifo(d / "x.tgz"), "is a named pipe (FIFO), not a folder",
            "{d}/x.tgz", keep=("{d}/x.tgz",)),
    Install("link-to-dev-zero-named-tar", ("{d}/x.tar",), lambda d: symlink(d / "x.tar", "/dev/zero"),
            "is a character device, not a folder", "{d}/x.tar"),
    Install("sparse-tarball-3-GiB", ("{d}/sparse.tgz",), lambda d: _sparse_tar(d / "sparse.tgz", f"package/{LITE}",
                                                                             3 << 30),
            f"{LITE} has 3221225472 bytes, expected 2819824", "{d}/sparse.tgz", fsize=LITE_LIMIT),
    Install("gzip-bomb", ("{d}/bomb.tgz",), lambda d: _gzip_bomb(d / "bomb.tgz", f"package/{LITE}", 64 << 20),
            f"{LITE} has 67108864 bytes, expected 2819824", "{d}/bomb.tgz", fsize=LITE_LIMIT),
    Install("random-file-named-tgz", ("{d}/x.tgz",), lambda d: (d / "x.tgz").write_bytes(os.urandom(4096)),
            "not a tar archive (plain, gzip, bzip2 or xz)", "{d}/x.tgz"),
    Install("damaged-gzip", ("{d}/pose.tgz",), lambda d: _damaged_tgz(d / "pose.tgz"),
            "damaged tarball (", "{d}/pose.tgz"),
    Install("models-dir-is-a-file", ("{d}/src", "openpose-lite"),
            lambda d: (_openpose_source(d), (d / "afile").write_text("x")), "cannot write there (Not a directory)",
            "{d}/afile/openpose-lite", env={"SKD_MODELS_DIR": "{d}/afile"}),
    Install("bad-bin-keeps-no-xml", ("{d}/src", "openpose-lite"),
            lambda d: (_openpose_source(d), (d / "src" / "human-pose-estimation-0001.bin").write_bytes(
                b"\0" * 4_170_036)), "human-pose-estimation-0001.bin has sha256", "{d}/src"),
]


@pytest.mark.parametrize("case", INSTALL, ids=[c.id for c in INSTALL])
def test_models_install_bad_source_or_target(case: Install, tmp_path: Path):
    """Exit 2, one line naming the source (or the target folder), nothing written anywhere (the model folders
    are in the case folder), a FIFO still a FIFO, within seconds (a FIFO or /dev/zero used to hang it)."""
    d = tmp_path
    case.setup(d)
    kept = {k: _kind(Path(k.replace("{d}", str(d)))) for k in case.keep}
    before, folders = snapshot(d), _folders(d)
    env = {"SKD_MODELS_DIR": str(d / "models"), "SKD_BLAZEPOSE_DIR": str(d / "blazepose")}
    env.update({k: v.replace("{d}", str(d)) for k, v in case.env.items()})
    proc = _cli("models", "install", *(a.replace("{d}", str(d)) for a in case.args), env=env, fsize=case.fsize,
                timeout=60)
    line = _one_line(proc, 2)
    assert case.expect in line and case.names.replace("{d}", str(d)) in line, line
    assert new_files(before, d) == [] and _folders(d) == folders, "the install left files or folders"
    for name, kind in kept.items():
        assert _kind(Path(name.replace("{d}", str(d)))) == kind


def test_models_install_read_only_target(tmp_path: Path):
    """A target folder that cannot be written (a read-only tmpfs as root, else chmod 555): one line, exit 2."""
    target = tmp_path / "ro"
    target.mkdir()
    src = _openpose_source(tmp_path)
    mounted = False
    if os.geteuid() == 0:
        why = _mount_tmpfs(target, "ro,size=64k")
        if why:
            pytest.skip(why)
        mounted = True
    else:
        target.chmod(0o555)
    try:
        proc = _cli("models", "install", src, "openpose-lite", env={"SKD_MODELS_DIR": str(target)})
        line = _one_line(proc, 2)
        assert line.startswith(f"Error: {target}") and "cannot write there" in line, line
    finally:
        if mounted:
            _umount(target)
        target.chmod(0o755)


def test_models_install_cleans_a_killed_installs_temp_files(tmp_path: Path):
    """A killed install leaves its temp file (27 MB for heavy); the next install of that folder removes it, and
    nothing that is not of the writer's own naming."""
    src = _openpose_source(tmp_path)
    folder = tmp_path / "models" / "openpose-lite"
    folder.mkdir(parents=True)
    stale = [folder / ".human-pose-estimation-0001.bin.q7z_0k1c.tmp",       # this version's name
             folder / ".human-pose-estimation-0001.xml.a1b2c3d4.xml.tmp"]   # an earlier version's
    for f in stale:
        f.write_bytes(b"\0" * 100_000)
    mine = folder / "notes.tmp"
    mine.write_text("not an install's")
    proc = _cli("models", "install", src, "openpose-lite", env={"SKD_MODELS_DIR": str(tmp_path / "models")})
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["human-pose-estimation-0001.bin",
                                                        "human-pose-estimation-0001.xml", "notes.tmp"]


# --- class 9 (part): SIGTERM is a stop, like Ctrl-C

def test_sigterm_on_live_leaves_no_partial_render(tmp_path: Path):
    """A file source stopped by SIGTERM: the summary, exit 143, no OUT and no temp file (SIGTERM used to kill
    it mid-write and leave `.OUT.<pid>.live.mp4`)."""
    import signal
    import time

    video = write_video(tmp_path / "long.mp4", stick_figure_frames(250))  # 10 s played in real time
    out = tmp_path / "out.mp4"
    proc = popen_pipeline("live", video, *FULL, "--render", out)
    t0 = time.monotonic()
    while not [p for p in tmp_path.iterdir() if p.name.startswith(".out.mp4.")]:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < 90, "the render never started"
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    lines = visible_lines(stderr)
    assert "Traceback" not in stderr and "interrupted after" in lines[0] and "render discarded" in lines[1], stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mp4"]


# What docs/RELIABILITY.md counts for this block, by class (`python -m tests.reliability_counts` prints it).
ISSUE24_BADIO_A = {
    "1. exclusive temp files": ("test_live_render_never_writes_through_a_planted_temp_name",
                                "test_only_the_atomic_writer_makes_temp_files_and_renames",
                                "test_the_atomic_writer_never_follows_a_link_at_its_temp_name"),
    "2. full disk": ("test_full_disk", "test_enospc_injected_into_python_writers",
                     "test_a_video_that_does_not_read_back_is_not_committed",
                     "test_train_keeps_a_resumable_run_and_says_how"),
    "3. models install": ("test_models_install_bad_source_or_target", "test_models_install_read_only_target",
                          "test_models_install_cleans_a_killed_installs_temp_files"),
    "9. live SIGTERM": ("test_sigterm_on_live_leaves_no_partial_render",),
}
