"""Layers with mtf-named variables."""
from namedmesh.layers.dense import dense
from namedmesh.layers.variables import (VariableStore, truncated_normal_initializer,
                                        variance_scaling_initializer, zeros_initializer)

__all__ = ["dense", "VariableStore", "truncated_normal_initializer",
           "variance_scaling_initializer", "zeros_initializer"]
