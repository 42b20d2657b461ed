"""Cost of an SKD training step with and without gradient revision, as ratios to a plain (CE-only) step.

    python bench/grad_revision_cost.py [--batch 16] [--frames 32] [--width 1.0] [--rounds 10] [--threads 2]

Variants, each a full optimizer step of the student (forward, losses, backward, SGD step):
- plain: student forward + CE (the baseline);
- skd, no revision: + frozen teacher forward, graph matching (node + edge) and logit KD, one backward of the sum;
- skd, revision naive (global / per_tensor): one backward per loss through the whole student (the authors' way);
- skd, revision batched: one vmapped backward of the stacked loss vector (`is_grads_batched`);
- skd, revision batched-split: per-loss gradients w.r.t. the shared features, then one vmapped backward;
- skd, revision jvp (global): 2 backward passes + 1 forward-mode pass through the backbone, whatever K.
Every revision variant is exact; the script checks that their gradients agree before timing.
Variants run interleaved, round after round; reported: the median time per variant and the median of its per-round
ratio to the plain step of the same round (robust to a CPU shared with other work).
The student is models/net/stgcn.py's ST-GCN when that module exists with the expected interface, else a stand-in of
the same architecture defined here (said in the output).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import date

import torch
import torch.nn.functional as F
from torch import nn

from models.contract.layouts import get_layout
from models.grad_revision import FeatureTap, revise_and_backward
from models.losses.distill import DistillConfig, build_distill_losses
from models.net.graph import spatial_adjacency


class _Block(nn.Module):
    """ST-GCN block: spatial graph conv (K partitions), BN, ReLU, temporal conv 9×1, BN, residual, ReLU."""

    def __init__(self, c_in: int, c_out: int, a: torch.Tensor, stride: int = 1, residual: bool = True):
        super().__init__()
        self.register_buffer("a", a)
        self.importance = nn.Parameter(torch.ones_like(a))
        self.gcn = nn.Conv2d(c_in, c_out * a.shape[0], 1)
        self.tcn = nn.Sequential(nn.BatchNorm2d(c_out), nn.ReLU(), nn.Conv2d(c_out, c_out, (9, 1), (stride, 1), (4, 0)),
                                 nn.BatchNorm2d(c_out))
        if not residual:
            self.res = None
        elif c_in == c_out and stride == 1:
            self.res = nn.Identity()
        else:
            self.res = nn.Sequential(nn.Conv2d(c_in, c_out, 1, (stride, 1)), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, t, v = x.shape
        k = self.a.shape[0]
        y = self.gcn(x).view(n, k, -1, t, v)
        y = torch.einsum("nkctv,kvw->nctw", y, self.a * self.importance)
        y = self.tcn(y)
        return F.relu(y + (0 if self.res is None else self.res(x)))


class StandInSTGCN(nn.Module):
    """ST-GCN (Yan et al. 2018) sized by a width multiplier; input `(N, M, T, V, C)`."""

    def __init__(self, num_classes: int, a: torch.Tensor, in_channels: int = 2, width: float = 1.0):
        super().__init__()
        v = a.shape[1]
        ch = [max(4, int(round(c * width))) for c in (64, 64, 64, 64, 128, 128, 128, 256, 256, 256)]
        strides = (1, 1, 1, 1, 2, 1, 1, 2, 1, 1)
        self.data_bn = nn.BatchNorm1d(in_channels * v)
        blocks, c_prev = [], in_channels
        for i, (c, s) in enumerate(zip(ch, strides)):
            blocks.append(_Block(c_prev, c, a, s, residual=i > 0))
            c_prev = c
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Conv2d(c_prev, num_classes, 1)
        self.out_channels = c_prev

    def forward(self, x: torch.Tensor, return_features: bool = False):
        n, m, t, v, c = x.shape
        x = self.data_bn(x.permute(0, 1, 3, 4, 2).reshape(n * m, v * c, t))
        x = x.view(n * m, v, c, t).permute(0, 2, 3, 1).contiguous()
        feats = self.blocks(x)  # (N·M, C, T', V): the distilled layer
        pooled = feats.mean(dim=(2, 3)).view(n, m, -1).mean(1)
        logits = self.fc(pooled[:, :, None, None]).flatten(1)
        return (logits, feats) if return_features else logits


def build_models(args, num_classes: int) -> tuple[nn.Module, nn.Module, nn.Module, str]:
    """(student, teacher, the student's distilled-layer module, description)."""
    layout = get_layout("penn13")
    if not args.stand_in:
        try:  # the project's ST-GCN
            from models.net.stgcn import STGCN, STGCNConfig
        except ImportError:
            pass
        else:
            def make(width: float) -> nn.Module:
                return STGCN(STGCNConfig(in_channels=2, num_classes=num_classes, layout=layout.to_dict(), width=width,
                                         max_persons=args.persons))
            student, teacher = make(args.width), make(1.0)
            student.out_channels, teacher.out_channels = student.feature_channels, teacher.feature_channels
            return student, teacher, student.blocks[-1], f"models/net/stgcn.py ST-GCN (width {args.width})"
    a = torch.from_numpy(spatial_adjacency(layout))
    student = StandInSTGCN(num_classes, a, 2, args.width)
    teacher = StandInSTGCN(num_classes, a, 2, 1.0)
    return student, teacher, student.blocks, f"stand-in ST-GCN defined in this script (width {args.width})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--persons", type=int, default=1)
    ap.add_argument("--classes", type=int, default=15)
    ap.add_argument("--width", type=float, default=1.0, help="student width multiplier (teacher: 1.0)")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall: elapsed time; cpu: this process's CPU time (robust on a busy machine; use --threads 1)")
    ap.add_argument("--stand-in", action="store_true",
                    help="use this script's ST-GCN even if models/net/stgcn.py exists")
    ap.add_argument("--variants", default="all", help="comma-separated subset of the variant names")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    v = get_layout("penn13").num_joints
    student, teacher, layer, desc = build_models(args, args.classes)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    c_s = student.out_channels
    c_t = teacher.out_channels
    distill = build_distill_losses(DistillConfig(method="skd-authors"), c_s, c_t)
    params = list(student.parameters()) + list(distill.parameters())
    opt = torch.optim.SGD(params, lr=1e-4, momentum=0.9, nesterov=True, weight_decay=1e-4)
    x_hq = torch.randn(args.batch, args.persons, args.frames, v, 2)
    x_lq = x_hq + 0.1 * torch.randn_like(x_hq)
    y = torch.randint(0, args.classes, (args.batch,))
    def skd_losses(split: bool):
        with torch.no_grad():
            z_t, f_t = teacher(x_hq, return_features=True)
        splitter = FeatureTap(student, layer) if split else None
        z_s, f_s = (splitter or student)(x_lq, return_features=True)
        losses = {"ce": F.cross_entropy(z_s, y), **distill(z_s, f_s, z_t, f_t, persons=args.persons)}
        return losses, splitter

    def plain():
        z = student(x_lq)
        F.cross_entropy(z, y).backward()

    def skd(mode: str, impl: str, split: bool):
        def step():
            losses, splitter = skd_losses(split)
            try:
                revise_and_backward(losses, "ce", params, mode, impl, splitter)
            finally:
                if splitter is not None:
                    splitter.remove()
        return step

    variants = {
        "plain (CE only)": plain,
        "skd, no revision": skd("none", "auto", False),
        "skd, global, naive": skd("global", "naive", False),
        "skd, global, batched": skd("global", "batched", False),
        "skd, global, batched-split": skd("global", "batched", True),
        "skd, global, jvp": skd("global", "jvp", True),
        "skd, per_tensor, naive": skd("per_tensor", "naive", False),
        "skd, per_tensor, naive-split": skd("per_tensor", "naive", True),
    }
    if args.variants != "all":
        keep = {s.strip() for s in args.variants.split(",")}
        variants = {k: f for k, f in variants.items() if k in keep or k.startswith("plain")}

    # Exactness check first: every global revision variant gives the same gradient (BN statistics aside).
    state = {k: t.clone() for k, t in student.state_dict().items()}
    ref = None
    for name, fn in variants.items():
        if "global" not in name:
            continue
        student.load_state_dict(state)
        opt.zero_grad(set_to_none=True)
        fn()
        g = torch.cat([p.grad.flatten() for p in params if p.grad is not None])
        if ref is None:
            ref = g
        else:
            err = ((g - ref).abs().max() / ref.abs().max()).item()
            print(f"check {name}: max |Δgrad| / max |grad| = {err:.2e}")
            assert err < 1e-4, name

    clock = time.perf_counter if args.clock == "wall" else time.process_time
    times: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(args.warmup + args.rounds):
        for name, fn in variants.items():
            opt.zero_grad(set_to_none=True)
            t0 = clock()
            fn()
            opt.step()
            dt = clock() - t0
            if r >= args.warmup:
                times[name].append(dt)
    plain_t = times["plain (CE only)"]
    n_params = sum(p.numel() for p in student.parameters())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n{date.today()}  {platform.machine()}, {os.cpu_count()} CPUs (1-min load {load:.1f} at the end), "
          f"torch {torch.__version__}, {args.threads} threads; student: {desc}, {n_params / 1e6:.2f} M params; "
          f"batch {args.batch}, T={args.frames}, V={v}, M={args.persons}; {args.rounds} rounds; {args.clock} clock")
    print("| variant | median ms / step | median × plain (same round) |\n|---|---:|---:|")
    for name, ts in times.items():
        ratio = statistics.median(t / b for t, b in zip(ts, plain_t))
        print(f"| {name} | {1000 * statistics.median(ts):.0f} | {ratio:.2f} |")

if __name__ == "__main__":
    main()
