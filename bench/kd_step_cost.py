"""CPU cost of one distillation step per method, as a ratio to a plain (CE-only) step.

    python bench/kd_step_cost.py --hq penn.pkl --teacher runs/.../teacher/model.pt [--rounds 8] [--threads 1]

Every variant is a whole step (teacher and student forwards, the terms, backward or revision, SGD step) on the
same real batch: 32 train clips at the combined severity, student width 0.25, the given teacher, through
`models.training.student.distill_step` as `pipeline distill` runs it. Variants run interleaved, round after
round; reported: the median CPU seconds per step and the median of the per-round ratios to the plain step (robust
to a CPU shared with other work).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path

VARIANTS = [  # (label, method, revision, revision blocks, other DistillConfig fields)
    ("plain (CE only)", "none", "none", 1, {}),
    ("kd", "kd", "none", 1, {}),
    ("rkd", "rkd", "none", 1, {}),
    ("at", "at", "none", 1, {}),
    ("skd-authors, no revision", "skd-authors", "none", 1, {}),
    ("skd-authors, exact global revision (jvp)", "skd-authors", "global", 1, {}),
    ("skd, no revision", "skd", "none", 1, {}),
    ("skd, tail revision: last block + head (default)", "skd", "tail", 1, {}),
    ("skd, tail revision: last 2 blocks + head", "skd", "tail", 2, {}),
    ("kd + function matching (mixup)", "kd", "none", 1, {"mix": "mixup"}),
    ("skd default + function matching (mixup)", "skd", "tail", 1, {"mix": "mixup"}),
    ("skd default + cross-clip joint relations (xclip 1)", "skd", "tail", 1, {"xclip_weight": 1.0}),
    ("skd default + temporal relations (trel 1)", "skd", "tail", 1, {"trel_weight": 1.0}),
    ("skd default + reliability-weighted node matching (rel 1)", "skd", "tail", 1, {"rel_weight": 1.0}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hq", type=Path, required=True)
    ap.add_argument("--teacher", type=Path, required=True)
    ap.add_argument("--spec", default="drop=0.8,impute=3,jitter=0.05,framedrop=0.3")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default="", help="comma-separated row numbers (0 = plain, always run) to time")
    args = ap.parse_args()
    rows = VARIANTS if not args.only else [VARIANTS[0]] + [VARIANTS[int(i)] for i in args.only.split(",")
                                                            if int(i) != 0]

    import numpy as np
    import torch

    from models.checkpoint import load_checkpoint
    from models.grad_revision import FeatureTap
    from models.losses.distill import DistillConfig, build_distill_losses
    from models.losses.multiblock import BlockTap
    from models.revision_subset import tail_parameters
    from models.training.function_matching import draw_mix
    from models.training.runtime import configure_cpu
    from models.training.student import distill_step
    from pipeline.data.paired import PairedClipDataset
    from pipeline.stages.distilling import load_pair, make_request
    from pipeline.stages.training import build_model

    configure_cpu(args.threads)
    data, _ = load_pair(args.hq, None, args.spec, None, 0, False)
    tr_hq, tr_lq = data.subset("train")
    teacher, meta = load_checkpoint(args.teacher)
    for p in teacher.parameters():
        p.requires_grad_(False)
    icfg = meta["input_config"]
    req = make_request(epochs=20, student_width=0.25, length=icfg.length)
    s_icfg = replace(icfg, use_score=req.input.use_score)
    ds = PairedClipDataset(tr_hq[:32], tr_lq[:32], data.layout, icfg, train=True, seed=0, lq_cfg=s_icfg)
    x_hq, x_lq = (torch.stack([ds[i][k] for i in range(32)]) for k in (0, 1))
    y = torch.tensor([ds[i][2] for i in range(32)])

    def variant(method: str, revision: str, blocks: int, extra: dict):
        torch.manual_seed(0)
        student, _ = build_model(data.layout, len(data.classes), tr_hq[0].num_channels, s_icfg, req.student_model)
        dcfg = DistillConfig(method=method, grad_revision=revision, revision_blocks=blocks, **extra)
        rng = np.random.default_rng(0)
        losses = build_distill_losses(dcfg, student.feature_channels, teacher.feature_channels)
        params = [p for p in list(student.parameters()) + list(losses.parameters()) if p.requires_grad]
        opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
        revise = method != "none" and revision != "none"
        subset = tail_parameters(student, losses, blocks) if revise and revision == "tail" else None
        tap = FeatureTap(student, student.blocks[-1]) if revise and subset is None else None
        mids = losses.blocks(len(student.blocks))
        taps = (BlockTap(student, mids), BlockTap(teacher, mids)) if mids else None
        student.train()

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            mix = draw_mix(dcfg.mix, dcfg.mix_alpha, len(y), x_hq.shape[2], rng)
            distill_step(teacher, student, losses, x_hq, x_lq, y, dcfg, params, tap, subset=subset, block_taps=taps,
                         mix=mix)
            opt.step()
        return step

    steps = {label: variant(*v) for label, *v in rows}
    for f in steps.values():  # warm-up
        f()
    times: dict[str, list[float]] = {k: [] for k in steps}
    ratios: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.rounds):
        rnd = {}
        for k, f in steps.items():
            t0 = time.process_time()
            f()
            rnd[k] = time.process_time() - t0
            times[k].append(rnd[k])
        for k in steps:
            ratios[k].append(rnd[k] / rnd[rows[0][0]])
    print(f"| step (batch 32, T={icfg.length}, student width 0.25, teacher {teacher.config.width}) | CPU s/step | "
          f"× plain |")
    print("|---|---|---|")
    for k in steps:
        print(f"| {k} | {statistics.median(times[k]):.3f} | {statistics.median(ratios[k]):.2f} |")


if __name__ == "__main__":
    main()
