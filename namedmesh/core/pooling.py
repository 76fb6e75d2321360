"""Pooling: 1-D along a named dim (mtf's ``pool_tensor_1d``, ``stride_tensor_1d``,
``reduce_first``: a reshape into ``[pooled, _low]`` and a reduction over ``_low``), and
2-D / 3-D max or average pooling over spatial dims with mtf's gradient (``pool``,
``pool_backprop``).  Pooling windows never overlap and tile the dims, so a split
spatial dim (whose pooled size its mesh dim divides) pools locally, as in mtf."""

import tensorflow as tf

from namedmesh.core.contraction import reduce_mean, reduce_sum
from namedmesh.core.creation import mtf_range
from namedmesh.core.dims import Dimension, Shape
from namedmesh.core.elementwise import cast, check_tensor, equal
from namedmesh.core.naming import scope_name
from namedmesh.core.reshape import replace_dimensions
from namedmesh.core.slicing import axis_of
from namedmesh.errors import ShapeError, WrongTypeError


def reduce_first(tensor, reduced_dim, name=None):
    """The first element along ``reduced_dim``; dims ``tensor.shape - reduced_dim``."""
    check_tensor(tensor, "reduce_first")
    dim = tensor.shape.dims[axis_of(tensor, reduced_dim, "reduce_first")]
    first = cast(equal(mtf_range(tensor.mesh, dim, dtype=tf.int32), 0), tensor.dtype)
    return reduce_sum(tensor * first, reduced_dim=dim, name=name or "reduce_first")


def pool_tensor_1d(tensor, pool_dim, reduce_fn=reduce_mean, pool_size: int = 2, name=None):
    """Pool groups of ``pool_size`` consecutive positions of ``pool_dim`` with ``reduce_fn``
    (called as ``reduce_fn(t, reduced_dim=...)``); ``pool_dim``'s size shrinks by
    ``pool_size``, its name and position stay."""
    check_tensor(tensor, "pool_tensor_1d")
    if not callable(reduce_fn):
        raise WrongTypeError("pool_tensor_1d: reduce_fn must be a function such as "
                             "namedmesh.reduce_max, got %r" % (reduce_fn,))
    dim = tensor.shape.dims[axis_of(tensor, pool_dim, "pool_tensor_1d")]
    if isinstance(pool_size, bool) or int(pool_size) != pool_size or pool_size < 1 or \
            dim.size % pool_size:
        raise ShapeError("pool_tensor_1d: pool_size %r must be a positive integer dividing %s"
                         % (pool_size, dim))
    high = Dimension(dim.name, dim.size // pool_size)
    low = Dimension("_low", pool_size)
    with tf.name_scope(scope_name(name or "pool_tensor_1d")):
        return reduce_fn(replace_dimensions(tensor, dim, [high, low]), reduced_dim=low)


def stride_tensor_1d(tensor, pool_dim, pool_size: int = 2, name=None):
    """Every ``pool_size``-th position of ``pool_dim`` (from the first)."""
    return pool_tensor_1d(tensor, pool_dim, reduce_fn=reduce_first, pool_size=pool_size,
                          name=name or "stride_tensor_1d")


# -- 2-D / 3-D pooling (mtf's PoolOperation and pool_backprop) -----------------------------
_SPATIAL = {"MAX_2D": 2, "AVG_2D": 2, "MAX_3D": 3, "AVG_3D": 3}


def _pool_args(x, ksize, strides, pool_fn_string, op):
    check_tensor(x, op)
    if pool_fn_string not in _SPATIAL:
        raise ShapeError("%s: unknown pooling %r (expected one of %s)"
                         % (op, pool_fn_string, sorted(_SPATIAL)))
    spatial = _SPATIAL[pool_fn_string]
    ksize, strides = list(ksize), list(strides)
    if ksize != strides or len(ksize) != spatial:
        raise ShapeError("%s: mtf pools without overlap: ksize and strides must be equal lists "
                         "of %d sizes, got %r and %r" % (op, spatial, ksize, strides))
    if x.shape.ndims < spatial + 1:
        raise ShapeError("%s: %s needs dims [batch..., %d spatial, channels], got %s"
                         % (op, pool_fn_string, spatial, x.shape))
    for d, k in zip(x.shape.dims[-(spatial + 1):-1], ksize):
        if d.size % k:
            raise ShapeError("%s: spatial dim %s is not divisible by the pool size %d"
                             % (op, d, k))
    return spatial, ksize


def _upscale(v, spatial, ksize):
    for i, k in enumerate(ksize):
        v = tf.repeat(v, k, axis=v.shape.rank - 1 - spatial + i)
    return v


def _local_backprop(pool_fn_string, spatial, ksize):
    def backprop(v, y, dy):
        if pool_fn_string.startswith("MAX"):  # every position equal to the max gets dy
            return tf.cast(tf.equal(v, _upscale(y, spatial, ksize)), v.dtype) * _upscale(
                dy, spatial, ksize)
        count = 1
        for k in ksize:
            count *= k
        return _upscale(dy, spatial, ksize) / tf.cast(count, dy.dtype)
    return backprop


def pool(x, ksize, strides, pool_fn_string, name=None):
    """Non-overlapping max or average pooling over the spatial dims of ``x``
    (``[batch..., h, w, channels]`` or ``[batch..., d, h, w, channels]``): mtf's
    ``PoolOperation`` (``ksize == strides``, sizes divisible by them).  The spatial dims
    keep their names, with sizes divided by ``ksize``.  The gradient is mtf's
    ``pool_backprop`` (for MAX, every position equal to the max receives it)."""
    from namedmesh.core.function_tables import pool_fn
    from namedmesh.core.tensor import Tensor
    spatial, ksize = _pool_args(x, ksize, strides, pool_fn_string, "pool")
    dims = x.shape.dims
    pooled = [Dimension(d.name, d.size // k) for d, k in zip(dims[-(spatial + 1):-1], ksize)]
    out_shape = Shape(dims[:-(spatial + 1)] + pooled + dims[-1:])
    forward = pool_fn(pool_fn_string)
    backprop = _local_backprop(pool_fn_string, spatial, ksize)

    @tf.custom_gradient
    def local(v):
        y = forward(v, ksize, ksize, "VALID")
        return y, lambda dy: backprop(v, y, dy)

    with tf.name_scope(scope_name(name or "pool")):
        return Tensor(x.mesh, out_shape, x.mesh.impl.slicewise(local, x.slices), x.dtype)


def pool_backprop(x, y, dy, ksize, strides, pool_fn_string, name=None):
    """The gradient of ``pool(x, ...)`` (output ``y``) for the output gradient ``dy``:
    ``dy`` spread over each window (MAX: to every position equal to the window's max;
    AVG: divided by the window size).  Dims: x's dims."""
    from namedmesh.core.tensor import Tensor
    spatial, ksize = _pool_args(x, ksize, strides, pool_fn_string, "pool_backprop")
    for t in (y, dy):
        check_tensor(t, "pool_backprop")
    backprop = _local_backprop(pool_fn_string, spatial, ksize)
    with tf.name_scope(scope_name(name or "pool_backprop")):
        out = x.mesh.impl.slicewise(backprop, x.slices, y.slices, dy.slices)
        return Tensor(x.mesh, x.shape, out, dy.dtype)
