"""Speed of our ST-GCN against the original ST-GCN code (yysijie/st-gcn), same configuration, one run.

The original is not part of this project and is never committed. Bring its three model files into a folder
OUTSIDE the repository, e.g. from a clone of https://github.com/yysijie/st-gcn:

    mkdir -p /tmp/stgcn_orig/net/utils
    for f in net/__init__.py net/st_gcn.py net/utils/__init__.py net/utils/graph.py net/utils/tgcn.py; do
        git -C st-gcn show HEAD:$f > /tmp/stgcn_orig/$f; done

then run

    python bench/speed_vs_stgcn.py --orig /tmp/stgcn_orig --threads 2

Measured for V=13 (penn13 graph) and V=25 (the original's NTU graph), T=64, one person, 3 input channels, the
original's 10 blocks (64-64-64-64-128-128-128-256-256-256, temporal kernel 9, edge importance), batch 1 and 32:
training samples/s (forward, cross-entropy, backward, SGD step) and inference ms per clip (eval mode, no grad),
ours and the original interleaved round by round (the machine is shared, so each number is the median over
rounds), plus parameters and multiply-accumulates (torch's FlopCounterMode for both). Before timing, the
original's weights are copied into ours and both are run on the same input, to show the two compute the same
function (the one architectural difference: the original's graph-conv bias is added before the joint
aggregation, so it becomes joint-dependent; the check zeroes that bias). A third column times ours with
`pipeline train --precision bf16` (bfloat16 autocast of the forward, fp32 weights), against the original in fp32.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from models.contract.layouts import get_layout
from models.net.graph import spatial_adjacency
from models.net.stgcn import STGCN, STGCNConfig, count_macs, count_params
from models.training.runtime import configure_cpu

ROOT = Path(__file__).resolve().parents[1]


def load_original(folder: Path):
    if not (folder / "net" / "st_gcn.py").is_file():
        sys.exit(f"original ST-GCN code not found: {folder}/net/st_gcn.py (see this script's docstring)")
    if ROOT in folder.resolve().parents or folder.resolve() == ROOT:
        sys.exit("keep the original code outside the repository")
    sys.path.insert(0, str(folder))
    import net.st_gcn as orig  # type: ignore[import-not-found]

    return orig


def build_original(orig, v: int, classes: int):
    if v == 25:
        return orig.Model(3, classes, {"layout": "ntu-rgb+d", "strategy": "spatial"}, True)

    # The original knows only the OpenPose-18 and NTU-25 graphs: give it ours for other layouts (same shape).
    class PennGraph:
        def __init__(self, **_):
            self.A = spatial_adjacency(get_layout("penn13"))

    saved = orig.Graph
    orig.Graph = PennGraph
    try:
        return orig.Model(3, classes, {}, True)
    finally:
        orig.Graph = saved


def build_ours(v: int, classes: int) -> STGCN:
    layout = get_layout("ntu25" if v == 25 else "penn13")
    return STGCN(STGCNConfig(in_channels=3, num_classes=classes, layout=layout.to_dict(), max_persons=1))


def port_weights(src, dst: STGCN) -> None:
    """Copy the original's weights into ours (with the original's graph), for the equivalence check."""
    dst.A = src.A.clone()
    sd = {}
    sd["data_bn.weight"], sd["data_bn.bias"] = src.data_bn.weight, src.data_bn.bias
    sd["data_bn.running_mean"], sd["data_bn.running_var"] = src.data_bn.running_mean, src.data_bn.running_var
    for i, blk in enumerate(src.st_gcn_networks):
        w = blk.gcn.conv.weight  # [K*Cout, Cin, 1, 1], output channel (k, o)
        k = src.A.shape[0]
        cout, cin = w.shape[0] // k, w.shape[1]
        sd[f"blocks.{i}.gcn.mix.weight"] = w.view(k, cout, cin).permute(1, 0, 2).reshape(cout, k * cin, 1, 1)
        sd[f"blocks.{i}.gcn.mix.bias"] = torch.zeros(cout)
        for ours, theirs in (("bn1", blk.tcn[0]), ("bn2", blk.tcn[3])):
            for name in ("weight", "bias", "running_mean", "running_var"):
                sd[f"blocks.{i}.{ours}.{name}"] = getattr(theirs, name)
        sd[f"blocks.{i}.tconv.weight"], sd[f"blocks.{i}.tconv.bias"] = blk.tcn[2].weight, blk.tcn[2].bias
        if isinstance(blk.residual, torch.nn.Sequential):
            sd[f"blocks.{i}.residual.0.weight"] = blk.residual[0].weight
            sd[f"blocks.{i}.residual.0.bias"] = blk.residual[0].bias
            for name in ("weight", "bias", "running_mean", "running_var"):
                sd[f"blocks.{i}.residual.1.{name}"] = getattr(blk.residual[1], name)
        sd[f"edge_importance.{i}"] = src.edge_importance[i]
    sd["fc.weight"] = src.fcn.weight.view(src.fcn.weight.shape[0], -1)
    sd["fc.bias"] = src.fcn.bias
    own = dst.state_dict()
    for key, value in sd.items():
        own[key] = value.detach().clone().reshape(own[key].shape)
    dst.load_state_dict(own)


def equivalence(orig, v: int) -> float:
    torch.manual_seed(0)
    src = build_original(orig, v, 60)
    with torch.no_grad():
        for blk in src.st_gcn_networks:
            blk.gcn.conv.bias.zero_()
            for p in blk.parameters():
                if p.dim() == 1 and p is not blk.gcn.conv.bias:
                    p.add_(0.1 * torch.randn_like(p))  # non-trivial BN affine parameters
        for imp in src.edge_importance:
            imp.add_(0.2 * torch.rand_like(imp))
    ours = build_ours(v, 60)
    port_weights(src, ours)
    src.eval()
    ours.eval()
    x = torch.randn(2, 1, 64, v, 3)
    with torch.no_grad():
        a = src(x.permute(0, 4, 2, 3, 1).contiguous())
        b = ours(x)
    return float((a - b).abs().max() / a.abs().max())


def timed(fn, iters: int) -> float:
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t) / iters


def measure(orig, v: int, batch: int, rounds: int, classes: int = 60, bf16: bool = True) -> dict:
    torch.manual_seed(0)
    models = {"ours": build_ours(v, classes), "original": build_original(orig, v, classes)}
    if bf16:
        models["ours_bf16"] = build_ours(v, classes)
    x = torch.randn(batch, 1, 64, v, 3)
    inputs = {"ours": x, "ours_bf16": x, "original": x.permute(0, 4, 2, 3, 1).contiguous()}  # theirs: NCTVM
    y = torch.randint(0, classes, (batch,))
    opts = {k: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, nesterov=True) for k, m in models.items()}

    def precision(k):  # `pipeline train --precision bf16`: bfloat16 autocast of the forward, fp32 weights
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=k == "ours_bf16")

    def train_step(k):
        def step():
            opts[k].zero_grad(set_to_none=True)
            with precision(k):
                logits = models[k](inputs[k])
            F.cross_entropy(logits.float(), y).backward()
            opts[k].step()
        return step

    def infer(k):
        def run():
            with torch.inference_mode(), precision(k):
                models[k](inputs[k])
        return run

    train_iters = 2 if batch > 1 else 8
    infer_iters = 2 if batch > 1 else 10
    res = {k: {"train": [], "infer": []} for k in models}
    for k, m in models.items():  # warm-up: oneDNN primitive creation, allocator
        m.train()
        train_step(k)()
        m.eval()
        infer(k)()
    for _ in range(rounds):
        for k, m in models.items():
            m.train()
            res[k]["train"].append(timed(train_step(k), train_iters))
            m.eval()
            res[k]["infer"].append(timed(infer(k), infer_iters))
    out = {}
    for k, m in models.items():
        t_train = statistics.median(res[k]["train"])
        t_inf = statistics.median(res[k]["infer"])
        out[k] = {"train_samples_per_s": batch / t_train, "infer_ms_per_clip": 1000 * t_inf / batch,
                  "params": count_params(m), "macs_per_clip": count_macs(m, inputs[k][:1])}
    for k in [k for k in models if k != "original"]:
        sfx = k[len("ours"):]
        out["ratio_train" + sfx] = out[k]["train_samples_per_s"] / out["original"]["train_samples_per_s"]
        out["ratio_infer" + sfx] = out["original"]["infer_ms_per_clip"] / out[k]["infer_ms_per_clip"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--orig", type=Path, default=Path("/tmp/stgcn_orig"), help="folder holding net/st_gcn.py")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (median reported)")
    ap.add_argument("--allocator", choices=["tuned", "default"], default="tuned",
                    help="tuned: models.training.runtime.tune_allocator() for BOTH models (what `pipeline train` does)")
    ap.add_argument("--joints", default="13,25")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--no-bf16", action="store_true", help="skip the bfloat16-autocast column")
    ap.add_argument("--json-out", type=Path, default=None)
    args = ap.parse_args()
    cpu = configure_cpu(args.threads, allocator=args.allocator == "tuned")
    orig = load_original(args.orig)
    result = {"benchmark": "speed_vs_original_stgcn",
              "command": "python bench/speed_vs_stgcn.py " + " ".join(sys.argv[1:]),
              "date": datetime.date.today().isoformat(),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
                         f"threads {cpu['threads']}, allocator {'tuned' if cpu['allocator_tuned'] else 'default'}",
              "equivalence_max_rel_diff": {}, "cases": []}
    for v in map(int, args.joints.split(",")):
        result["equivalence_max_rel_diff"][v] = equivalence(orig, v)
        print(f"V={v}: ours vs original on ported weights, max relative difference "
              f"{result['equivalence_max_rel_diff'][v]:.2e}", flush=True)
    print(f"{'V':>3} {'batch':>5} | {'train samples/s':>26} {'ratio':>6} | {'inference ms/clip':>24} {'ratio':>6} | "
          f"{'params':>8} {'GMACs/clip':>18}")
    for v in map(int, args.joints.split(",")):
        for b in map(int, args.batches.split(",")):
            r = measure(orig, v, b, args.rounds, bf16=not args.no_bf16)
            r.update(joints=v, batch=b, frames=64)
            result["cases"].append(r)
            o, t = r["ours"], r["original"]
            print(f"{v:>3} {b:>5} | ours {o['train_samples_per_s']:8.1f} orig {t['train_samples_per_s']:8.1f} "
                  f"{r['ratio_train']:5.2f}x | ours {o['infer_ms_per_clip']:7.2f} orig {t['infer_ms_per_clip']:7.2f} "
                  f"{r['ratio_infer']:5.2f}x | {o['params'] / 1e6:.2f}M/{t['params'] / 1e6:.2f}M "
                  f"{o['macs_per_clip'] / 1e9:.2f}/{t['macs_per_clip'] / 1e9:.2f}", flush=True)
            if "ours_bf16" in r:
                h = r["ours_bf16"]
                print(f"{'':>9} | bf16 {h['train_samples_per_s']:8.1f} {'':13} {r['ratio_train_bf16']:5.2f}x | "
                      f"bf16 {h['infer_ms_per_clip']:7.2f} {'':12} {r['ratio_infer_bf16']:5.2f}x |", flush=True)
    if args.json_out:
        from models.contract.atomic import atomic_write_text
        atomic_write_text(args.json_out, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
