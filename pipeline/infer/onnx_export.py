"""`pipeline export`: a checkpoint to ONNX (the legacy TorchScript-based exporter), runnable in onnxruntime.

The graph takes `skeleton` float32 `[batch, M, T, V, C]` (batch dynamic; persons, frames, joints, channels as
the checkpoint's input configuration says) and returns `logits` `[batch, K]` and `features` `[batch, C']`, the
pooled last-block features (`STGCN.pool`) a Mahalanobis open-set rule measures (an energy rule scores the logits).
The checkpoint's metadata (layout, classes, coordinate dimensions, input and model configuration, and its
open-set rule when it has one) is stored as JSON in the model's `metadata_props` under `METADATA_KEY`, so
`pipeline run --onnx FILE` needs no checkpoint. Files exported before the `features` output existed carry neither
it nor the rule and still run (without the open-set verdict). ONNX files are protobuf: reading one runs no code.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

import numpy as np

from models.contract.atomic import atomic_path
from models.contract.errors import BadInput
from models.contract.jsonio import loads_json
from models.contract.layouts import Layout
from models.contract.paths import vet_input
from models.model_meta import check_meta, kind_of
from models.net.transforms import InputConfig, in_channels
from models.openset import OpenSetRule

METADATA_KEY = "skd_pipeline"
FORMAT = "skd-pipeline/stgcn-onnx"
OPSET = 17
MIN_OPSET = 13  # the oldest opset this model exports to (the `--opset` option's lower bound)
MAX_DIFF = 1e-4  # max |onnxruntime - PyTorch| on the logits and the features accepted by export
LOGITS, FEATURES = "logits", "features"  # the graph's outputs, in this order


def input_shape(meta: dict, batch: int = 1) -> tuple[int, ...]:
    icfg: InputConfig = meta["input_config"]
    layout: Layout = meta["layout"]
    return (batch, icfg.max_persons, icfg.length, layout.num_joints, in_channels(icfg, meta["coord_dims"]))


def max_opset() -> int:
    """The newest opset both the installed onnx and torch's TorchScript exporter (the one used here) support."""
    import onnx
    from torch.onnx import _constants

    exporter = getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", getattr(_constants, "ONNX_MAX_OPSET", OPSET))
    return min(int(onnx.defs.onnx_opset_version()), int(exporter))


def check_opset(opset: int) -> None:
    top = max_opset()
    if not MIN_OPSET <= opset <= top:
        raise BadInput(f"--opset {opset} is not supported here (the installed onnx and torch export {MIN_OPSET} "
                       f"to {top})")


def export_onnx(checkpoint: str | os.PathLike, out: str | os.PathLike, opset: int = OPSET) -> dict:
    """Export `checkpoint` to `out` (atomically) and check onnxruntime against PyTorch on random input.

    Returns `{"path", "bytes", "max_abs_diff", "seconds"}`.
    """
    import onnx
    import torch

    from models.checkpoint import load_checkpoint

    t0 = time.perf_counter()
    check_opset(opset)
    out = Path(out)
    if out.exists() and out.is_dir():
        raise BadInput("is a folder; --onnx takes a file name", out)
    model, meta = load_checkpoint(checkpoint)
    rule = None
    if "open_set" in meta["extra"]:  # checked as `run` checks it, so no file carries a rule `run --onnx` refuses
        try:
            rule = OpenSetRule.from_dict(meta["extra"]["open_set"], len(meta["classes"]), model.feature_channels)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise BadInput(f"the checkpoint's open-set rule is unusable ({e})", checkpoint) from None
    example = torch.from_numpy(np.random.default_rng(0).normal(size=input_shape(meta, 2)).astype(np.float32))
    props = {
        "format": FORMAT,
        "layout": meta["layout"].to_dict(),
        "classes": meta["classes"],
        "coord_dims": meta["coord_dims"],
        "input_config": meta["input_config"].to_dict(),
        "model_config": meta["model_config"].to_dict(),
        "source": Path(checkpoint).name,
    }
    if rule is not None:  # float64 lists as in the checkpoint (JSON round-trips them exactly): ~0.4 MB at 128 channels
        props["open_set"] = rule.to_dict()
    with atomic_path(out) as tmp:
        with warnings.catch_warnings():  # the legacy exporter's deprecation notice: chosen on purpose
            warnings.simplefilter("ignore")
            torch.onnx.export(_with_features(model), (example,), str(tmp), dynamo=False, opset_version=opset,
                              input_names=["skeleton"], output_names=[LOGITS, FEATURES],
                              dynamic_axes={"skeleton": {0: "batch"}, LOGITS: {0: "batch"}, FEATURES: {0: "batch"}})
        proto = onnx.load(str(tmp))
        # The tracer leaves the features' channel axis symbolic (`pool` reshapes with -1): it is fixed, and
        # `load_onnx` checks the rule against it.
        proto.graph.output[1].type.tensor_type.shape.dim[1].dim_value = model.feature_channels
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(props)
        proto.producer_name = "skd-pipeline"
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        diff = parity(model, _session(str(tmp)), meta)
        if not diff <= MAX_DIFF:  # a wrong graph is an internal error, and leaves no file behind
            raise RuntimeError(f"onnxruntime's outputs differ from PyTorch's by {diff:.3g} (> {MAX_DIFF})")
    return {"path": str(out), "bytes": out.stat().st_size, "max_abs_diff": diff,
            "seconds": round(time.perf_counter() - t0, 2)}


