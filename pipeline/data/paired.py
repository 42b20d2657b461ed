"""Pairing HQ and LQ skeletons of the same clips, for distillation.

A pair is the same `frame_dir` on both sides with the same label and frame count. Anything else is reported:
by default it is an error (the two pickles do not describe the same clips); `allow_unpaired` drops them
with a warning instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from models.contract.errors import BadInput
from models.contract.layouts import Layout
from models.contract.skeleton import Clip, SkeletonDataset, convert_dataset
from models.net.transforms import InputConfig, draw_augment, make_input, sample_indices, train_indices


@dataclass
class PairReport:
    paired: int = 0
    only_hq: list[str] = field(default_factory=list)
    only_lq: list[str] = field(default_factory=list)
    frame_mismatch: list[str] = field(default_factory=list)
    label_mismatch: list[str] = field(default_factory=list)

    @property
    def problems(self) -> int:
        return len(self.only_hq) + len(self.only_lq) + len(self.frame_mismatch) + len(self.label_mismatch)

    def describe(self) -> str:
        parts = []
        for what, names in (("only in HQ", self.only_hq), ("only in LQ", self.only_lq),
                            ("with different frame counts", self.frame_mismatch),
                            ("with different labels", self.label_mismatch)):
            if names:
                shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
                parts.append(f"{len(names)} {what} ({shown})")
        return "; ".join(parts) if parts else "all clips pair"


@dataclass
class PairedData:
    """HQ and LQ clips in the same order (index i of each is the same clip), and the shared metadata."""

    hq: list[Clip]
    lq: list[Clip]
    split: dict[str, list[str]]
    classes: list[str]
    layout: Layout
    report: PairReport

    def subset(self, split_name: str) -> tuple[list[Clip], list[Clip]]:
        wanted = set(self.split.get(split_name, []))
        idx = [i for i, c in enumerate(self.hq) if c.frame_dir in wanted]
        return [self.hq[i] for i in idx], [self.lq[i] for i in idx]


def pair_datasets(hq: SkeletonDataset, lq: SkeletonDataset, layout: Layout | None = None,
                  allow_unpaired: bool = False, names: tuple[str, str] = ("HQ", "LQ")) -> PairedData:
    """Match clips by name; both sides are brought to `layout` (default: the HQ layout) by joint name."""
    target = layout or hq.layout
    hq, lq = convert_dataset(hq, target), convert_dataset(lq, target)
    if hq.num_channels != lq.num_channels:
        raise BadInput(f"{names[0]} clips are {hq.num_channels}D but {names[1]} clips are {lq.num_channels}D")
    if len(hq.classes) != len(lq.classes) or list(hq.classes) != list(lq.classes):
        raise BadInput(f"{names[0]} and {names[1]} have different class lists")
    lq_by = lq.by_name()
    report = PairReport()
    hq_out, lq_out = [], []
    for c in hq.clips:
        other = lq_by.get(c.frame_dir)
        if other is None:
            report.only_hq.append(c.frame_dir)
        elif other.total_frames != c.total_frames:
            report.frame_mismatch.append(c.frame_dir)
        elif other.label != c.label:
            report.label_mismatch.append(c.frame_dir)
        else:
            hq_out.append(c)
            lq_out.append(other)
    hq_names = {c.frame_dir for c in hq.clips}
    report.only_lq = [c.frame_dir for c in lq.clips if c.frame_dir not in hq_names]
    report.paired = len(hq_out)
    if report.problems and not allow_unpaired:
        raise BadInput(f"{names[0]} and {names[1]} clips do not pair: {report.describe()} "
                       f"(use --allow-unpaired to drop them)")
    if not hq_out:
        raise BadInput(f"no clip of {names[0]} pairs with {names[1]}: {report.describe()}")
    return PairedData(hq_out, lq_out, {k: list(v) for k, v in hq.split.items()}, list(hq.classes), target,
                      report)


class PairedClipDataset(torch.utils.data.Dataset):
    """Yields `(x_hq, x_lq, label)` of one clip with the SAME frame indices and augmentation on both sides,
    so the teacher and the student look at the same moments of the same (transformed) motion."""

    def __init__(self, hq: list[Clip], lq: list[Clip], layout: Layout, cfg: InputConfig, train: bool = True,
                 seed: int = 0, lq_cfg: InputConfig | None = None):
        if len(hq) != len(lq):
            raise ValueError("HQ and LQ clip lists differ in length")
        self.hq, self.lq, self.layout, self.cfg = hq, lq, layout, cfg
        # The student's input may differ from the teacher's in its channels (e.g. the score), never in the
        # frames or the augmentation, which are drawn once for both.
        self.lq_cfg = lq_cfg or cfg
        if (self.lq_cfg.length, self.lq_cfg.max_persons) != (cfg.length, cfg.max_persons):
            raise ValueError("HQ and LQ inputs must share length and max_persons")
        self.train, self.seed = train, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.hq)

    def __getitem__(self, i: int):
        # Deterministic per (seed, epoch, clip): resumed and distributed runs draw the same samples.
        rng = np.random.default_rng((self.seed, self.epoch, i))
        n = self.hq[i].total_frames
        idx = train_indices(n, self.cfg, rng) if self.train else sample_indices(n, self.cfg.length, False)[0]
        aug = draw_augment(rng, self.cfg) if self.train else None
        x_hq = make_input(self.hq[i], self.layout, self.cfg, idx, aug)
        x_lq = make_input(self.lq[i], self.layout, self.lq_cfg, idx, aug)
        return torch.from_numpy(x_hq), torch.from_numpy(x_lq), int(self.hq[i].label)
