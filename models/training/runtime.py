"""Where and how a computation runs: device, precision (fp32 | bf16 autocast), threads and the C allocator.

Every command that computes sets its threads through `set_threads` (the default and why: models/training/policy.py).

glibc returns every freed block above 128 KiB to the OS (mmap/munmap) and trims the heap eagerly, so each large
activation of every training step is paged in afresh: on this 2-core machine that page faulting costs as much as
the arithmetic. Raising the mmap and trim thresholds keeps freed blocks in the heap for reuse. It only changes
how memory is recycled, never a result; it is a no-op where glibc's `mallopt` is absent.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util

import torch

from models.contract.errors import BadInput
from models.training.policy import DEFAULT_THREADS

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


def set_threads(threads: int | None = None, allocator: bool = True) -> dict:
    """The one thread policy: `threads` intra-op threads (None: `DEFAULT_THREADS`), allocator tuned."""
    return configure_cpu(DEFAULT_THREADS if threads is None else threads, allocator)


# ---------------------------------------------------------------------------------------------------- devices


def resolve_device(spec: str | torch.device | None, local_rank: int = 0) -> torch.device:
    """`cpu`, `cuda` (→ `cuda:LOCAL_RANK`, one GPU per rank) or `cuda:N`; a clear error when CUDA is absent."""
    text = str(spec if spec is not None else "cpu").strip().lower()
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise BadInput(f"--device {spec!r}: use cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type != "cuda":
        raise BadInput(f"--device {spec!r}: use cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise BadInput(f"--device {spec}: no CUDA device is available here; use --device cpu")
    if dev.index is None:
        dev = torch.device("cuda", local_rank)
    if dev.index >= torch.cuda.device_count():
        raise BadInput(f"--device {dev}: only {torch.cuda.device_count()} CUDA device(s) here")
    return dev


# -------------------------------------------------------------------------------------------------- precision


def amp_active(device: str | torch.device, enabled: bool = True) -> bool:
    """Whether `autocast(device, enabled)` changes anything: CUDA with bfloat16 support."""
    return enabled and torch.device(device).type == "cuda" and torch.cuda.is_bf16_supported()


def autocast(device: str | torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """Mixed precision for forward passes on CUDA (bfloat16: no loss scaling needed); a no-op on a CPU.

    GPUs without bfloat16 (before Ampere) run in float32: float16 would need a gradient scaler, which the
    per-loss gradients of the revision do not go through.
    """
    if amp_active(device, enabled):
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def cpu_autocast(precision: str, device: torch.device | str = "cpu") -> contextlib.AbstractContextManager:
    """The CPU training forward's precision: bfloat16 autocast when `precision == "bf16"` (CUDA: `autocast`).

    On CPUs with AVX-512 BF16 (or AMX) oneDNN runs bf16 convolutions about twice as fast as fp32; the weights,
    the optimizer and the loss stay fp32, so no loss scaling is needed.
    """
    on = precision == "bf16" and torch.device(device).type == "cpu"
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=on)


def forward_precision(device: torch.device | str, amp: bool, precision: str) -> contextlib.ExitStack:
    """Both: CUDA bf16 autocast when `amp`, CPU bf16 autocast when `precision == "bf16"`."""
    stack = contextlib.ExitStack()
    stack.enter_context(autocast(device, amp))
    stack.enter_context(cpu_autocast(precision, device))
    return stack
