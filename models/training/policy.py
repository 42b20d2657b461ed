"""The run-time defaults every computing command shares; torch-free, so the CLI can show them without loading torch.

Threads: one intra-op thread by default. On a small CPU shared with other work (2 cores here), torch's default of
one thread per core was measured 9-14x slower for these small GCNs: the threads wait on each other and on the
other processes. More threads only pay on an idle machine with many cores (`--threads N`).
"""

from __future__ import annotations

DEFAULT_THREADS = 1
PRECISIONS = ("fp32", "bf16")
THREADS_HELP = f"Torch intra-op CPU threads [{DEFAULT_THREADS}; more only pay on an idle many-core machine]."

# The optimizer steps of a run given neither --epochs nor --steps (train and distill, every method alike). Chosen from
# docs/RESULTS.md (distillation phase 3, Penn Action, 5 seeds): the same `skd` recipe closed 31 % of the plain
# student's gap to the teacher at 500 steps and 55 % at 1500, the longest budget measured; epochs would make the
# schedule depend on the data set's size (30 epochs of a 433-clip set are ~420 steps).
DEFAULT_STEPS = 1500
