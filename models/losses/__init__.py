"""Distillation losses, one per file (graph matching, logit KD, FitNets, RKD, attention transfer)."""

from models.losses.attention import AttentionLoss, attention_map
from models.losses.distill import METHODS, REVISION_MODES, DistillConfig, DistillLosses, build_distill_losses
from models.losses.fitnet import FitNetLoss
from models.losses.graph_matching import GraphMatchingLoss, edge_matrices, pairwise_node_distances
from models.losses.kd import KDLoss
from models.losses.rkd import RKDLoss, pool_embedding

__all__ = [
    "METHODS", "REVISION_MODES", "AttentionLoss", "DistillConfig", "DistillLosses", "FitNetLoss",
    "GraphMatchingLoss", "KDLoss", "RKDLoss", "attention_map", "build_distill_losses", "edge_matrices",
    "pairwise_node_distances", "pool_embedding",
]
