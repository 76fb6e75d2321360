"""Mixture-of-experts layers (mtf's transformer_moe_layer_v1 / v2) on namedmesh ops."""
from namedmesh.moe.config import MoE1DConfig, MoE2DConfig
from namedmesh.moe.dispatch import IndexDispatcher, OneHotEinsumDispatcher, make_dispatcher
from namedmesh.moe.groups import expert_capacity, split_into_groups
from namedmesh.moe.layers import MoE1D, MoE2D
from namedmesh.moe.stats import MoEStats, RoutingStats

__all__ = ["MoE1D", "MoE2D", "MoE1DConfig", "MoE2DConfig", "MoEStats", "RoutingStats",
           "OneHotEinsumDispatcher", "IndexDispatcher", "make_dispatcher", "expert_capacity",
           "split_into_groups"]
