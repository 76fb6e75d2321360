"""Top-k along a named dim and what is built on it: sampling, n-th largest/smallest."""

import math

import tensorflow as tf

from namedmesh.core.dims import Dimension, convert_to_dimension
from namedmesh.core.elementwise import cast, check_tensor, log
from namedmesh.core.gather import gather
from namedmesh.core.naming import named_op
from namedmesh.core.nn import argmax
from namedmesh.core.random_ops import random_uniform
from namedmesh.core.slicing import axis_of
from namedmesh.core.tensor import Tensor
from namedmesh.errors import ConfigError, ShapeError


@named_op("top_k")
def top_k(x: Tensor, reduced_dim, k_dim, name=None):
    """``(values, indices)``: the ``k_dim.size`` largest values of ``x`` along
    ``reduced_dim``, largest first (ties: lower index first), and their int32
    positions.  Both have dims ``x.shape - reduced_dim + [k_dim]`` (k last).  The
    gradient of ``values`` flows to those positions.  A split ``reduced_dim``
    costs two all-gathers of the per-processor candidates (mtf's lowering)."""
    check_tensor(x, "top_k")
    dim = x.shape.dims[axis_of(x, reduced_dim, "top_k")]
    k_dim = convert_to_dimension(k_dim)
    if k_dim.size > dim.size:
        raise ShapeError("top_k: k_dim %s is larger than the reduced dim %s" % (k_dim, dim))
    if k_dim.name in x.shape and k_dim.name != dim.name:
        raise ShapeError("top_k: k_dim %r is already a dim of %s" % (k_dim.name, x.shape))
    from namedmesh.lowering.selection import lower_top_k
    return lower_top_k(x, dim, k_dim)


@named_op("sample_with_temperature")
def sample_with_temperature(logits: Tensor, dim, temperature=1.0, name=None, seed=None) -> Tensor:
    """An int32 index along ``dim`` per row, sampled with probability proportional to
    ``exp(logits / temperature)`` (the Gumbel trick, as mtf draws it in float32);
    ``temperature=0``: the argmax.  Output dims: ``logits.shape - dim``.
    ``seed``: as for ``random_uniform``."""
    check_tensor(logits, "sample_with_temperature")
    dim = logits.shape.dims[axis_of(logits, dim, "sample_with_temperature")]
    if isinstance(temperature, (int, float)) and not (temperature >= 0.0 and
                                                      math.isfinite(temperature)):
        raise ConfigError("sample_with_temperature: temperature must be a finite number >= 0 "
                          "(0: the argmax), got %r" % (temperature,))
    if temperature != 0.0:
        logits = cast(logits, tf.float32)
        uniform = random_uniform(logits.mesh, logits.shape, seed, minval=1e-9, maxval=1.0,
                                 dtype=logits.dtype)
        logits = logits + (-log(-log(uniform))) * temperature
    return argmax(logits, dim)


@named_op("nth_largest_element")
def nth_largest_element(x: Tensor, n: int, reduced_dim, name=None) -> Tensor:
    """The ``n``-th largest value along ``reduced_dim`` (``n`` from 0); dims ``x.shape - dim``."""
    if isinstance(n, bool) or not isinstance(n, (int, float)) or int(n) != n or n < 0:
        raise ShapeError("nth_largest_element: n must be an integer >= 0, got %r" % (n,))
    check_tensor(x, "nth_largest_element")
    dim = x.shape.dims[axis_of(x, reduced_dim, "nth_largest_element")]
    if n >= dim.size:
        raise ShapeError("nth_largest_element: n=%r is outside dim %s (n counts from 0)"
                         % (n, dim))
    k_dim = Dimension("_top_k_", int(n) + 1)
    values, _ = top_k(x, reduced_dim, k_dim)
    return gather(values, int(n), k_dim)


@named_op("nth_smallest_element")
def nth_smallest_element(x: Tensor, n: int, reduced_dim, name=None) -> Tensor:
    """The ``n``-th smallest value along ``reduced_dim`` (``n`` from 0)."""
    return -nth_largest_element(-x, n, reduced_dim)
