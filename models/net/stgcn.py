"""ST-GCN (Yan, Xiong, Lin, AAAI 2018) for any skeleton layout, written for speed on CPU.

Same architecture as the original (spatial-partition graph conv, learnable edge importance, 9-frame temporal conv,
residual blocks, temporal stride 2 at the 1/3 and 2/3 points, channels 64 -> 128 -> 256), with a width multiplier
and a depth option so a student can be smaller than its teacher.

Why it is faster than the original code on a CPU:
- activations stay in channels-last memory (`[N*M, C, T, V]` logically, `[N*M, T, V, C]` physically) from the
  input to the pooling, so every convolution runs oneDNN's channels-last kernels and no layer permutes or copies;
- the graph convolution aggregates over joints first, for all three partition subsets in one matmul whose output
  is already laid out as `(subset, channel)` per joint, then mixes channels with one 1x1 convolution over
  `3*C_in` inputs. The original computes a 1x1 conv to `3*C_out` channels in NCHW, then an einsum that copies.
  On channel-expanding blocks this order also needs fewer multiply-adds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.contract.layouts import Layout
from models.contract.numbers import ARCH_LIMITS, check_number
from models.net.graph import spatial_adjacency

_CL = torch.channels_last


@dataclass
class STGCNConfig:
    in_channels: int
    num_classes: int
    layout: dict  # Layout.to_dict(), so a checkpoint carries its graph
    width: float = 1.0
    depth: int = 10
    base_channels: int = 64
    temporal_kernel: int = 9
    dropout: float = 0.0
    edge_importance: bool = True
    max_persons: int = 2  # only sizes the data BatchNorm, which normalises over (M, V, C)
    head_dropout: float = 0.0  # dropout before the classifier

    def __post_init__(self) -> None:
        # A checkpoint's config is data from a file: bound what it may ask for before anything is allocated.
        lim = ARCH_LIMITS
        check_number("in_channels", self.in_channels, 1, lim["in_channels"], integer=True)
        check_number("num_classes", self.num_classes, 1, lim["num_classes"], integer=True)
        check_number("depth", self.depth, 1, lim["depth"], integer=True)
        check_number("width", self.width, 0, None, lo_open=True)
        check_number("base_channels", self.base_channels, 1, lim["channels"], integer=True)
        check_number("temporal_kernel", self.temporal_kernel, 1, lim["temporal_kernel"], integer=True)
        check_number("max_persons", self.max_persons, 1, lim["max_persons"], integer=True)
        check_number("dropout", self.dropout, 0, 1, hi_open=True)
        check_number("head_dropout", self.head_dropout, 0, 1, hi_open=True)
        widest = self.base_channels * self.width * 4
        if widest > lim["channels"]:
            raise ValueError(f"base_channels x width asks for {widest:g} channels (at most {lim['channels']})")
        joints = self.layout.get("joints") if isinstance(self.layout, dict) else None
        if joints is not None and (not hasattr(joints, "__len__") or len(joints) > lim["joints"]):
            raise ValueError(f"the layout may have at most {lim['joints']} joints")

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> STGCNConfig:
        known = set(STGCNConfig.__dataclass_fields__)
        return STGCNConfig(**{k: v for k, v in d.items() if k in known})


def stage_plan(depth: int, base: int, width: float) -> list[tuple[int, int]]:
    """`(out_channels, stride)` per block: one input block, then three equal stages (64, 128, 256 x width),
    the 2nd and 3rd opening with temporal stride 2 (the original's 10 blocks: 4 x 64, 3 x 128, 3 x 256)."""
    if depth < 1:
        raise ValueError("depth must be >= 1")
    rest = depth - 1
    b1, b2 = 1 + round(rest / 3), 1 + round(2 * rest / 3)
    plan = []
    for i in range(depth):
        stage = 0 if i < b1 else (1 if i < b2 else 2)
        ch = max(4, int(round(base * width * 2 ** stage)))
        stride = 2 if i in (b1, b2) and i > 0 else 1
        plan.append((ch, stride))
    return plan


class GraphConv(nn.Module):
    """Spatial graph conv over K partition subsets: y = sum_k W_k x A_k, as ONE matmul + ONE 1x1 conv.

    Input and output are channels-last `[B, C, T, V]`.
    """

    def __init__(self, in_channels: int, out_channels: int, num_subsets: int):
        super().__init__()
        self.k = num_subsets
        # Input channels ordered (subset, channel), matching the aggregation's output layout.
        self.mix = nn.Conv2d(num_subsets * in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        b, c, t, v = x.shape
        # a: [K, V, W] with a[k, v, w] = weight from joint v into joint w. Rows (w, k) so that the result,
        # seen per (b, t), is [W, K*C]: exactly the channels-last input the 1x1 conv wants.
        a_wk = a.permute(2, 0, 1).reshape(v * self.k, v)
        xt = x.permute(0, 2, 3, 1).reshape(b * t, v, c)  # free view of channels-last memory
        # bmm over a stride-0 expand: no copies. (matmul would fold the batch by transposing x, copying it
        # twice, and runs 2-8x slower here.)
        z = torch.bmm(a_wk.expand(b * t, -1, -1), xt)  # [B*T, W*K, C]
        z = z.view(b, t, v, self.k * c).permute(0, 3, 1, 2)  # channels-last [B, K*C, T, W], no copy
        return self.mix(z)


class STGCNBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, num_subsets: int, stride: int = 1,
                 temporal_kernel: int = 9, dropout: float = 0.0, residual: bool = True):
        super().__init__()
        pad = (temporal_kernel - 1) // 2
        self.gcn = GraphConv(in_channels, out_channels, num_subsets)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.tconv = nn.Conv2d(out_channels, out_channels, (temporal_kernel, 1), (stride, 1), (pad, 0))
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.residual: nn.Module | None
        self.res_kind = "none"
        if not residual:
            self.residual = None
        elif in_channels == out_channels and stride == 1:
            self.residual = None
            self.res_kind = "identity"
        else:
            # Subsample, then a stride-1 1x1 conv: the same function as a strided 1x1 conv, but it avoids a oneDNN
            # bfloat16 backward path that corrupts memory for some small shapes (seen with 8 -> 16 channels).
            self.residual = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels))
            self.res_kind = "conv"
        self.stride = stride

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        y = self.gcn(x, a)
        y = F.relu(self.bn1(y), inplace=True)
        y = self.dropout(self.bn2(self.tconv(y)))
        if self.res_kind == "identity":
            y = y + x
        elif self.res_kind == "conv":
            y = y + self.residual(x[:, :, :: self.stride] if self.stride > 1 else x)
        return F.relu(y, inplace=True)


