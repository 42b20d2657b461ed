"""Training pairs with and without labels: the labeled pairs, then a pool of pairs whose label is UNLABELED (-1).

In real use a person labels a few clips and extracts HQ + LQ skeletons from many more; the student's step takes
only the distillation terms on the latter (the teacher labels them, models/training/student.py). Every pool clip
is seen once per epoch, with its own frames and augmentation shared by its HQ and LQ windows.
"""

from __future__ import annotations

import torch

from models.training.student import UNLABELED
from pipeline.data.paired import PairedClipDataset


class WithUnlabeled(torch.utils.data.Dataset):
    """`labeled[i]` for i < len(labeled), then the pool's pairs with the label UNLABELED."""

    def __init__(self, labeled: PairedClipDataset, pool: PairedClipDataset):
        self.labeled, self.pool = labeled, pool

    def set_epoch(self, epoch: int) -> None:
        self.labeled.set_epoch(epoch)
        self.pool.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.labeled) + len(self.pool)

    def __getitem__(self, i: int):
        if i < len(self.labeled):
            return self.labeled[i]
        x_hq, x_lq, _ = self.pool[i - len(self.labeled)]
        return x_hq, x_lq, UNLABELED
