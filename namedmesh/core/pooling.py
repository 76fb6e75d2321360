"""1-D pooling along a named dim (mtf's ``pool_tensor_1d``, ``stride_tensor_1d``,
``reduce_first``): a reshape into ``[pooled, _low]`` and a reduction over ``_low``."""

import tensorflow as tf

from namedmesh.core.contraction import reduce_mean, reduce_sum
from namedmesh.core.creation import mtf_range
from namedmesh.core.dims import Dimension
from namedmesh.core.elementwise import cast, check_tensor, equal
from namedmesh.core.naming import scope_name
from namedmesh.core.reshape import replace_dimensions
from namedmesh.core.slicing import axis_of
from namedmesh.errors import ShapeError


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
