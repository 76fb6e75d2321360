"""Tensors made from nothing: zeros, ones, constants (scalars or arrays) and ranges.

Random tensors are in ``namedmesh.core.random_ops``.
"""

import numpy as np
import tensorflow as tf

from namedmesh.core.checks import as_dtype, check_exact_cast, check_mesh
from namedmesh.core.dims import Shape, convert_to_dimension, convert_to_shape
from namedmesh.core.elementwise import check_tensor
from namedmesh.core.naming import named_op
from namedmesh.core.tensor import Tensor
from namedmesh.errors import ShapeError, WrongTypeError


def _filled(mesh, shape, dtype, fn, op="zeros"):
    check_mesh(mesh, op)
    shape = convert_to_shape(shape)
    if shape is None:
        raise ShapeError("%s: a shape is required, got None" % op)
    sizes = list(mesh.tensor_layout(shape).slice_sizes)
    dtype = as_dtype(dtype, op)
    slices = mesh.impl.slicewise(lambda _: fn(sizes, dtype), mesh.impl.pcoord_or_none())
    return Tensor(mesh, shape, slices, dtype)


@named_op("zeros")
def zeros(mesh, shape, dtype=tf.float32, name=None) -> Tensor:
    """All zeros with dims ``shape``."""
    return _filled(mesh, shape, dtype, tf.zeros)


@named_op("ones")
def ones(mesh, shape, dtype=tf.float32, name=None) -> Tensor:
    """All ones with dims ``shape``."""
    return _filled(mesh, shape, dtype, tf.ones, "ones")


@named_op("constant")
def constant(mesh, value, shape=None, dtype=tf.float32, name=None) -> Tensor:
    """A tensor of dims ``shape`` (default: a scalar) holding ``value``.

    ``value``: a scalar fills the tensor; an array (NumPy, list, tf.Tensor)
    with the same number of elements is laid out in row-major order over the
    dims of ``shape``, as ``tf.constant(value, shape=...)`` does.  On a mesh each
    processor keeps its slice (mtf 0.1.21 builds every slice from the whole
    array, which fails for arrays on a split layout).
    """
    check_mesh(mesh, "constant")
    shape = convert_to_shape(shape) if shape is not None else Shape([])
    dtype = as_dtype(dtype, "constant")
    check_exact_cast(value, dtype, "constant")
    if isinstance(value, (tf.Tensor, tf.Variable)):
        array = value
        count = value.shape.num_elements()
        rank = value.shape.rank
    else:
        array = np.asarray(value)
        count, rank = array.size, array.ndim
    if rank == 0:
        return _filled(mesh, shape, dtype, lambda sizes, dt: tf.fill(sizes, tf.cast(value, dt)),
                       "constant")
    if count != shape.size:
        raise ShapeError("constant: value of shape %s has %s elements but the shape %s has %d; "
                         "give a scalar or an array with exactly that many elements"
                         % (list(np.shape(array)) if not isinstance(array, (tf.Tensor, tf.Variable))
                            else array.shape.as_list(), count, shape, shape.size))
    full = tf.reshape(tf.cast(array, dtype), shape.sizes)
    return Tensor(mesh, shape, mesh.impl.import_tf_tensor(full, mesh.tensor_layout(shape)), dtype)


@named_op("zeros_like")
def zeros_like(t: Tensor, name=None) -> Tensor:
    check_tensor(t, "zeros_like")
    return zeros(t.mesh, t.shape, t.dtype)


@named_op("ones_like")
def ones_like(t: Tensor, name=None) -> Tensor:
    check_tensor(t, "ones_like")
    return ones(t.mesh, t.shape, t.dtype)


@named_op("range")
def mtf_range(mesh, dim, dtype=tf.int32, name=None) -> Tensor:
    """A 1-D tensor of dims ``[dim]`` holding ``0 .. dim.size - 1`` (mtf's ``range``)."""
    check_mesh(mesh, "range")
    dim = convert_to_dimension(dim)
    dtype = as_dtype(dtype, "range")
    if dtype == tf.string or dtype == tf.bool:
        raise WrongTypeError("range: dtype must be numeric, got %s" % dtype.name)
    layout = mesh.tensor_layout(convert_to_shape([dim]))
    local = layout.slice_sizes[0]
    axis = layout.mesh_axes[0]

    def fn(coord):
        offset = 0 if axis is None else coord * local
        values = tf.range(local, dtype=tf.int32) + tf.cast(offset, tf.int32)
        return tf.cast(values, dtype)

    coords = mesh.impl.pcoord(axis) if axis is not None else mesh.impl.pcoord_or_none()
    return Tensor(mesh, layout.shape, mesh.impl.slicewise(fn, coords), dtype)


from namedmesh.core.random_ops import random_uniform  # noqa: E402,F401  (moved; old import path)
