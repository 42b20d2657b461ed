"""Range checks for numeric options and for the sizes a checkpoint may ask for.

`check_number` raises ValueError (the configuration dataclasses' `__post_init__` call it; the stages turn the
ValueError into one `BadInput` line). NaN fails every comparison, so a plain `x <= 0` test lets NaN through:
every check here asks for a finite number first.
"""

from __future__ import annotations

import math
import numbers

# What a checkpoint's model configuration may request before the network is built: far above any real model of
# this project (the original ST-GCN has 10 blocks of at most 256 channels), far below what exhausts memory.
ARCH_LIMITS = {
    "depth": 100,
    "channels": 4096,        # widest block, base_channels x width x 4
    "in_channels": 64,
    "num_classes": 100_000,
    "joints": 1000,
    "max_persons": 64,
    "temporal_kernel": 63,
}


def check_number(name: str, value: object, lo: float | None = None, hi: float | None = None, *,
                 lo_open: bool = False, hi_open: bool = False, integer: bool = False) -> None:
    """ValueError unless `value` is a finite number (an int when `integer`) in the given range."""
    kind = "an integer" if integer else "a finite number"
    ok_type = isinstance(value, numbers.Integral) if integer else isinstance(value, numbers.Real)
    if isinstance(value, bool) or not ok_type:
        raise ValueError(f"{name} must be {kind}, got {repr(value)[:60]}")
    if isinstance(value, numbers.Integral) and abs(int(value)) >= 2 ** 63:  # beyond float range, or too long to print
        raise ValueError(f"{name} must be {kind} in range, got one of {int(value).bit_length()} bits")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be {kind}, got {value}")
    below = lo is not None and (value <= lo if lo_open else value < lo)
    above = hi is not None and (value >= hi if hi_open else value > hi)
    if below or above:
        left = "" if lo is None else f"{'>' if lo_open else '>='} {lo:g}"
        right = "" if hi is None else f"{'<' if hi_open else '<='} {hi:g}"
        raise ValueError(f"{name} must be {' and '.join(filter(None, (left, right)))}, got {value:g}")
