"""MediaPipe BlazePose (lite, full or heavy landmark model; full ships in the mediapipe 0.10.21 wheel), HQ and LQ tiers.

Model choice (`model_complexity` 0/1/2 = lite/full/heavy, `MODELS`): lite and heavy are installed once with
`pipeline models install` (estimators/weights.py); when missing they are refused with that command rather than
letting MediaPipe download them. The settings (cache key) hold the landmark model's sha256.

HQ (tier `high`): per-frame person detection (`static_image_mode=True`), every frame, native
resolution; opt-in horizontal-flip averaging (2x cost; mostly rescues missed detections; the unflipped pose is
kept when the two disagree) and opt-in temporal smoothing. LQ (tier `low`): tracking mode, every
4th frame (the decoder only grabs the others), gaps linearly interpolated, `smooth_landmarks=False`, frames
larger than 1280 px on the long side downscaled (INTER_LINEAR). ../shared/DESIGN.md gives the measurements.

Several people: legacy MediaPipe pose finds one person per call. By default (`max_persons=1`) the tracker
keeps the person seen longest and most confidently (per-frame detection can jump between people; those
frames then count as missing for the kept person). With `max_persons=M>1`, each processed frame is run M
times, each time with the persons found so far greyed out (M x cost), and the tracker keeps M tracks.

Output: layout blazepose33, pixel (x, y) of the original frame, score = landmark visibility (times presence
where MediaPipe fills it in). Joints placed outside the frame with visibility below `visibility_threshold`
are invented limbs (tracking mode does this) and are dropped (coordinates 0, score 0).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np

from estimators import weights
from estimators.base import EstimatorConfig, PoseEstimator, native_stderr_quiet
from estimators.tracking import keypoint_box, temporal_smooth
from models.contract.errors import BadInput
from models.contract.layouts import BLAZEPOSE33

NUM_JOINTS = 33
MODELS: dict[str, int] = {"lite": 0, "full": 1, "heavy": 2}  # name -> MediaPipe model_complexity
_COMPLEXITY_NAME = {v: k for k, v in MODELS.items()}
NPM_PACKAGE = "@mediapipe/pose@0.5.1675469404"  # the version whose files the sha256 below were taken from


_HOW = (f"`pipeline models install --npm` (runs `npm pack {NPM_PACKAGE}`), or "
        "`pipeline models install FOLDER_OR_TARBALL` with the file from that npm package")
WEIGHTS = weights.register({
    f"blazepose-{m}": {
        "what": f"BlazePose GHUM {m} landmark model (33 joints), MediaPipe Pose model_complexity={MODELS[m]}",
        "folder": "blazepose",
        "files": {f"pose_landmark_{m}.tflite": digest},
        "sizes": {f"pose_landmark_{m}.tflite": size},
        "npm": NPM_PACKAGE,
        "how": _HOW,
        "licence": "Apache-2.0",
    } for m, digest, size in (
        ("lite", "f17bfbecadb61c3be1baa8b8d851cc6619c870a87167b32848ad20db306b9d61", 2_819_824),
        ("heavy", "59e42d71bcd44cbdbabc419f0ff76686595fd265419566bd4009ef703ea8e1fe", 27_709_200))})


@dataclass(frozen=True)
class MediaPipeConfig(EstimatorConfig):
    static_image_mode: bool = True    # True: detect the person in every frame; False: track from frame to frame
    stride: int = 1                   # process every stride-th frame; the others are interpolated
    max_side: int | None = None       # downscale (INTER_LINEAR) frames whose longer side exceeds this
    flip_average: bool = False        # also run on the mirrored frame and average (2x cost)
    smooth: int = 0                   # temporal smoothing half-window in frames (0 = off)
    smooth_landmarks: bool = False    # MediaPipe's own filter (tracking mode only)
    max_persons: int = 1
    model_complexity: int = 1         # 0 lite, 1 full (in the wheel), 2 heavy (`pipeline models install`)
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    visibility_threshold: float = 0.5  # out-of-frame joints below this are dropped
    flip_agreement: float = 0.1       # flip and plain poses agree within this mean distance / body size

    # high: detection on every frame, native resolution; low: tracking, every 4th frame, at most 1280 px
    TIERS: ClassVar[dict[str, dict]] = {"high": {},
                                        "low": {"static_image_mode": False, "stride": 4, "max_side": 1280}}
    HELP: ClassVar[str] = "BlazePose full (ships in the mediapipe wheel) in both tiers"

    def build(self) -> MediaPipePose:
        return MediaPipePose(self)

    def weights(self) -> tuple[str, ...]:
        return () if self.model == "full" else (f"blazepose-{self.model}",)

    def __post_init__(self) -> None:
        if self.stride < 1:
            raise BadInput("stride must be >= 1")
        if self.max_persons < 1:
            raise BadInput("max_persons must be >= 1")
        if self.max_side is not None and self.max_side < 64:
            raise BadInput("max_side must be >= 64")
        if self.model_complexity not in _COMPLEXITY_NAME:
            raise BadInput("model_complexity must be 0 (lite), 1 (full) or 2 (heavy)")

    @property
    def model(self) -> str:
        return _COMPLEXITY_NAME[self.model_complexity]


def landmark_weights(model: str) -> Path:
    """The verified landmark model file for `model` (lite, full, heavy); BadInput with the install command if not.

    lite/heavy must also sit in mediapipe's own folder: anywhere else the graph would not find them and would
    try to download them.
    """
    fname = f"pose_landmark_{model}.tflite"
    if model == "full":
        path = weights.mediapipe_landmark_dir() / fname
        if not path.is_file():
            raise BadInput("the bundled BlazePose full model is missing: reinstall mediapipe==0.10.21", path)
        return path
    name = f"blazepose-{model}"
    path = weights.require(name)[fname]
    if not (weights.mediapipe_landmark_dir() / fname).is_file():
        raise BadInput(f"{name}: {fname} not in {weights.mediapipe_landmark_dir()}; {weights.install_hint(name)}")
    return path


class MediaPipePose(PoseEstimator):
    layout = "blazepose33"

    def __init__(self, cfg: MediaPipeConfig | None = None):
        super().__init__(cfg or MediaPipeConfig())
        self._mp = None  # imported on first use: settings() (the cache key) must stay cheap
        self._poses: list = []
        self._flip_poses: list = []
        self._flip_perm = BLAZEPOSE33.flip_permutation()

    def settings(self) -> dict:
        d = asdict(self.cfg)
        d["mediapipe"] = importlib.metadata.version("mediapipe")
        d["model"] = self.cfg.model
        d["weights_sha256"] = weights.sha256_of(landmark_weights(self.cfg.model))
        return d

    @property
    def model(self) -> str:
        return f"BlazePose {self.cfg.model}"

    @staticmethod
    def _native(fn, *args):
        """Every call into MediaPipe goes through here, the one place that silences it: its C++ side (TFLite,
        absl, the inference feedback manager) prints lines on fd 2 whenever a graph starts or restarts, i.e. on
        each video, and a bad video's error must stay the only line (SKD_VERBOSE=1 keeps them)."""
        os.environ.setdefault("GLOG_minloglevel", "2")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        with native_stderr_quiet():
            return fn(*args)

    def load(self) -> None:
        """Build the graphs (~1 s) if `estimate()` has not: frame-by-frame callers (`pipeline live`) use `detect`."""
        if not self._poses:
            self.begin_video()

    def _new_pose(self):
        landmark_weights(self.cfg.model)  # refuse missing lite/heavy before MediaPipe tries a download
        if self._mp is None:
            self._mp = self._native(importlib.import_module, "mediapipe")
        c = self.cfg

        def build():
            pose = self._mp.solutions.pose.Pose(
                static_image_mode=c.static_image_mode, model_complexity=c.model_complexity,
                smooth_landmarks=c.smooth_landmarks, enable_segmentation=False,
                min_detection_confidence=c.min_detection_confidence,
                min_tracking_confidence=c.min_tracking_confidence)
            # The graph opens its calculators (and TFLite logs its delegate) on worker threads after start-up; one
            # blank frame waits for that inside the quiet block, so no half-line escapes to the user's stderr.
            pose.process(np.zeros((64, 64, 3), np.uint8))
            pose.reset()
            return pose

        return self._native(build)

    def begin_video(self) -> None:
        """Graphs ready for a new video: tracking state must not leak from one video into the next.

        Graphs are built once and `reset()` between videos (a new graph costs ~0.1 s more on its first frame).
        """
        if self._poses:
            for p in self._poses + self._flip_poses:
                self._native(p.reset)
            return
        self._poses = [self._new_pose() for _ in range(self.cfg.max_persons)]
        if self.cfg.flip_average:
            self._flip_poses = [self._new_pose() for _ in range(self.cfg.max_persons)]

    def close(self) -> None:
        for p in self._poses + self._flip_poses:
            self._native(p.close)
        self._poses, self._flip_poses = [], []

    def _run(self, pose, rgb: np.ndarray, scale: float, orig_hw: tuple[int, int]
             ) -> tuple[np.ndarray, np.ndarray] | None:
        res = self._native(pose.process, rgb)
        if res.pose_landmarks is None:
            return None
        h, w = rgb.shape[:2]
        lm = res.pose_landmarks.landmark
        kp = np.array([(p.x * w, p.y * h) for p in lm], np.float32) / scale
        vis = np.array([p.visibility for p in lm], np.float32)
        pres = np.array([p.presence if p.HasField("presence") else 1.0 for p in lm], np.float32)
        score = np.clip(vis * pres, 0, 1)
        oh, ow = orig_hw
        outside = (kp[:, 0] < 0) | (kp[:, 0] > ow) | (kp[:, 1] < 0) | (kp[:, 1] > oh)
        score[outside & (score < self.cfg.visibility_threshold)] = 0
        kp[score <= 0] = 0
        return kp, score

    def _merge_flip(self, plain, flipped, width: int):
        if flipped is None:
            return plain
        kpf, scf = flipped
        kpf = kpf[self._flip_perm].copy()
        scf = scf[self._flip_perm].copy()
        kpf[:, 0] = np.where(scf > 0, width - kpf[:, 0], 0)
        if plain is None:
            return kpf, scf  # the mirrored image found a person the plain one missed
        kp, sc = plain
        both = (sc > 0) & (scf > 0)
        box = keypoint_box(kp, sc)
        if box is None or not both.any():
            return plain
        size = max(float(np.hypot(box[2] - box[0], box[3] - box[1])), 1e-6)
        if float(np.linalg.norm(kp[both] - kpf[both], axis=-1).mean()) / size > self.cfg.flip_agreement:
            return plain  # they disagree (e.g. left/right confusion): trust the unflipped pose
        w = sc + scf
        out_k = np.where(both[:, None], (kp * sc[:, None] + kpf * scf[:, None]) / np.maximum(w, 1e-6)[:, None],
                         np.where((sc > 0)[:, None], kp, kpf))
        out_s = np.where(both, (sc + scf) / 2, np.maximum(sc, scf))
        return out_k.astype(np.float32), out_s.astype(np.float32)

    def detect(self, frame: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Persons in one BGR frame (up to max_persons), in original-frame pixels."""
        self.load()
        oh, ow = frame.shape[:2]
        scale = 1.0
        if self.cfg.max_side is not None and max(oh, ow) > self.cfg.max_side:
            scale = self.cfg.max_side / max(oh, ow)
            frame = cv2.resize(frame, (round(ow * scale), round(oh * scale)), interpolation=cv2.INTER_LINEAR)
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        dets = []
        for p in range(self.cfg.max_persons):
            found = self._run(self._poses[p], rgb, scale, (oh, ow))
            if self.cfg.flip_average:
                flipped = self._run(self._flip_poses[p], np.ascontiguousarray(rgb[:, ::-1]), scale, (oh, ow))
                found = self._merge_flip(found, flipped, ow)
            if found is None:
                break
            dets.append(found)
            if p + 1 < self.cfg.max_persons:
                rgb = _grey_out(rgb, found[0] * scale, found[1])
        return dets

    def finish(self, kp: np.ndarray, sc: np.ndarray) -> np.ndarray:
        return temporal_smooth(kp, sc, self.cfg.smooth) if self.cfg.smooth > 0 else kp


def _grey_out(rgb: np.ndarray, kp: np.ndarray, score: np.ndarray, pad: float = 0.15) -> np.ndarray:
    """A copy of `rgb` with the found person's keypoint box (padded) filled with the image's mean colour."""
    box = keypoint_box(kp, score)
    if box is None:
        return rgb
    h, w = rgb.shape[:2]
    bw, bh = box[2] - box[0], box[3] - box[1]
    x0, y0 = int(max(0, box[0] - pad * bw)), int(max(0, box[1] - pad * bh))
    x1, y1 = int(min(w, box[2] + pad * bw + 1)), int(min(h, box[3] + pad * bh + 1))
    out = rgb.copy()
    out[y0:y1, x0:x1] = rgb.reshape(-1, 3).mean(0).astype(np.uint8)
    return out
