"""The run-time defaults every computing command shares; torch-free, so the CLI can show them without loading torch.

Threads: one intra-op thread by default. On a small CPU shared with other work (2 cores here), torch's default of
one thread per core was measured 9-14x slower for these small GCNs: the threads wait on each other and on the
other processes. More threads only pay on an idle machine with many cores (`--threads N`).
"""

from __future__ import annotations

DEFAULT_THREADS = 1
PRECISIONS = ("fp32", "bf16")
THREADS_HELP = f"Torch intra-op CPU threads [{DEFAULT_THREADS}; more only pay on an idle many-core machine]."
