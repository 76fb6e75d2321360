"""Keras 3 layers over namedmesh's modules: plain tensors in and out, axes named once.

``namedmesh.keras.MoE1D``, ``MoE2D``, ``Dense`` and ``TransformerLM`` (a whole language
model from a legacy config) are ``keras.layers.Layer``s;
see ``namedmesh.keras.layers`` and docs/keras.md.
"""
from namedmesh.keras.layers import ROUTING_METRICS, Dense, MeshLayer, MoE1D, MoE2D
from namedmesh.keras.transformer import TransformerLM

__all__ = ["Dense", "MeshLayer", "MoE1D", "MoE2D", "ROUTING_METRICS", "TransformerLM"]
