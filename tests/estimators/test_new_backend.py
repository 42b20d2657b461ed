"""A new pose backend is one file plus one registry line: a backend added only through `ESTIMATORS` (the dict,
monkeypatched) goes through `extract` (both tiers), the cache, `dataset build` and `run` with no other edit."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest

from estimators import ESTIMATORS
from estimators.base import EstimatorConfig, PoseEstimator
from pipeline.data.pyskl_io import load_dataset
from tests.support.cli_support import invoke
from tests.support.run_files import tiny_checkpoint
from tests.support.video_files import stick_figure_frames, write_video

JOINTS = 17  # coco17


# ---- what a backend author writes (the "one file") ----------------------------------------------------------

@dataclass(frozen=True)
class BlobConfig(EstimatorConfig):
    stride: int = 1
    max_persons: int = 1
    threshold: int = 128

    TIERS: ClassVar[dict[str, dict]] = {"high": {}, "low": {"stride": 3}}
    HELP: ClassVar[str] = "test backend: the dark blob of a frame"

    def build(self) -> BlobPose:
        return BlobPose(self)


class BlobPose(PoseEstimator):
    """Each dark blob is a person whose joints sit at fixed fractions of its box (they move with it)."""

    layout = "coco17"

    def settings(self) -> dict:
        return {"stride": self.cfg.stride, "threshold": self.cfg.threshold, "version": 1}

    def detect(self, frame: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        dark = (cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) < self.cfg.threshold).astype(np.uint8)
        n, _, boxes, _ = cv2.connectedComponentsWithStats(cv2.dilate(dark, np.ones((9, 9), np.uint8)))
        pattern = np.linspace(0, 1, JOINTS * 2, dtype=np.float32).reshape(JOINTS, 2)
        return [(np.array([x, y], np.float32) + pattern * np.array([w, h], np.float32),
                 np.full(JOINTS, 0.9, np.float32))
                for x, y, w, h, area in boxes[1:][: self.cfg.max_persons] if area > 300]


# ---- the "one registry line" -------------------------------------------------------------------------------

@pytest.fixture
def blob_registered(monkeypatch):
    monkeypatch.setitem(ESTIMATORS, "blob", BlobConfig)


def test_a_backend_added_by_its_registry_line_runs_extract_build_run(blob_registered, tmp_path: Path,
                                                                     restore_torch_threads):
    clips = tmp_path / "clips"
    clips.mkdir()
    for i, n in enumerate((30, 36)):
        write_video(clips / f"fig{i}.mp4", stick_figure_frames(n + i))
    cache = tmp_path / "cache"
    for q in ("high", "low"):
        out = invoke("extract", clips, "--quality", q, "--estimator", "blob", "--cache", cache, "--quiet")
        assert out.strip().splitlines()[-1].startswith("2 done, 0 skipped, 0 failed"), out
    # filed under the registry name, each with its tier's settings
    entries = sorted((cache / "poses" / "blob").rglob("*.npz"))
    assert len(entries) == 4
    metas = [json.loads(str(np.load(e)["meta"])) for e in entries]
    assert {m["estimator"] for m in metas} == {"blob"} and {m["settings"]["stride"] for m in metas} == {1, 3}
    again = invoke("extract", clips, "--quality", "low", "--estimator", "blob", "--cache", cache, "--quiet")
    assert again.strip().startswith("0 done, 2 skipped")

    (clips / "labels.csv").write_text("fig0.mp4,wave\nfig1.mp4,jump\n")
    out = invoke("dataset", "build", "--cache", cache, "--labels", clips / "labels.csv", "--estimator", "blob",
                 "--out-hq", tmp_path / "hq.pkl", "--out-lq", tmp_path / "lq.pkl", "--test-every", "2")
    assert "2 clips, 2 classes, layout coco17" in out, out
    hq, lq = load_dataset(tmp_path / "hq.pkl"), load_dataset(tmp_path / "lq.pkl")
    assert [c.total_frames for c in hq.clips] == [c.total_frames for c in lq.clips] == [30, 37]
    assert not np.array_equal(hq.clips[0].keypoint, lq.clips[0].keypoint)  # LQ interpolates 2 frames of 3

    ckpt = tiny_checkpoint(tmp_path / "student.pt", layout="coco17")
    out = invoke("run", clips / "fig0.mp4", "--estimator", "blob", "--model", ckpt, "--json", "--no-progress",
                 "--threads", "1")
    rec = json.loads(out)
    assert rec["frames"] == 30 and rec["persons"] == 1 and len(rec["labels"]) == 4
