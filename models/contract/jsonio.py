"""The one bounded JSON reader: every JSON document the project takes (importers, layouts, profiles, ONNX
metadata, run folders, cache entries) is parsed here.

Python's `json` follows nesting by recursion (a 100 000-deep list raises RecursionError), turns an integer of
any length into an int (over 4300 digits int() refuses, beyond float range `float()` overflows later), and reads
the non-standard NaN/Infinity, which then reach code that expects a number. Here the nesting depth is measured
before parsing, integers must fit in 64 bits, floats must be finite and NaN/Infinity are refused: each as one
`BadInput` line naming the file (or what the text came from).
"""

from __future__ import annotations

import json
import math
import os
import re

import numpy as np

from models.contract.errors import BadInput
from models.contract.paths import vet_input

MAX_DEPTH = 64            # far deeper than any document of ours (a layout is 3 levels, an ONNX rule 4)
MAX_INT = 2 ** 63 - 1     # integers must fit in 64 bits (a frame index, a count, a label)
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPEN = np.zeros(256, np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1


class _Refused(ValueError):
    """A number the parse hooks refuse (turned into BadInput with the source's name)."""


def _int(text: str) -> int:
    digits = text.lstrip("-")
    if len(digits) > 19 or int(text) > MAX_INT or int(text) < -MAX_INT - 1:
        shown = text if len(text) <= 24 else f"{text[:12]}...({len(digits)} digits)"
        raise _Refused(f"integer {shown} is out of range (at most 64-bit integers)")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 24 else f"{text[:12]}...({len(text)} characters)"
        raise _Refused(f"number {shown} is beyond the range of a float")
    return value


def _constant(name: str) -> float:
    raise _Refused(f"{name} is not a JSON number (only finite numbers are accepted)")


def nesting_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in `data`, brackets inside strings not counted."""
    bare = _STRING.sub(b'""', data)
    if not bare:
        return 0
    steps = _OPEN[np.frombuffer(bare, np.uint8)].astype(np.int64)
    return int(np.cumsum(steps).max(initial=0))


def loads_json(data: str | bytes, source: str | os.PathLike, what: str = "JSON") -> object:
    """Parse `data` with the bounds above; BadInput naming `source` for anything else."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    depth = nesting_depth(raw)
    if depth > MAX_DEPTH:
        raise BadInput(f"{what} nested {depth} levels deep (at most {MAX_DEPTH})", source)
    try:
        return json.loads(raw, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except _Refused as e:
        raise BadInput(f"{what}: {e}", source) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadInput(f"not valid {what} ({' '.join(str(e).split())[:200]})", source) from None
    except RecursionError:  # cannot happen below MAX_DEPTH; kept so no depth ever surfaces as a traceback
        raise BadInput(f"{what} nested too deeply", source) from None


def read_json(path: str | os.PathLike, kind: str = "json") -> object:
    """Vet `path` as an input of `kind` (models.contract.paths), read it and parse it with `loads_json`."""
    p = vet_input(path, kind)
    try:
        data = p.read_bytes()
    except OSError as e:  # no permission, an I/O error
        raise BadInput(f"cannot read ({e.strerror or type(e).__name__})", path) from None
    return loads_json(data, path)
