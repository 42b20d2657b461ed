"""Issue 23: cut paired HQ/LQ pickles of long real videos into the windows `pipeline run` classifies.

    python bench/recipe23/window_pairs.py HQ.pkl LQ.pkl OUT_HQ.pkl OUT_LQ.pkl

`pipeline dataset build` makes one clip per video; a distillation run then draws its windows from the whole
video (a 50-100 % slice of a minute-long video squeezed into 32 frames), which is not what the student is shown at
run time. Each clip pair becomes one clip pair per window of pipeline.infer.prediction.window_bounds (the whole
video up to 10 s, else 4-s windows every 2 s); windows where either side sees a person on fewer frames than
`run` needs to call an action (min_frames) are dropped. Names: `CLIP@START`; every window goes to the split of
its video.
"""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np

from models.contract.skeleton import SkeletonDataset
from pipeline.data.pyskl_io import load_dataset, save_dataset
from pipeline.infer.prediction import enough_person, window_bounds


def windowed(hq: SkeletonDataset, lq: SkeletonDataset) -> tuple[SkeletonDataset, SkeletonDataset]:
    lq_by = lq.by_name()
    split_of = {n: s for s, names in hq.split.items() for n in names}
    out_h, out_l, split = [], [], {}
    for h in hq.clips:
        lo = lq_by[h.frame_dir]
        fps = h.fps or 30.0
        bounds = window_bounds(h.total_frames, fps)
        keep = np.logical_and(*(enough_person(bounds, (c.scores() > 0).any(axis=(0, 2)), fps) for c in (h, lo)))
        for s, e in (b for b, k in zip(bounds, keep) if k):
            name = f"{h.frame_dir}@{s}"
            for c, out in ((h, out_h), (lo, out_l)):
                out.append(replace(c, frame_dir=name, keypoint=c.keypoint[:, s:e],
                                   keypoint_score=None if c.keypoint_score is None else c.keypoint_score[:, s:e]))
            split.setdefault(split_of.get(h.frame_dir, "train"), []).append(name)
    return (SkeletonDataset(out_h, split, hq.classes, hq.layout), SkeletonDataset(out_l, split, lq.classes, lq.layout))


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    h, lo = windowed(load_dataset(args[0]), load_dataset(args[1]))
    save_dataset(h, args[2])
    save_dataset(lo, args[3])
    print(f"{len(h.clips)} windows from {len({c.frame_dir.rsplit('@', 1)[0] for c in h.clips})} clips")
    return 0


if __name__ == "__main__":
    sys.exit(main())
