"""Mixture-of-experts layers (mtf's transformer_moe_layer_v1 / v2) on namedmesh ops."""
