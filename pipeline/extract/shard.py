"""`--shard I/N`: one deterministic N-th of a list of videos, for batch schedulers (a Slurm array, a job per node).

The list is sorted by path and video k (0-based) goes to shard k mod N, so N jobs given the same arguments split
the work without talking to each other, every video lands in exactly one shard, and long and short videos that
sit together in a folder spread over the shards. Shards are numbered from 0 (Slurm's `$SLURM_ARRAY_TASK_ID` with
`--array=0-(N-1)`). All shards may write into one shared cache: entries are atomic and locked per video.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from models.contract.errors import BadInput

_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """`"I/N"` -> (I, N) with 0 <= I < N; None stays None."""
    if text is None:
        return None
    m = _SPEC.fullmatch(text)
    if not m:
        raise BadInput(f"--shard {text!r}: expected I/N, e.g. 0/4 (shards are numbered 0 to N-1)")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 0 <= i < n:
        raise BadInput(f"--shard {text!r}: need N >= 1 and 0 <= I < N (shards are numbered 0 to N-1)")
    return i, n


def select_shard(videos: Sequence[Path], shard: tuple[int, int] | None) -> list[Path]:
    """The videos of shard (I, N): the path-sorted list, every N-th from position I. All of them for None."""
    if shard is None:
        return list(videos)
    i, n = shard
    return sorted(videos, key=lambda p: str(p))[i::n]
