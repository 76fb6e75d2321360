"""Ops of neural-network code: softmax, top-1, one-hot, cumulative sum.

Each states its output dims by name and matches mtf 0.1.21's semantics.
"""

import tensorflow as tf

from namedmesh.core.checks import as_dtype, check_float_tensor, check_number_tensor
from namedmesh.core.contraction import reduce_max, reduce_sum
from namedmesh.core.dims import Shape, convert_to_dimension
from namedmesh.core.elementwise import check_tensor, exp, log, maximum, stop_gradient
from namedmesh.core.naming import named_op
from namedmesh.core.tensor import Tensor
from namedmesh.errors import ShapeError, WrongTypeError


def _require_dim(x: Tensor, dim, op: str):
    dim = convert_to_dimension(dim) if not isinstance(dim, str) else dim
    name = dim if isinstance(dim, str) else dim.name
    if name not in x.shape:
        raise ShapeError("%s: dim %r is not a dim of the tensor %s" % (op, name, x.shape))
    if not isinstance(dim, str) and x.shape[name].size != dim.size:
        raise ShapeError("%s: dim %s has size %d in the tensor %s"
                         % (op, dim, x.shape[name].size, x.shape))
    return x.shape[name]


@named_op("reduce_logsumexp")
def reduce_logsumexp(x: Tensor, reduced_dim, extra_logit=None, name=None) -> Tensor:
    """``log(reduce_sum(exp(x)))`` over ``reduced_dim``, computed stably (mtf's form).

    ``extra_logit``: an optional scalar or Tensor broadcastable to x's dims
    without ``reduced_dim``, counted as one more logit (``exp(extra_logit)`` is
    added to the sum).  Output dims: x's dims without ``reduced_dim``.
    """
    check_tensor(x, "reduce_logsumexp")
    check_float_tensor(x, "reduce_logsumexp")
    dim = _require_dim(x, reduced_dim, "reduce_logsumexp")
    max_logit = reduce_max(stop_gradient(x), reduced_dim=dim)
    if extra_logit is not None:
        if isinstance(extra_logit, Tensor):
            extra_logit = stop_gradient(extra_logit)
        max_logit = maximum(max_logit, extra_logit)
    sum_exp = reduce_sum(exp(x - max_logit), reduced_dim=dim)
    if extra_logit is not None:
        sum_exp = sum_exp + exp(extra_logit - max_logit)
    return log(sum_exp) + max_logit


@named_op("log_softmax")
def log_softmax(x: Tensor, reduced_dim, extra_logit=None, name=None) -> Tensor:
    """``x - reduce_logsumexp(x, reduced_dim, extra_logit)``; output dims = x's dims."""
    check_float_tensor(check_tensor(x, "log_softmax"), "log_softmax")
    return x - reduce_logsumexp(x, reduced_dim, extra_logit=extra_logit)


@named_op("softmax")
def softmax(x: Tensor, reduced_dim, extra_logit=None, name=None) -> Tensor:
    """Softmax over ``reduced_dim`` (mtf: ``exp(log_softmax(x))``); output dims = x's dims."""
    check_float_tensor(check_tensor(x, "softmax"), "softmax")
    return exp(log_softmax(x, reduced_dim, extra_logit=extra_logit))


@named_op("top_1")
def top_1(x: Tensor, reduced_dim, name=None):
    """``(values, indices)``: the max over ``reduced_dim`` and its int32 position.

    Output dims: x's dims without ``reduced_dim``.  Ties go to the first
    position, and the gradient of ``values`` flows to that position only
    (mtf 0.1.21's ``top_1``, which returns values first).  A split
    ``reduced_dim`` costs two all-gathers of the per-processor candidates, as
    in mtf (``top_k`` with k = 1).
    """
    check_tensor(x, "top_1")
    dim = _require_dim(x, reduced_dim, "top_1")
    from namedmesh.lowering.selection import lower_top_1
    return lower_top_1(x, dim)


@named_op("argmax")
def argmax(x: Tensor, reduced_dim, name=None) -> Tensor:
    """int32 position of the max over ``reduced_dim`` (first on ties)."""
    return top_1(x, reduced_dim)[1]


@named_op("one_hot")
def one_hot(indices: Tensor, output_dim, on_value=1.0, off_value=0.0, dtype=tf.float32,
            name=None) -> Tensor:
    """``[*indices.dims, output_dim]``: ``on_value`` at each index, else ``off_value``.

    Indices outside ``[0, output_dim.size)`` give an all-``off_value`` row.
    """
    check_tensor(indices, "one_hot")
    if not indices.dtype.is_integer:
        raise WrongTypeError("one_hot: indices must be an integer tensor, got %s %s"
                        % (indices.dtype.name, indices.shape))
    output_dim = convert_to_dimension(output_dim)
    dtype = as_dtype(dtype, "one_hot")
    if output_dim.name in indices.shape:
        raise ShapeError("one_hot: output dim %r is already a dim of the indices %s"
                         % (output_dim.name, indices.shape))
    out_shape = Shape(list(indices.shape.dims) + [output_dim])
    mesh = indices.mesh
    layout = mesh.tensor_layout(out_shape)
    depth = layout.slice_sizes[-1]
    axis = layout.mesh_axes[-1]
    dtype = tf.as_dtype(dtype)

    def fn(idx, coord):
        if axis is not None:
            idx = idx - tf.cast(coord * depth, idx.dtype)
        return tf.one_hot(idx, depth, on_value=tf.cast(on_value, dtype),
                          off_value=tf.cast(off_value, dtype), dtype=dtype)

    coords = mesh.impl.pcoord(axis) if axis is not None else mesh.impl.pcoord_or_none()
    return Tensor(mesh, out_shape, mesh.impl.slicewise(fn, indices.slices, coords), dtype)


@named_op("cumsum")
def cumsum(x: Tensor, dim, exclusive: bool = False, reverse: bool = False, name=None) -> Tensor:
    """Cumulative sum along ``dim``; output dims = x's dims.

    ``exclusive``: each position excludes itself.  ``reverse``: sum from the
    end (a namedmesh extension; mtf 0.1.21 has no ``reverse``).  A split ``dim``
    costs one all-gather of the per-processor totals.
    """
    check_number_tensor(check_tensor(x, "cumsum"), "cumsum")
    dim = _require_dim(x, dim, "cumsum")
    from namedmesh.lowering.selection import lower_cumsum
    return lower_cumsum(x, dim, exclusive, reverse)
