"""Structural knowledge distillation: graph matching (node + edge) plus logit KD, in two recipes.

- `skd` (the default of `pipeline distill`): the node (feature-imitation) term down-weighted to 0.1, the edge
  term on the last block AND on two middle blocks (multiblock.py), KD at τ=1, and a gradient revision whose
  conflict test runs on the network's tail only (models/revision_subset.py), so that a step stays cheap.
- `skd-authors`: the authors' code as published: node 1, edge 1 on the last block, KD 1 at τ=1, the exact global
  revision over every parameter.
Both take three optional structural terms on the last block, off by default (weight 0): `xclip` (cross_clip.py,
per-joint relations across the clips of a batch), `trel` (temporal_relation.py, per-joint relations across
frames) and `rel` (reliability.py, node matching on the joints the student's LQ input lacks, with graph matching's
adapter). Why these settings: docs/RESULTS.md (distillation sections).
"""

from __future__ import annotations

from torch import Tensor, nn

from models.losses.cross_clip import CrossClipJointLoss
from models.losses.graph_matching import GraphMatchingLoss
from models.losses.kd import KDLoss, check_tau, kd_terms
from models.losses.method import LossMethod
from models.losses.multiblock import MultiBlockEdgeLoss, middle_blocks
from models.losses.reliability import ReliabilityNodeLoss, missing_fraction
from models.losses.temporal_relation import TemporalRelationLoss


def _build(cfg, channels_s: int, channels_t: int) -> dict[str, nn.Module]:
    mods: dict[str, nn.Module] = {"kd": KDLoss(cfg.tau, cfg.kd_weight)} if cfg.kd_weight != 0 else {}
    mods["graph"] = GraphMatchingLoss(channels_s, channels_t, cfg.node_weight, cfg.edge_weight, cfg.edge_on_adapted,
                                      cfg.edge_time_stride, cfg.adapter_init)
    if cfg.mid_edge_weight != 0:
        mods["mid_edge"] = MultiBlockEdgeLoss(cfg.mid_edge_weight)
    if cfg.xclip_weight != 0:
        mods["xclip"] = CrossClipJointLoss(cfg.xclip_weight)
    if cfg.trel_weight != 0:
        mods["trel"] = TemporalRelationLoss(cfg.trel_weight)
    if cfg.rel_weight != 0:
        mods["rel"] = ReliabilityNodeLoss(cfg.rel_weight)
    return mods


def _terms(m: dict[str, nn.Module], z_s: Tensor, f_s: Tensor, z_t: Tensor, f_t: Tensor,
           persons: int) -> dict[str, Tensor]:
    out = {**kd_terms(m, z_s, f_s, z_t, f_t, persons), **m["graph"](f_s, f_t)}
    for name in ("xclip", "trel"):  # optional structural terms on the last block (off in both recipes)
        if name in m:
            out[name] = m[name](f_s, f_t, persons)
    return out


def _input_terms(m: dict[str, nn.Module], x_s: Tensor | None, f_s: Tensor, f_t: Tensor,
                 persons: int) -> dict[str, Tensor]:
    if "rel" not in m:  # optional, off in both recipes
        return {}
    if x_s is None:
        raise ValueError("the rel term needs the student's input window (x_s): what its LQ input lacks")
    missing = missing_fraction(x_s, persons, f_s.shape[2])
    return {"rel": m["rel"](m["graph"].adapter(f_s), f_t, missing)}


def _blocks(cfg, depth: int) -> tuple[int, ...]:
    return middle_blocks(depth) if cfg.mid_edge_weight != 0 else ()


def _block_terms(m: dict[str, nn.Module], feats_s: list[Tensor], feats_t: list[Tensor]) -> dict[str, Tensor]:
    return {"mid_edge": m["mid_edge"](feats_s, feats_t)} if "mid_edge" in m and feats_s else {}


def _check(cfg) -> None:
    check_tau(cfg)
    if cfg.edge_time_stride < 1:
        raise ValueError(f"edge_time_stride must be >= 1, got {cfg.edge_time_stride}")


_COMMON = {"tau": 1.0, "kd_weight": 1.0, "edge_weight": 1.0, "edge_on_adapted": True, "edge_time_stride": 1,
           "adapter_init": "default", "xclip_weight": 0.0, "trel_weight": 0.0, "rel_weight": 0.0}

METHOD = LossMethod(help="graph matching, node 0.1 + edge on the last and two middle blocks + logits, revision on "
                         "the tail (default)",
                    build=_build, terms=_terms, check=_check, revision="tail", blocks=_blocks,
                    block_terms=_block_terms, input_terms=_input_terms,
                    options={**_COMMON, "node_weight": 0.1, "mid_edge_weight": 1.0})
AUTHORS = LossMethod(help="the authors' SKD: node + edge on the last block + logits, exact revision",
                     build=_build, terms=_terms, check=_check, revision="global", blocks=_blocks,
                     block_terms=_block_terms, input_terms=_input_terms,
                     options={**_COMMON, "node_weight": 1.0, "mid_edge_weight": 0.0})
