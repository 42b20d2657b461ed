"""CPU run-time settings that matter for GCN speed here: thread count and the C allocator.

glibc returns every freed block above 128 KiB to the OS (mmap/munmap) and trims the heap eagerly, so each large
activation of every training step is paged in afresh: on this 2-core machine that page faulting costs as much as
the arithmetic. Raising the mmap and trim thresholds keeps freed blocks in the heap for reuse. It only changes
how memory is recycled, never a result; it is a no-op where glibc's `mallopt` is absent.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import torch

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_allocator(mmap_threshold: int = 1 << 30, trim_threshold: int = 1 << 34) -> bool:
    """Keep large freed blocks for reuse (glibc only); True when applied."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # Some glibc versions refuse an mmap threshold above 32 MiB; fall back to that.
    ok_mmap = mallopt(_M_MMAP_THRESHOLD, min(mmap_threshold, 2**31 - 1)) == 1 or \
        mallopt(_M_MMAP_THRESHOLD, 32 << 20) == 1
    ok_trim = mallopt(_M_TRIM_THRESHOLD, min(trim_threshold, 2**31 - 1)) == 1
    return ok_mmap and ok_trim


def configure_cpu(threads: int | None = None, allocator: bool = True) -> dict:
    """Set torch's intra-op threads (when given) and tune the allocator; returns what is in effect."""
    if threads is not None:
        if threads < 1:
            raise ValueError("threads must be >= 1")
        torch.set_num_threads(threads)
    tuned = tune_allocator() if allocator else False
    return {"threads": torch.get_num_threads(), "allocator_tuned": tuned}
