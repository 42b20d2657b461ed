"""Distillation losses, one per file, and `METHODS`: the one place that lists them.

Adding a method = a new file here defining its loss module and a `LossMethod` (see method.py), plus one line
below. The CLI's `--method` choices, `DistillConfig`'s fields and `--weights` keys, and the distillation step
all read this dict.
"""

from models.losses import attention, dkd, fitnet, kd, rkd, skd
from models.losses.method import NONE, LossMethod

METHODS: dict[str, LossMethod] = {
    "none": NONE,
    "kd": kd.METHOD,
    "fitnet": fitnet.METHOD,
    "rkd": rkd.METHOD,
    "at": attention.METHOD,
    "dkd": dkd.METHOD,
    "skd": skd.METHOD,
    "skd-authors": skd.AUTHORS,
}
