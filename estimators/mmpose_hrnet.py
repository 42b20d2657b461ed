"""HRNet (or any top-down COCO-17 heatmap model) through MMPose: an optional backend, `pip install .[mmpose]`.

Real inference from an MMPose config and a checkpoint (a path, or a URL MMPose publishes when online). The
model is built from MMPose's model registry and the config's own test pipeline (`GetBBoxCenterScale`,
`TopdownAffine`, `PackPoseInputs`) and run through `model.test_step`, which is what `mmpose.apis` does;
`mmpose.apis` itself is not imported because it pulls in torchvision, which does not load beside the CPU torch
here. mmcv-lite lacks the compiled `mmcv.ops`; only MMPose's deformable-DETR heads use them at import time,
so a placeholder that refuses to be built stands in for `MultiScaleDeformableAttention` when they are absent.

Person boxes: the whole frame (`box="frame"`, one person per frame) or MediaPipe's pose (`box="mediapipe"`:
the box of the BlazePose landmarks, up to `max_persons` with the mask-and-rerun pass). Checkpoints load with
`torch.load(weights_only=True)`: tensors only, nothing executed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import sys
import types
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from estimators.base import EstimatorConfig, Option, PoseEstimator
from estimators.mediapipe_pose import MediaPipeConfig
from estimators.tracking import keypoint_box
from models.contract.errors import BadInput

DEFAULT_CONFIG = "td-hm_hrnet-w32_8xb64-210e_coco-256x192.py"
# MMPose's published weights for DEFAULT_CONFIG (downloaded only when given as --mmpose-checkpoint and online).
DEFAULT_CHECKPOINT_URL = ("https://download.openmmlab.com/mmpose/top_down/hrnet/"
                          "hrnet_w32_coco_256x192-c78dce93_20200708.pth")


@dataclass(frozen=True)
class MMPoseConfig(EstimatorConfig):
    config: str = DEFAULT_CONFIG      # a config .py path, or the file name of one bundled with mmpose
    checkpoint: str | None = None     # a .pth path or an http(s) URL; None = random weights (tests only)
    box: str = "frame"                # "frame" or "mediapipe"
    stride: int = 1                   # process every stride-th frame, interpolate the rest
    max_persons: int = 1
    device: str = "cpu"
    min_person_score: float = 0.2     # a box whose mean keypoint score is below this holds no person
    flip_test: bool | None = None     # None: as the config's test_cfg says
    threads: int | None = None        # torch intra-op threads (None: torch's default); not part of the cache key

    # HRNet on every frame (high) or on every 4th frame, the rest interpolated (low): the base's TIERS
    OPTIONS: ClassVar[dict[str, Option]] = {
        "config": Option("MMPose top-down config (.py path or bundled file name; default HRNet-W32 COCO 256x192)."),
        "checkpoint": Option("MMPose checkpoint: a .pth path or an http(s) URL.", required=True),
        "box": Option("Person box for MMPose: the whole frame, or MediaPipe's pose box.",
                      choices=("frame", "mediapipe")),
    }
    HELP: ClassVar[str] = "HRNet through MMPose (optional extra, see README; needs --mmpose-checkpoint)"

    def build(self) -> MMPoseHRNet:
        return MMPoseHRNet(self)

    def __post_init__(self) -> None:
        if self.box not in ("frame", "mediapipe"):
            raise BadInput(f"unknown box source {self.box!r} (frame, mediapipe)")
        if self.stride < 1 or self.max_persons < 1:
            raise BadInput("stride and max_persons must be >= 1")


def mmpose_available() -> tuple[bool, str]:
    """(True, '') when mmpose and friends import here, else (False, the reason)."""
    try:
        _import_mmpose()
    except Exception as e:  # ImportError, or a broken install raising something else
        return False, f"{type(e).__name__}: {e}"
    return True, ""


def _import_mmpose():
    try:
        import mmcv.ops  # noqa: F401  (full mmcv: nothing to do)
    except ImportError:
        for k in [k for k in sys.modules if k == "mmcv.ops" or k.startswith("mmcv.ops.")]:
            del sys.modules[k]
        import torch

        stub = types.ModuleType("mmcv.ops")
        stub.__doc__ = "placeholder: mmcv-lite has no compiled ops"

        class MultiScaleDeformableAttention(torch.nn.Module):
            def __init__(self, *args, **kwargs):
                raise ImportError("this model needs the full mmcv (compiled mmcv.ops), not mmcv-lite")

        stub.MultiScaleDeformableAttention = MultiScaleDeformableAttention
        sys.modules["mmcv.ops"] = stub
    with warnings.catch_warnings():  # mmcv-lite warns about the very ops the stub stands in for
        warnings.simplefilter("ignore")
        import mmpose
        import mmpose.datasets  # noqa: F401  registers the transforms of the test pipeline
        import mmpose.models  # noqa: F401  registers backbones, heads, pose estimators

    return mmpose


def resolve_config(config: str) -> Path:
    p = Path(config)
    if p.is_file():
        return p
    mmpose = _import_mmpose()
    bundled = Path(mmpose.__file__).parent / ".mim" / "configs"
    hits = sorted(bundled.rglob(p.name if p.suffix == ".py" else p.name + ".py")) if bundled.is_dir() else []
    if not hits:
        raise BadInput("MMPose config not found (neither a file nor a config bundled with mmpose)", config)
    return hits[0]


def _file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


class MMPoseHRNet(PoseEstimator):
    layout = "coco17"

    def __init__(self, cfg: MMPoseConfig | None = None):
        super().__init__(cfg or MMPoseConfig())
        ok, why = mmpose_available()
        if not ok:
            raise BadInput(f"the mmpose backend is not installed or does not import ({why}); "
                           f"see the README for `pip install .[mmpose]`")
        self.config_path = resolve_config(self.cfg.config)
        self._settings: dict | None = None
        self.net = None
        self.pipeline = None
        self.meta: dict = {}
        self._mediapipe = None

    def settings(self) -> dict:
        if self._settings is None:
            d = asdict(self.cfg)
            d.pop("threads")  # how fast, not what: entries made with any thread count are the same
            d["config"] = f"{self.config_path.name}:{_file_digest(self.config_path)}"
            ck = self.cfg.checkpoint
            if ck is not None and not ck.startswith(("http://", "https://")):
                if not Path(ck).is_file():
                    raise BadInput("checkpoint not found", ck)
                d["checkpoint"] = f"{Path(ck).name}:{_file_digest(Path(ck))}"
            d["mmpose"] = importlib.metadata.version("mmpose")
            self._settings = d
        return self._settings

    @property
    def model(self) -> str:
        return f"MMPose {self.config_path.name}"

    def load(self) -> None:
        """Build the model from the config, load the checkpoint, build the test pipeline (once)."""
        if self.net is not None:
            return
        import torch
        from mmengine.config import Config
        from mmengine.dataset import Compose
        from mmengine.registry import init_default_scope
        from mmpose.datasets.datasets.utils import parse_pose_metainfo
        from mmpose.registry import DATASETS, MODELS

        if self.cfg.threads is not None:
            torch.set_num_threads(self.cfg.threads)
        try:
            cfg = Config.fromfile(str(self.config_path))
        except Exception as e:
            raise BadInput(f"not a readable MMPose config ({type(e).__name__}: {e})", self.config_path) from None
        init_default_scope(cfg.get("default_scope", "mmpose"))
        model_cfg = cfg.model
        if "init_cfg" in model_cfg.get("backbone", {}):
            model_cfg.backbone.init_cfg = None  # no ImageNet download: the checkpoint supplies all weights
        if self.cfg.flip_test is not None:
            model_cfg.test_cfg.flip_test = self.cfg.flip_test
        model = MODELS.build(model_cfg)
        if self.cfg.checkpoint is not None:
            try:
                model.load_state_dict(self._read_checkpoint(self.cfg.checkpoint, torch), strict=True)
            except RuntimeError as e:  # missing/unexpected keys or shapes: weights of another model
                first = str(e).strip().splitlines()[1:2] or [str(e)[:200]]
                raise BadInput(f"checkpoint does not fit {self.config_path.name}: {first[0].strip()[:200]}",
                               self.cfg.checkpoint) from None
        model.to(self.cfg.device).eval()
        ds_cfg = cfg.test_dataloader.dataset
        metainfo = ds_cfg.metainfo if "metainfo" in ds_cfg else DATASETS.get(ds_cfg.type).METAINFO
        with warnings.catch_warnings():  # "config file ... does not exist; a matched one will be used"
            warnings.simplefilter("ignore")
            self.meta = parse_pose_metainfo(metainfo)
        if self.meta.get("num_keypoints") != 17:
            raise BadInput(f"the model predicts {self.meta.get('num_keypoints')} keypoints; only COCO-17 "
                           f"top-down models are supported", self.config_path)
        self.pipeline = Compose(ds_cfg.pipeline)
        self.net = model

    def _read_checkpoint(self, ck: str, torch) -> dict:
        try:
            if ck.startswith(("http://", "https://")):
                obj = torch.hub.load_state_dict_from_url(ck, map_location="cpu", weights_only=True)
            else:
                obj = torch.load(ck, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise BadInput("checkpoint not found", ck) from None
        except Exception as e:  # refused by weights_only, truncated, not a checkpoint
            raise BadInput(f"not a loadable tensor checkpoint ({type(e).__name__}: {str(e)[:200]})", ck) from None
        state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
        if not isinstance(state, dict):
            raise BadInput("checkpoint holds no state_dict", ck)
        return {k.removeprefix("module."): v for k, v in state.items()}

    def _boxes(self, frame: np.ndarray) -> list[np.ndarray]:
        h, w = frame.shape[:2]
        if self.cfg.box == "frame":
            return [np.array([0, 0, w, h], np.float32)]
        if self._mediapipe is None:
            self._mediapipe = MediaPipeConfig.tier("high", max_persons=self.cfg.max_persons).build()
            self._mediapipe.begin_video()
        boxes = []
        for kp, sc in self._mediapipe.detect(frame):
            b = keypoint_box(kp, sc)
            if b is not None:
                boxes.append(np.clip(b, 0, [w, h, w, h]).astype(np.float32))
        return boxes

    def detect(self, frame: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """COCO-17 keypoints (pixels) and scores for each person box in one BGR frame."""
        import torch
        from mmengine.dataset import pseudo_collate

        self.load()
        boxes = self._boxes(frame)
        if not boxes:
            return []
        items = []
        for b in boxes:
            info = dict(img=frame, bbox=b[None], bbox_score=np.ones(1, np.float32))
            info.update(self.meta)
            items.append(self.pipeline(info))
        with torch.no_grad():
            samples = self.net.test_step(pseudo_collate(items))
        out = []
        for s in samples:
            kp = np.asarray(s.pred_instances.keypoints[0], np.float32)[:, :2]
            sc = np.clip(np.asarray(s.pred_instances.keypoint_scores[0], np.float32), 0, 1)
            if float(sc.mean()) >= self.cfg.min_person_score:
                out.append((kp, sc))
        return out

    def begin_video(self) -> None:
        self.load()
        if self._mediapipe is not None:
            self._mediapipe.begin_video()

    def close(self) -> None:
        if self._mediapipe is not None:
            self._mediapipe.close()
            self._mediapipe = None

