"""Tokens whose input holds NaN or infinity, kept from poisoning the other tokens of their group.

mtf routes the tokens of a group together.  Its dispatch einsum multiplies every token's
input by the 0/1 dispatch tensor and sums over the group, and ``0 * NaN`` is NaN, so one
NaN token makes every expert slot of its group NaN, and so the output of every token of
the group; the router's load-balancing loss, a mean over all tokens, becomes NaN for the
whole batch (measured on MoE1D and MoE2D: 8 of 16 outputs NaN with the einsum dispatcher,
1 to 2 with the index dispatcher, the loss NaN with both).

The layer option ``nonfinite_tokens`` chooses:

* ``"mask"`` (default): before the router, a token with any non-finite element is zeroed
  and treated as padding (its importance is 0): no expert receives it, its MoE output is
  0 (a residual connection around the layer still carries its NaN), the loss and the
  other statistics leave it out, and ``RoutingStats.nonfinite_tokens`` counts it.  Tokens
  without NaN or infinity get exactly what mtf computes.
* ``"mtf"``: mtf 0.1.21's behaviour, with no check (and no cost).
"""

from typing import Optional, Tuple

import tensorflow as tf

from namedmesh.core.contraction import reduce_sum
from namedmesh.core.dims import Shape
from namedmesh.core.elementwise import cast, logical_not, not_equal, where
from namedmesh.core.tensor import Tensor

from namedmesh.moe.config import NONFINITE_POLICIES  # noqa: F401  ("mask", "mtf")


def nonfinite_token_flags(inputs: Tensor) -> Tensor:
    """bool ``[..., group_size]``: True where the token's ``d_model`` vector holds a NaN or
    an infinity.  (``x * 0`` is 0 for a finite ``x`` and NaN otherwise, so the sum over
    ``d_model`` is non-zero exactly for those tokens; a split ``d_model`` costs one
    all-reduce.)"""
    probe = reduce_sum(inputs * 0.0, reduced_dim=inputs.shape.dims[-1])
    return not_equal(probe, 0.0)


def mask_nonfinite_tokens(inputs: Tensor, importance: Optional[Tensor]
                          ) -> Tuple[Tensor, Tensor, Tensor]:
    """``(inputs, importance, masked)`` for the router and the dispatch.

    inputs: ``[..., group_size, d_model]``; importance: None or ``[..., group_size]`` in
    the inputs' dtype (mtf's nonpadding: 1.0 real, 0.0 padding).  Returns the inputs with
    the non-finite tokens set to zero, the importance with those tokens at 0.0 (1.0 for
    the others when none was given), and float32 ``masked`` (1.0 for each such token), for
    the routing statistics.
    """
    if inputs.layout.mesh_axis_of(inputs.shape.dims[-1].name) is None:
        clean, good, masked = _mask_locally(inputs)
    else:   # d_model is split: the flags need a sum over the mesh
        bad = nonfinite_token_flags(inputs)
        clean = where(bad, 0.0, inputs)
        good = cast(logical_not(bad), inputs.dtype)
        masked = cast(bad, "float32")
    importance = good if importance is None else importance * good
    return clean, importance, masked


def _mask_locally(inputs: Tensor):
    """``mask_nonfinite_tokens`` in one slicewise function, when every processor holds whole
    ``d_model`` vectors (the usual layout): no communication, few TensorFlow ops."""
    def local(v):
        bad = tf.logical_not(tf.reduce_all(tf.math.is_finite(v), axis=-1))
        clean = tf.where(bad[..., tf.newaxis], tf.zeros_like(v), v)
        return clean, tf.cast(tf.logical_not(bad), v.dtype), tf.cast(bad, tf.float32)

    mesh = inputs.mesh
    outs = mesh.impl.slicewise(local, inputs.slices)
    tokens = Shape(inputs.shape.dims[:-1])
    return (Tensor(mesh, inputs.shape, tuple(o[0] for o in outs), inputs.dtype),
            Tensor(mesh, tokens, tuple(o[1] for o in outs), inputs.dtype),
            Tensor(mesh, tokens, tuple(o[2] for o in outs), tf.float32))


__all__ = ["NONFINITE_POLICIES", "mask_nonfinite_tokens", "nonfinite_token_flags"]
