"""The one schema of a model file's metadata, shared by `.pt` checkpoints (models/checkpoint.py) and ONNX exports
(pipeline/infer/onnx_export.py): field types, bounds, and the fields checked against each other.

A model file is data from anywhere: its metadata may be any value. `check_meta` accepts it only when every field
has its type (an object, a list of class names, 2 or 3 coordinate dimensions, ...) and the fields agree: as many
class names as the model configuration has outputs, the same layout in both places, input channels that are the
ones the input configuration makes from `coord_dims`. The weights (or the ONNX graph) are then checked against
the model configuration by the caller. No torch here: `pipeline run --onnx` must not import it.
"""

from __future__ import annotations

import os

from models.contract.errors import BadInput
from models.contract.layouts import Layout
from models.contract.numbers import ARCH_LIMITS, check_number
from models.net.transforms import InputConfig, in_channels

MAX_CLASS_NAME = 1000  # characters of one class name


def kind_of(value: object) -> str:
    """The JSON name of a value's type, for messages ("a list", "a string", ...)."""
    names = {dict: "an object", list: "a list", tuple: "a list", str: "a string", bool: "a boolean",
             int: "an integer", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def shown(value: object) -> str:
    """A short repr for a message: a value from a file may be a 5000-digit integer (whose repr raises) or huge."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def same_layout(a: Layout, b: Layout) -> bool:
    """Same joints (by name, in order), bones and centre; the name alone does not matter."""
    def bones(lay: Layout) -> set[tuple[int, int]]:
        return {(min(i, j), max(i, j)) for i, j in lay.edges}

    return a.joints == b.joints and bones(a) == bones(b) and a.center == b.center


def check_meta(d: object, path: str | os.PathLike, what: str = "checkpoint") -> dict:
    """The checked metadata: `layout` (Layout), `classes` (list of str), `coord_dims` (2 or 3), `input_config`
    (InputConfig), `model_config` (the dict as stored), `extra` (dict). BadInput naming `path` otherwise.

    `model_config` and `extra` may be absent (files from before they were stored): then {}.
    """
    def bad(reason: str) -> BadInput:
        return BadInput(f"{what} metadata is invalid: {reason}", path)

    if not isinstance(d, dict):
        raise bad(f"it is {kind_of(d)}, expected an object")
    for key in ("layout", "classes", "coord_dims", "input_config"):
        if key not in d:
            raise bad(f"'{key}' is missing")
    for key, want in (("layout", dict), ("classes", list), ("input_config", dict), ("model_config", dict),
                      ("extra", dict)):
        if key in d and not isinstance(d[key], want):
            raise bad(f"'{key}' is {kind_of(d[key])}, expected {kind_of(want())}")
    layout = Layout.from_dict(d["layout"], os.fspath(path))
    classes = d["classes"]
    if not 1 <= len(classes) <= ARCH_LIMITS["num_classes"]:
        raise bad(f"'classes' has {len(classes)} names (1 to {ARCH_LIMITS['num_classes']})")
    odd = next((c for c in classes if not isinstance(c, str) or not c or len(c) > MAX_CLASS_NAME), None)
    if odd is not None:
        raise bad(f"'classes' holds {shown(odd)} ({kind_of(odd)}); class names are non-empty strings of at "
                  f"most {MAX_CLASS_NAME} characters")
    coord_dims = d["coord_dims"]
    if isinstance(coord_dims, bool) or not isinstance(coord_dims, int) or coord_dims not in (2, 3):
        raise bad(f"'coord_dims' is {shown(coord_dims)}, expected 2 or 3")
    try:
        icfg = InputConfig.from_dict(d["input_config"])
    except (TypeError, ValueError) as e:
        raise bad(f"'input_config': {e}") from None
    mc = d.get("model_config", {})
    if mc:
        _agrees(mc, layout, len(classes), coord_dims, icfg, bad)
    return {"layout": layout, "classes": list(classes), "coord_dims": coord_dims, "input_config": icfg,
            "model_config": mc, "extra": d.get("extra", {})}


def _agrees(mc: dict, layout: Layout, num_classes: int, coord_dims: int, icfg: InputConfig, bad) -> None:
    """The model configuration describes the network the other fields say it is."""
    for key in ("num_classes", "in_channels", "max_persons"):  # the bounds STGCNConfig checks, torch-free here
        if key in mc:
            try:
                check_number(key, mc[key], 1, ARCH_LIMITS[key], integer=True)
            except ValueError as e:
                raise bad(f"model_config {e}") from None
    if mc.get("num_classes", num_classes) != num_classes:
        raise bad(f"{num_classes} class names for a model with {shown(mc['num_classes'])} outputs")
    channels = in_channels(icfg, coord_dims)
    if mc.get("in_channels", channels) != channels:
        raise bad(f"coord_dims {coord_dims} and the input configuration make {channels} input channels, the model "
                  f"takes {shown(mc['in_channels'])}")
    if mc.get("max_persons", icfg.max_persons) < icfg.max_persons:
        raise bad(f"the input configuration feeds {icfg.max_persons} persons, the model takes at most "
                  f"{shown(mc['max_persons'])}")
    if "layout" in mc:
        if not isinstance(mc["layout"], dict):
            raise bad(f"model_config 'layout' is {kind_of(mc['layout'])}, expected an object")
        try:
            inner = Layout.from_dict(mc["layout"])
        except BadInput as e:
            raise bad(f"model_config {e}") from None
        if not same_layout(inner, layout):
            raise bad(f"the layout ({layout.name}, {layout.num_joints} joints) is not the model's "
                      f"({inner.name}, {inner.num_joints} joints)")
