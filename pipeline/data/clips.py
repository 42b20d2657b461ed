"""`ClipDataset`: a torch Dataset of model inputs `(x [M, T, V, C], label)` over a list of clips."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from models.contract.layouts import Layout
from models.contract.skeleton import Clip
from models.net.transforms import InputConfig, clip_stats, draw_augment, make_input, sample_indices, train_indices


class ClipDataset(Dataset):
    """Training: one randomly sampled, augmented window per clip. Test: `num_test_clips` evenly offset windows,
    returned stacked as `[num_test_clips, M, T, V, C]` when more than one
    (`models.training.evaluation.evaluate` averages them).

    Randomness depends only on (seed, epoch, index), so DataLoader workers and resumed runs see the same samples;
    call `set_epoch` before iterating. Holds plain numpy arrays, so it pickles into worker processes.
    """

    def __init__(self, clips: list[Clip], layout: Layout, cfg: InputConfig, train: bool, seed: int = 0,
                 num_test_clips: int = 1):
        if num_test_clips < 1:
            raise ValueError("num_test_clips must be >= 1")
        self.clips = list(clips)
        self.layout = layout
        self.cfg = cfg
        self.train = train
        self.seed = int(seed)
        self.num_test_clips = int(num_test_clips)
        self.epoch = 0
        # Normalisation statistics once per clip, not once per sample.
        self.stats = [clip_stats(c, layout, cfg.max_persons, cfg.norm) for c in self.clips]
        self.labels = np.array([c.label for c in self.clips], dtype=np.int64)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.clips)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        clip = self.clips[index]
        if self.train:
            rng = self.rng(index)
            idx = train_indices(clip.total_frames, self.cfg, rng)
            x = make_input(clip, self.layout, self.cfg, idx, draw_augment(rng, self.cfg), self.stats[index])
        else:
            idx = sample_indices(clip.total_frames, self.cfg.length, False, None, self.num_test_clips)
            xs = [make_input(clip, self.layout, self.cfg, row, None, self.stats[index]) for row in idx]
            x = xs[0] if self.num_test_clips == 1 else np.stack(xs)
        return torch.from_numpy(x), int(clip.label)


def constant_scores(clips: list[Clip]) -> bool:
    """True when every keypoint score of every clip is exactly 1.0 (ground truth)."""
    return all(c.keypoint_score is None or bool(np.all(c.keypoint_score == 1)) for c in clips)
