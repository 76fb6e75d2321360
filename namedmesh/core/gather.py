"""``gather``: rows of a tensor picked by integer indices (what an embedding lookup is)."""

import numbers

import numpy as np
import tensorflow as tf

from namedmesh.core.contraction import einsum
from namedmesh.core.creation import constant
from namedmesh.core.dims import Shape, convert_to_shape
from namedmesh.core.elementwise import cast, check_tensor, same_mesh
from namedmesh.core.naming import named_op
from namedmesh.core.slicing import axis_of
from namedmesh.core.tensor import Tensor
from namedmesh.errors import ShapeError, WrongTypeError
from namedmesh.lowering.gather import lower_gather


@named_op("gather")
def gather(weights: Tensor, indices, dim, output_shape=None, name=None) -> Tensor:
    """``weights`` at positions ``indices`` along ``dim`` (mtf's gather).

    Means ``einsum([one_hot(indices, dim), weights], reduced_dims=[dim])``:
    output dims are the indices' dims followed by the weights' other dims
    (dims both have are matched, one row per position), or ``output_shape``
    (the same dims in any order, plus dims to broadcast to).  An index outside
    ``[0, dim.size)`` gives a zero row.  ``indices``: an integer Tensor or a
    Python int.  With ``dim`` split on the mesh: one all-reduce over its mesh dim.
    """
    check_tensor(weights, "gather")
    dim = weights.shape.dims[axis_of(weights, dim, "gather")]
    if not isinstance(indices, Tensor):
        if isinstance(indices, bool) or not isinstance(indices, (numbers.Integral, np.integer)):
            raise WrongTypeError("gather: indices must be an integer Tensor or a Python int, got "
                                 "%r" % (indices,))
        indices = constant(weights.mesh, int(indices), dtype=tf.int32)
    if not indices.dtype.is_integer:
        raise WrongTypeError("gather: indices must be an integer tensor, got %s %s"
                             % (indices.dtype.name, indices.shape))
    same_mesh([weights, indices], "gather")
    if dim.name in indices.shape:
        raise ShapeError("gather: dim %s of the weights %s is also a dim of the indices %s"
                         % (dim, weights.shape, indices.shape))
    for d in indices.shape.dims:
        if d.name in weights.shape and weights.shape[d.name].size != d.size:
            raise ShapeError("gather: dim %r has size %d in the indices %s but %d in the weights %s"
                             % (d.name, d.size, indices.shape, weights.shape[d.name].size,
                                weights.shape))
    if weights.dtype == tf.bool:
        return cast(gather(cast(weights, tf.float32), indices, dim, output_shape), tf.bool)
    default = Shape(indices.shape.dims + [d for d in weights.shape.dims
                                          if d.name != dim.name and d.name not in indices.shape])
    if output_shape is not None:
        output_shape = convert_to_shape(output_shape)
        missing = [d.name for d in default.dims if d not in output_shape]
        if dim.name in output_shape or missing:
            raise ShapeError("gather: output_shape %s must hold the dims %s (any order, new dims "
                             "broadcast) and not the gathered dim %r"
                             % (output_shape, default, dim.name))
    out = lower_gather(weights, indices, dim, default)
    if output_shape is None or output_shape == default:
        return out
    return einsum([out], output_shape=output_shape)