class STGCN(nn.Module):
    """Input `[N, M, T, V, C]` (M persons, padded with zeros); output logits `[N, num_classes]`."""

    def __init__(self, config: STGCNConfig):
        super().__init__()
        self.config = config
        layout = Layout.from_dict(config.layout)
        self.num_joints = layout.num_joints
        a = torch.from_numpy(spatial_adjacency(layout))
        self.register_buffer("A", a, persistent=False)  # rebuilt from the layout; not part of the weights
        k = a.shape[0]
        v, c, m = self.num_joints, config.in_channels, config.max_persons
        self.data_bn = nn.BatchNorm1d(m * v * c)
        plan = stage_plan(config.depth, config.base_channels, config.width)
        blocks = []
        cin = c
        for i, (cout, stride) in enumerate(plan):
            blocks.append(STGCNBlock(cin, cout, k, stride, config.temporal_kernel,
                                     0.0 if i == 0 else config.dropout, residual=i > 0))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        if config.edge_importance:
            self.edge_importance = nn.ParameterList([nn.Parameter(torch.ones_like(a)) for _ in blocks])
        else:
            self.edge_importance = None
        self._feature_channels = cin
        self.head_dropout = nn.Dropout(config.head_dropout) if config.head_dropout > 0 else nn.Identity()
        self.fc = nn.Linear(cin, config.num_classes)
        self._init_weights()
        self.to(memory_format=_CL)

    def _init_weights(self) -> None:
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
                if mod.bias is not None:
                    nn.init.zeros_(mod.bias)
        nn.init.normal_(self.fc.weight, 0, 0.01)  # near-uniform initial predictions
        nn.init.zeros_(self.fc.bias)

    @property
    def feature_channels(self) -> int:
        return self._feature_channels

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last block's output: logically `(N*M, C, T', V)`, stored channels-last.

        (`f.permute(0, 2, 3, 1)` is a contiguous `[N*M, T', V, C]` view; use `.reshape`, not `.view`, on `f`.)
        """
        n, m, t, v, c = x.shape
        if v != self.num_joints:
            raise ValueError(f"input has {v} joints, the model's layout has {self.num_joints}")
        if m > self.config.max_persons:
            raise ValueError(f"input has {m} persons, the model takes at most {self.config.max_persons}")
        if m < self.config.max_persons:  # pad persons with zeros so the data BN sees its (M, V, C) channels
            x = F.pad(x, (0, 0, 0, 0, 0, 0, 0, self.config.max_persons - m))
            m = self.config.max_persons
        # data BN over (M, V, C) channels; the input is tiny, so these two copies cost nothing.
        x = x.permute(0, 1, 3, 4, 2).reshape(n, m * v * c, t)
        x = self.data_bn(x)
        x = x.view(n * m, v, c, t).permute(0, 3, 1, 2).contiguous().permute(0, 3, 1, 2)  # channels-last
        for i, block in enumerate(self.blocks):
            a = self.A if self.edge_importance is None else self.A * self.edge_importance[i]
            x = block(x, a)
        return x

    @staticmethod
    def pool(f: torch.Tensor, n: int) -> torch.Tensor:
        """What the head sees: `features` `(N*M, C, T', V)` averaged over (T', V), then over the M persons: `[N, C]`."""
        return f.mean(dim=(2, 3)).view(n, -1, f.shape[1]).mean(dim=1)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        f = self.features(x)
        logits = self.fc(self.head_dropout(self.pool(f, x.shape[0])))
        return (logits, f) if return_features else logits


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass on `example` (FLOPs / 2, via torch's FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(example)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


__all__ = ["STGCN", "STGCNConfig", "STGCNBlock", "GraphConv", "stage_plan", "count_params", "count_macs"]
