"""The model part of `pipeline run`: options, a checkpoint (PyTorch) or an exported file (onnxruntime), windowing
and classification of one pose sequence.

Windows: a clip of at most `AUTO_WHOLE_S` seconds is classified whole (as the model was trained on whole
clips); a longer one, or any clip when `--window`/`--stride` is given, in sliding windows. Each window is
normalised and sampled on its own, exactly like one training clip, and the overall label is the mean of the
probabilities of the windows in which a person was found.

Open set: with a rule in the model (models/openset.py), each window gets the rule's score, called "distance"
throughout (the Mahalanobis distance of its pooled features, or for an energy rule the energy of its logits,
-logsumexp); the clip's score is the median over its windows with a person (`clip_distance`), and the clip is
one of the known actions when that is at most the rule's threshold.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from estimators import DEFAULT
from estimators.base import PoseResult
from models.contract.errors import BadInput
from models.contract.layouts import BLAZEPOSE33, Layout, coverage
from models.contract.skeleton import Clip
from models.net.transforms import InputConfig, make_input, sample_indices
from models.openset import ENERGY, OpenSetRule
from pipeline.infer.onnx_export import FEATURES, load_onnx

# models/zoo is package data: found through importlib.resources, wherever the package is installed.
BUNDLED_MODEL = Path(str(resources.files("models") / "zoo" / "student_penn13.pt"))
AUTO_WHOLE_S = 10.0       # clips up to this long are classified whole
DEFAULT_WINDOW_S = 4.0
DEFAULT_STRIDE_S = 2.0
MIN_COVERAGE = 0.8        # fraction of the model's joints the estimator must supply
MAX_BATCH = 64            # windows per forward pass (bounds memory on hour-long videos)
MIN_SECONDS = 0.5         # open-set: a clip with a person in fewer frames than this is not called known
UNKNOWN_ACTION = "not a known action"  # the one wording of the open-set verdict (run, its banner, live, eval)


@dataclass(frozen=True)
class RunOptions:
    model: Path | None = None      # checkpoint; None: the bundled model (unless onnx is given)
    onnx: Path | None = None       # run the model part in onnxruntime from this exported file
    topk: int = 5
    window: float | None = None    # seconds; None: whole clip up to AUTO_WHOLE_S, else DEFAULT_WINDOW_S
    stride: float | None = None    # seconds; None: DEFAULT_STRIDE_S, or window / 2 when window is given
    render: Path | None = None     # one video: the output file; several: a folder
    progress: bool = True
    threads: int | None = None     # CPU threads of the model part (None: leave the runtime's default). The CLI
                                   # passes 1: the student is small, and more threads fight MediaPipe and other
                                   # processes for the cores (see docs/RESULTS.md)
    device: str = "cpu"            # the PyTorch model's device (cpu, cuda, cuda:N); the pose estimator is CPU
    estimator: str = DEFAULT       # ESTIMATORS name of the fast estimator (its low tier; pipeline/infer/pose_choice)
    pose_options: dict = field(default_factory=dict)  # the estimator's own options (its config's OPTIONS), e.g.
                                                      # {"model": "full"}; none: its low tier, or its fallback
    max_persons: int = 1           # > 1: track this many persons and classify each on its own ("tracks")

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise BadInput("--threads must be >= 1")
        if self.topk < 1:
            raise BadInput("--topk must be >= 1")
        if self.window is not None and not (np.isfinite(self.window) and self.window > 0):
            raise BadInput("--window must be a positive number of seconds")
        if self.stride is not None and not (np.isfinite(self.stride) and self.stride > 0):
            raise BadInput("--stride must be a positive number of seconds")
        if self.max_persons < 1:
            raise BadInput("--max-persons must be >= 1")
        if self.model is not None and self.onnx is not None:
            raise BadInput("give --model or --onnx, not both (an exported file carries the model's metadata)")


# --------------------------------------------------------------------------------------------- the model part

@dataclass
class ModelInfo:
    """What the runner needs to know about a model, whichever runtime executes it."""

    layout: Layout
    classes: list[str]
    input_config: InputConfig
    coord_dims: int
    source: str
    open_set: OpenSetRule | None = None  # None: the model carries no rejection rule (older checkpoints/exports)


class TorchPredictor:
    """A checkpoint run in PyTorch (eval mode, no autograd)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None, device: str = "cpu"):
        import torch

        from models.checkpoint import load_checkpoint

        if threads:
            torch.set_num_threads(threads)  # process-wide: the CLI's choice, not the library's default
        self.model, meta = load_checkpoint(path)
        self.device = torch.device(device)
        self.model.to(self.device)
        rule = None
        if "open_set" in meta["extra"]:
            try:
                rule = OpenSetRule.from_dict(meta["extra"]["open_set"], len(meta["classes"]),
                                             self.model.feature_channels)
            except (KeyError, TypeError, ValueError) as e:
                raise BadInput(f"the checkpoint's open-set rule is unusable ({e})", path) from None
        self.info = ModelInfo(meta["layout"], list(meta["classes"]), meta["input_config"], meta["coord_dims"],
                              str(path), rule)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities `[N, K]` for inputs `[N, M, T, V, C]`."""
        return self.predict_with_distance(x)[0]

    def predict_with_distance(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(probabilities `[N, K]`, open-set scores `[N]` (`OpenSetRule.score`: a Mahalanobis distance or an
        energy) or None when the model has no rule)."""
        import torch

        rule = self.info.open_set
        with torch.inference_mode():
            xb = torch.from_numpy(x).to(self.device)
            feats = None
            if rule is not None and rule.kind != ENERGY:  # an energy rule reads the logits only
                logits, f = self.model(xb, return_features=True)
                feats = self.model.pool(f.float(), xb.shape[0]).cpu().numpy()
            else:
                logits = self.model(xb)
            probs = torch.softmax(logits, dim=-1).float().cpu().numpy()
        return probs, (rule.score(feats, logits.float().cpu().numpy()) if rule is not None else None)