def _with_features(model):
    """`model` with a second output: the pooled features, exactly as `TorchPredictor` feeds the open-set rule."""
    import torch

    class WithFeatures(torch.nn.Module):
        def __init__(self, net: torch.nn.Module):
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits, f = self.net(x, return_features=True)
            return logits, self.net.pool(f.float(), x.shape[0])

    return WithFeatures(model).eval()


def parity(model, session, meta: dict, batch: int = 4, seed: int = 1) -> float:
    """Max |onnxruntime - PyTorch| over the logits and (when the graph has them) the features of a random batch."""
    import torch

    x = np.random.default_rng(seed).normal(size=input_shape(meta, batch)).astype(np.float32)
    with torch.inference_mode():
        logits, f = model(torch.from_numpy(x), return_features=True)
        ref = {LOGITS: logits.numpy(), FEATURES: model.pool(f.float(), batch).numpy()}
    names = [o.name for o in session.get_outputs()]
    if names[0] != LOGITS:
        raise RuntimeError(f"the exported graph's first output is {names[0]!r}, not {LOGITS!r}")
    got = dict(zip(names, session.run(None, {session.get_inputs()[0].name: x})))
    return max(float(np.abs(ref[k] - got[k]).max()) for k in ref if k in got)


def _session(path: str, threads: int | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3  # warnings about unused initializers etc. are not the user's business
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    return ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])


def load_onnx(path: str | os.PathLike, threads: int | None = None) -> tuple[object, dict]:
    """An onnxruntime session for a file written by `export_onnx`, and its metadata (as `load_checkpoint`'s, plus
    `open_set`: the checked `OpenSetRule`, or None when the file has none)."""
    import onnx

    p = vet_input(path, "onnx")
    if p.stat().st_size == 0:
        raise BadInput("empty file (0 bytes), not an ONNX model", p)
    try:
        proto = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # protobuf's DecodeError and friends: not an ONNX file
        raise BadInput(f"not a readable ONNX model ({type(e).__name__})", p) from None
    props = {e.key: e.value for e in proto.metadata_props}
    if METADATA_KEY not in props:
        raise BadInput("ONNX model without this pipeline's metadata (layout, classes); export it with "
                       "`pipeline export`", p)
    d = loads_json(props[METADATA_KEY], p, "ONNX metadata")
    if isinstance(d, dict) and d.get("format") != FORMAT:
        raise BadInput(f"ONNX metadata is invalid: format {str(d.get('format'))[:40]!r}, expected {FORMAT!r}", p)
    meta = check_meta(d, p, "ONNX")
    meta["open_set"] = d.get("open_set")
    if meta["open_set"] is not None and not isinstance(meta["open_set"], dict):
        raise BadInput(f"ONNX metadata is invalid: 'open_set' is {kind_of(meta['open_set'])}, expected an object", p)
    try:
        session = _session(str(p), threads)
    except Exception as e:  # onnxruntime's own Fail/InvalidGraph exceptions
        raise BadInput(f"onnxruntime cannot load it ({str(e).splitlines()[0][:200]})", p) from None
    _check_graph(session, meta, p)
    meta["open_set"] = _rule(session, meta, p)
    return session, meta


def _check_graph(session, meta: dict, p: Path) -> None:
    """The graph takes what the metadata says the model takes, and gives one logit per class name."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or not outputs or outputs[0].name != LOGITS:
        raise BadInput(f"the ONNX graph is not this pipeline's (inputs {[i.name for i in inputs]}, outputs "
                       f"{[o.name for o in outputs]})"[:300], p)
    want = input_shape(meta)
    got = list(inputs[0].shape)
    # dim 0 is the dynamic batch; every other dim is fixed at export and must be what the metadata describes
    if len(got) != len(want) or any(isinstance(g, int) and g != w for g, w in zip(got[1:], want[1:])) \
            or not all(isinstance(g, int) for g in got[1:]):
        raise BadInput(f"the ONNX graph takes input {got}, the metadata describes [batch, "
                       f"{', '.join(map(str, want[1:]))}] (persons, frames, joints, channels)", p)
    k = outputs[0].shape[-1] if outputs[0].shape else None
    if k != len(meta["classes"]):
        raise BadInput(f"the ONNX graph gives {k} logits, the metadata names {len(meta['classes'])} classes", p)


def _rule(session, meta: dict, p: Path) -> OpenSetRule | None:
    """The file's open-set rule, checked against its classes and (a Mahalanobis rule) its `features` output;
    None when it has none. An energy rule needs the logits only."""
    d = meta["open_set"]
    if d is None:
        return None
    outs = {o.name: o for o in session.get_outputs()}
    channels = outs[FEATURES].shape[-1] if FEATURES in outs else None
    try:
        if FEATURES in outs and not isinstance(channels, int):
            raise ValueError(f"the {FEATURES!r} output has no fixed channel count ({channels!r})")
        return OpenSetRule.from_dict(d, len(meta["classes"]), channels)
    except (KeyError, TypeError, ValueError) as e:
        raise BadInput(f"the ONNX model's open-set rule is unusable ({e})", p) from None
