"""OpenPose-lite: Lightweight OpenPose (Intel's `human-pose-estimation-0001` OpenVINO IR) on the CPU, bottom-up.

Every person of a frame comes out of one network pass: the frame is resized to height `height` (256, the
model's training size; aspect kept), its width padded to a multiple of 8, fed as BGR 0-255 NCHW (mean and scale
are inside the model). The network gives 19 heatmaps (18 keypoints + background) and 38 part-affinity maps at
stride 8; they are upsampled by `upsample` (cubic) and grouped into persons by `estimators/paf_grouping.py`.
Persons are followed across frames by the project's tracker, up to `max_persons`; frames skipped by `stride`
are interpolated like MediaPipe's LQ tier. Output layout `openpose18`, score = heatmap peak value.

The weights are installed once (`pipeline models install SRC openpose-lite`, estimators/weights.py); the
settings (cache key) hold their sha256.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import asdict, dataclass, field
from typing import ClassVar

import cv2
import numpy as np

from estimators import weights
from estimators.base import EstimatorConfig, PoseEstimator
from estimators.paf_grouping import NUM_KEYPOINTS, GroupingConfig, group_persons
from models.contract.errors import BadInput

MODEL = "openpose-lite"
XML = "human-pose-estimation-0001.xml"
STRIDE = 8  # the network's output stride


WEIGHTS = weights.register({
    MODEL: {
        "what": "Lightweight OpenPose (Intel Open Model Zoo human-pose-estimation-0001, FP16-INT8), OpenVINO IR, "
                "18 joints + part-affinity fields",
        "folder": "models",
        "files": {
            XML: "c3a47de94906e6b3256eb16af7274141b2fc9f6c7889a02d96ef430b9bc321d3",
            "human-pose-estimation-0001.bin": "fc7e9dde0f4a34876cfbbd266388a59526a8c8c1bc9394ce4827b7a007d20f82",
        },
        "sizes": {XML: 435_357, "human-pose-estimation-0001.bin": 4_170_036},
        "npm": None,
        "how": "`omz_downloader --name human-pose-estimation-0001 --precisions FP16-INT8` (package openvino-dev), "
               "then `pipeline models install THAT_FOLDER openpose-lite`",
        "licence": "Apache-2.0 (Open Model Zoo)",
    }})


@dataclass(frozen=True)
class OpenPoseConfig(EstimatorConfig):
    height: int = 256             # network input height (the model was trained at 256)
    stride: int = 1               # process every stride-th frame; the others are interpolated
    max_persons: int = 1
    upsample: int = 4             # heatmaps/PAFs upsampled by this before peak finding
    threads: int = 1              # OpenVINO inference threads (0 = OpenVINO's choice)
    grouping: GroupingConfig = field(default_factory=GroupingConfig)

    # high: every frame; low: every 4th frame, gaps interpolated (the same network either way): the base's TIERS
    HELP: ClassVar[str] = "Lightweight OpenPose, every person in one pass (the same network in both tiers)"

    def __post_init__(self) -> None:
        if self.height < 32 or self.height % STRIDE:
            raise BadInput(f"height must be a multiple of {STRIDE}, >= 32")
        if self.stride < 1 or self.max_persons < 1 or self.upsample < 1 or self.threads < 0:
            raise BadInput("stride, max_persons, upsample must be >= 1 and threads >= 0")

    def weights(self) -> tuple[str, ...]:
        return (MODEL,)

    def build(self) -> OpenPoseLite:
        return OpenPoseLite(self)


class OpenPoseLite(PoseEstimator):
    layout = "openpose18"

    def __init__(self, cfg: OpenPoseConfig | None = None):
        super().__init__(cfg or OpenPoseConfig())
        self._core = None
        self._model = None
        self._compiled: dict[int, object] = {}  # input width -> compiled model (one shape per video)

    def settings(self) -> dict:
        d = asdict(self.cfg)
        d["threads"] = None  # the thread count does not change the output
        d["openvino"] = importlib.metadata.version("openvino")
        d["weights_sha256"] = weights.weights_sha256(MODEL)
        return d

    @property
    def model(self) -> str:
        return MODEL

    def _load(self) -> None:
        if self._model is not None:
            return
        files = weights.require(MODEL)
        try:
            import openvino as ov
        except ImportError as e:
            raise BadInput(f"openpose-lite needs the openvino package (pip install openvino): {e}") from None
        self._core = ov.Core()
        self._model = self._core.read_model(str(files[XML]))

    def _compiled_for(self, width: int):
        """The model compiled for input `[1, 3, height, width]` (reshaping is cheap, compiling ~0.1 s)."""
        if width not in self._compiled:
            self._load()
            model = self._model.clone()
            model.reshape({model.inputs[0]: [1, 3, self.cfg.height, width]})
            config = {"INFERENCE_NUM_THREADS": self.cfg.threads} if self.cfg.threads else {}
            compiled = self._core.compile_model(model, "CPU", config)
            outs = {int(o.get_partial_shape()[1].get_length()): o for o in compiled.outputs}
            if set(outs) != {NUM_KEYPOINTS + 1, 2 * 19}:
                raise BadInput(f"not the 18-keypoint OpenPose model (output channels {sorted(outs)})",
                               weights.model_dir(MODEL) / XML)
            self._compiled[width] = (compiled, outs[NUM_KEYPOINTS + 1], outs[38])
        return self._compiled[width]

    def network_input(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        """`[1, 3, height, W]` float32 BGR 0-255 (right-padded with zeros to a multiple of 8) and the scale."""
        h, w = frame.shape[:2]
        scale = self.cfg.height / h
        rw = max(1, round(w * scale))
        img = cv2.resize(frame, (rw, self.cfg.height), interpolation=cv2.INTER_LINEAR if scale < 1 else
                         cv2.INTER_CUBIC)
        pw = -(-rw // STRIDE) * STRIDE
        x = np.zeros((self.cfg.height, pw, 3), np.float32)
        x[:, :rw] = img
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None]), scale

    def maps(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """Upsampled heatmaps `[19, H, W]`, PAFs `[38, H, W]` and the frame->map scale for one BGR frame."""
        x, scale = self.network_input(frame)
        compiled, hm_out, paf_out = self._compiled_for(x.shape[3])
        res = compiled(x)
        u = self.cfg.upsample

        def up(a: np.ndarray) -> np.ndarray:
            a = np.ascontiguousarray(a[0].transpose(1, 2, 0))
            if u > 1:
                a = cv2.resize(a, (a.shape[1] * u, a.shape[0] * u), interpolation=cv2.INTER_CUBIC)
            return a.transpose(2, 0, 1)

        return up(res[hm_out]), up(res[paf_out]), scale

    def to_frame(self, kp: np.ndarray, scale: float) -> np.ndarray:
        """Map pixels (upsampled stride-8 grid, cell centres) -> frame pixels."""
        return ((kp + 0.5) * (STRIDE / self.cfg.upsample) - 0.5) / scale

    def detect(self, frame: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every person in one BGR frame, in frame pixels (best first)."""
        heatmaps, pafs, scale = self.maps(frame)
        h, w = frame.shape[:2]
        out = []
        for kp, sc in group_persons(heatmaps, pafs, self.cfg.grouping):
            kp = self.to_frame(kp, scale)
            inside = (kp[:, 0] >= 0) & (kp[:, 0] < w) & (kp[:, 1] >= 0) & (kp[:, 1] < h)  # not in the padding
            sc = np.where(inside, sc, 0).astype(np.float32)
            kp[sc <= 0] = 0
            out.append((kp.astype(np.float32), sc))
        return out

    def close(self) -> None:
        self._compiled.clear()
        self._model = None
        self._core = None
