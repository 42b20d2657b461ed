"""Self-describing model checkpoints: weights + layout + classes + model and input configuration.

A checkpoint holds only tensors and plain Python types, so it loads with `torch.load(weights_only=True)`: loading
a checkpoint never runs code from the file. Writes are atomic (temp file, fsync, rename).
"""

from __future__ import annotations

import io
import os
import pickle
import re
import zipfile
from pathlib import Path

import torch

from models.contract.atomic import atomic_write_bytes
from models.contract.errors import BadInput
from models.contract.layouts import Layout
from models.contract.paths import vet_input
from models.model_meta import check_meta, kind_of, same_layout
from models.net.stgcn import STGCN, STGCNConfig
from models.net.transforms import InputConfig

FORMAT = "skd-pipeline/stgcn-checkpoint"
VERSION = 1


def save_checkpoint(path: str | os.PathLike, model: STGCN, *, layout: Layout, classes: list[str] | int,
                    model_config: STGCNConfig, input_config: InputConfig, extra: dict | None = None,
                    coord_dims: int | None = None) -> None:
    """Write `model` and everything needed to use it on new data.

    `coord_dims` (2 or 3) is derived from the channel counts when omitted.
    """
    if isinstance(classes, int):
        classes = [str(i) for i in range(classes)]
    per_coord = len(input_config.features)
    if coord_dims is None:
        coord_dims = (model_config.in_channels - int(input_config.use_score)) // per_coord
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    check_finite_weights(state, path)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "state_dict": state,
        "layout": layout.to_dict(),
        "classes": [str(c) for c in classes],
        "coord_dims": int(coord_dims),
        "model_config": model_config.to_dict(),
        "input_config": input_config.to_dict(),
        "extra": dict(extra or {}),
    }
    atomic_write_bytes(path, torch_bytes(payload))


def torch_bytes(obj: object) -> bytes:
    """`torch.save` into memory. The bytes then go through the atomic writer: torch's own file writer turns a
    full disk into a RuntimeError without an errno, so the writer could not tell it from a bug."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def check_finite_weights(state: dict, path: str | os.PathLike) -> None:
    """BadInput naming the first tensor that holds NaN or inf: such weights are never written (nor used)."""
    for name, t in state.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise BadInput(f"the weights are not finite (NaN or inf in {name}); no checkpoint written or used", path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The raw checkpoint dict, validated; BadInput (naming the file) for anything that is not one."""
    p = vet_input(path, "checkpoint")
    if p.stat().st_size == 0:
        raise BadInput("empty file (0 bytes), not a checkpoint", p)
    if not zipfile.is_zipfile(p):  # torch.save writes a zip archive; anything else is not ours
        raise BadInput("not a readable checkpoint (not a PyTorch archive, or truncated)", p)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))
        if found:
            raise BadInput(f"refused to load: the checkpoint references {found.group(1)}, which is not plain data "
                           f"(nothing was executed)", p) from None
        raise BadInput(f"not a readable checkpoint ({_detail(e)})", p) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError) as e:
        raise BadInput(f"not a readable checkpoint (corrupt or truncated: {_detail(e)})", p) from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise BadInput("not a pipeline model checkpoint (no model, layout and classes inside)", p)
    if obj.get("version") != VERSION:
        raise BadInput(f"checkpoint version {obj.get('version')} is not supported (expected {VERSION})", p)
    for key in ("state_dict", "layout", "classes", "coord_dims", "model_config", "input_config"):
        if key not in obj:
            raise BadInput(f"checkpoint lacks '{key}'", p)
    return obj


def _detail(e: Exception) -> str:
    """The informative line of a (often long, multi-line) torch.load error."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    keep = [ln for ln in lines if not ln.startswith(("Weights only load failed", "Please file", "Check the"))]
    return ((keep or lines or [type(e).__name__])[0])[:200]


def load_checkpoint(path: str | os.PathLike, *, expect_layout: Layout | None = None,
                    expect_classes: int | None = None, expect_channels: int | None = None
                    ) -> tuple[STGCN, dict]:
    """Rebuild the model (eval mode) and return it with its metadata.

    `meta` has `layout` (a Layout), `classes`, `coord_dims`, `model_config` (STGCNConfig), `input_config`
    (InputConfig) and `extra`. The expectations refuse a checkpoint made for another skeleton layout, another
    number of classes or another number of coordinate channels (2D vs 3D) with one clear line.
    """
    p = Path(path)
    obj = read_checkpoint(p)
    meta = check_meta(obj, p)
    try:
        mcfg = STGCNConfig.from_dict(meta["model_config"])
    except (TypeError, ValueError) as e:
        raise BadInput(f"checkpoint configuration is invalid ({e})", p) from None
    layout, classes, coord_dims = meta["layout"], meta["classes"], meta["coord_dims"]
    if expect_layout is not None and not same_layout(layout, expect_layout):
        raise BadInput(f"checkpoint is for layout {layout.name} ({layout.num_joints} joints), the data is "
                       f"{expect_layout.name} ({expect_layout.num_joints} joints)", p)
    if expect_classes is not None and expect_classes != len(classes):
        raise BadInput(f"checkpoint has {len(classes)} classes, the data has {expect_classes}", p)
    if expect_channels is not None and expect_channels != coord_dims:
        raise BadInput(f"checkpoint takes {coord_dims}D coordinates, the data has {expect_channels}D", p)
    if not isinstance(obj["state_dict"], dict):
        raise BadInput(f"checkpoint metadata is invalid: 'state_dict' is {kind_of(obj['state_dict'])}, expected "
                       f"an object", p)
    check_finite_weights(obj["state_dict"], p)
    try:
        model = STGCN(mcfg)
        model.load_state_dict(obj["state_dict"])
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0]
        raise BadInput(f"checkpoint weights do not fit its model configuration ({first[:200]})", p) from None
    model.eval()
    meta["model_config"] = mcfg
    return model, meta