class OnnxPredictor:
    """A file written by `pipeline export`, run in onnxruntime; its metadata stands in for the checkpoint."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        self.session, meta = load_onnx(path, threads)
        self.input_name = self.session.get_inputs()[0].name
        names = [o.name for o in self.session.get_outputs()]
        self.feature_index = names.index(FEATURES) if FEATURES in names else None  # older exports: logits only
        self.info = ModelInfo(meta["layout"], list(meta["classes"]), meta["input_config"], meta["coord_dims"],
                              str(path), meta["open_set"])

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.predict_with_distance(x)[0]

    def predict_with_distance(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """As `TorchPredictor`'s; the distance is None for files without a rule (`load_onnx` refuses a
        Mahalanobis rule without the `features` output; an energy rule needs only the logits)."""
        outs = self.session.run(None, {self.input_name: np.ascontiguousarray(x, np.float32)})
        logits = outs[0]
        z = logits - logits.max(axis=-1, keepdims=True)
        e = np.exp(z)
        rule = self.info.open_set
        feats = outs[self.feature_index] if self.feature_index is not None else None
        return e / e.sum(axis=-1, keepdims=True), (rule.score(feats, logits) if rule is not None else None)


Predictor = TorchPredictor | OnnxPredictor


def load_predictor(opts: RunOptions) -> Predictor:
    if opts.onnx is not None:
        pred: Predictor = OnnxPredictor(opts.onnx, opts.threads)
    else:
        path = opts.model if opts.model is not None else BUNDLED_MODEL
        if opts.model is None and not path.is_file():
            raise BadInput("the bundled model is missing from this install; pass --model CKPT", path)
        pred = TorchPredictor(path, opts.threads, opts.device)
    check_feedable(pred.info)
    return pred


def check_feedable(info: ModelInfo, estimator_layout: Layout = BLAZEPOSE33) -> None:
    """Refuse a model whose input the fast estimator cannot supply (its joints, 2D coordinates)."""
    cov = coverage(estimator_layout, info.layout)
    if cov < MIN_COVERAGE:
        have = round(cov * info.layout.num_joints)
        raise BadInput(f"the model is for layout {info.layout.name}: the fast estimator ({estimator_layout.name}) "
                       f"supplies only {have} of its {info.layout.num_joints} joints", info.source)
    if info.coord_dims != 2:
        raise BadInput(f"the model takes {info.coord_dims}D coordinates; the fast estimator gives 2D", info.source)


# --------------------------------------------------------------------------------------------------- windows

def window_frames(fps: float, window: float | None, stride: float | None,
                  default_stride: float = DEFAULT_STRIDE_S) -> tuple[int, int]:
    """Window and stride in frames: DEFAULT_WINDOW_S and `default_stride` when not given (half the window when
    only the window is), at least 2 and 1 frames. `pipeline run` and `pipeline live` round alike."""
    win_s = window if window is not None else DEFAULT_WINDOW_S
    str_s = stride if stride is not None else (win_s / 2 if window is not None else default_stride)
    return max(2, int(round(win_s * fps))), max(1, int(round(str_s * fps)))


def window_bounds(total: int, fps: float, window: float | None = None, stride: float | None = None
                  ) -> list[tuple[int, int]]:
    """Frame ranges `[start, end)` to classify.

    No window/stride given: the whole clip when it lasts at most AUTO_WHOLE_S, else DEFAULT_WINDOW_S windows
    every DEFAULT_STRIDE_S. Windows start every stride; one more window ends at the last frame when the
    stride does not reach it, so the tail is always covered. A clip no longer than one window is one window.
    """
    if total < 1:
        raise ValueError("total must be >= 1")
    fps = fps if fps > 0 else 30.0
    if window is None and stride is None and total / fps <= AUTO_WHOLE_S:
        return [(0, total)]
    wf, sf = window_frames(fps, window, stride)
    if total <= wf:
        return [(0, total)]
    bounds = [(s, s + wf) for s in range(0, total - wf + 1, sf)]
    if bounds[-1][1] < total:
        bounds.append((total - wf, total))
    return bounds


@dataclass
class Classification:
    bounds: list[tuple[int, int]]
    probs: np.ndarray            # [W, K] per window
    has_person: np.ndarray       # [W] bool: a person was found in some frame of the window
    overall: np.ndarray          # [K] mean over windows with a person
    seconds: float = 0.0
    distance: np.ndarray | None = None  # [W] open-set score per window (OpenSetRule.score; None: no rule)
    known: bool | None = None    # the clip is one of the model's actions (None: no rule to tell)
    window_known: np.ndarray | None = None  # [W] bool: the same verdict for each window alone (None: no rule)


def classify(kp: np.ndarray, score: np.ndarray, fps: float, predictor: Predictor, window: float | None = None,
             stride: float | None = None) -> Classification:
    """Classify `[M, T, V, C]` keypoints (already in the model's layout) window by window."""
    t0 = time.perf_counter()
    info = predictor.info
    total = kp.shape[1]
    bounds = window_bounds(total, fps, window, stride)
    found = (score > 0).any(axis=(0, 2))  # [T]
    xs = []
    for s, e in bounds:
        clip = Clip("window", 0, kp[:, s:e], score[:, s:e])
        idx = sample_indices(e - s, info.input_config.length, train=False)[0]
        xs.append(make_input(clip, info.layout, info.input_config, idx))
    x = np.stack(xs)
    if info.open_set is None:  # no rule to apply: the features are not needed
        parts = [(predictor.predict(x[i:i + MAX_BATCH]), None) for i in range(0, len(x), MAX_BATCH)]
    else:
        parts = [predictor.predict_with_distance(x[i:i + MAX_BATCH]) for i in range(0, len(x), MAX_BATCH)]
    probs = np.concatenate([p for p, _ in parts])
    dist = None if parts[0][1] is None else np.concatenate([d for _, d in parts])
    has = np.array([bool(found[s:e].any()) for s, e in bounds])
    overall = probs[has].mean(0) if has.any() else probs.mean(0)
    known = window_known = None
    seen = int(found.sum())
    if info.open_set is not None and seen < min_frames(fps):
        known = False  # a glimpse: too little motion to tell any action apart, whatever the scores say
    elif dist is not None and info.open_set is not None:
        # The clip is known when most of its windows with a person are (the median window's distance).
        known = bool(clip_distance(dist, has) <= info.open_set.threshold)
    if dist is not None and info.open_set is not None:
        # Each window judged as if it were the whole clip (what `live` does with every window it labels).
        window_known = (dist <= info.open_set.threshold) & enough_person(bounds, found, fps)
    return Classification(bounds, probs, has, overall, time.perf_counter() - t0, dist, known, window_known)


def clip_distance(distance: np.ndarray, has_person: np.ndarray) -> float:
    """A clip's open-set score from its windows' (`Classification.distance`, `.has_person`): the median over the
    windows with a person (all windows when none has one). What `classify` compares to the threshold, and what
    `pipeline calibrate --real` sets the threshold on."""
    return float(np.median(distance[has_person] if has_person.any() else distance))


def enough_person(bounds: list[tuple[int, int]], found: np.ndarray, fps: float) -> np.ndarray:
    """`[W]` bool: each window `[start, end)` has at least `min_frames` frames where `found` (`[T]` bool) holds,
    enough to call it one of the known actions."""
    return np.array([int(found[s:e].sum()) >= min_frames(fps) for s, e in bounds], dtype=bool)


def min_frames(fps: float) -> int:
    """Frames with a person below which a clip is too short to be called one of the known actions."""
    return max(8, int(round(MIN_SECONDS * (fps if fps > 0 else 30.0))))


def top_labels(probs: np.ndarray, classes: list[str], k: int) -> list[dict]:
    order = np.argsort(-probs, kind="stable")[:k]
    return [{"label": classes[i], "score": round(float(probs[i]), 4)} for i in order]


def said(labels: list[dict], known: bool | None) -> str:
    """The one-line verdict of a clip, window or person from its `top_labels`: "squat (0.87)", or, when the
    open-set rule rejects it, "not a known action (closest: squat 0.87)"."""
    top = labels[0]
    if known is False:
        return f"{UNKNOWN_ACTION} (closest: {top['label']} {top['score']:.2f})"
    return f"{top['label']} ({top['score']:.2f})"


@dataclass
class VideoRun:
    """Everything `run_video` found, plus the JSON-ready summary (`record`)."""

    record: dict
    pose: PoseResult
    keypoint: np.ndarray         # [M, T, V, C] in the model's layout
    score: np.ndarray
    result: Classification
    fps: float
    extra: dict = field(default_factory=dict)


