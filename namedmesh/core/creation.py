"""Tensors made from nothing: zeros, ones, constants, ranges and seeded random values."""

import tensorflow as tf

from namedmesh.core.dims import convert_to_dimension, convert_to_shape
from namedmesh.core.elementwise import check_tensor
from namedmesh.core.tensor import Tensor
from namedmesh.errors import ShapeError


def _filled(mesh, shape, dtype, fn):
    shape = convert_to_shape(shape)
    if shape is None:
        raise ShapeError("a shape is required, got None")
    sizes = list(mesh.tensor_layout(shape).slice_sizes)
    dtype = tf.as_dtype(dtype)
    slices = mesh.impl.slicewise(lambda _: fn(sizes, dtype), mesh.impl.pcoord_or_none())
    return Tensor(mesh, shape, slices, dtype)


def zeros(mesh, shape, dtype=tf.float32) -> Tensor:
    """All zeros with dims ``shape``."""
    return _filled(mesh, shape, dtype, tf.zeros)


def ones(mesh, shape, dtype=tf.float32) -> Tensor:
    """All ones with dims ``shape``."""
    return _filled(mesh, shape, dtype, tf.ones)


def constant(mesh, value, shape=(), dtype=tf.float32) -> Tensor:
    """A tensor of dims ``shape`` filled with the scalar ``value``."""
    return _filled(mesh, shape, dtype, lambda sizes, dt: tf.fill(sizes, tf.cast(value, dt)))


def zeros_like(x: Tensor) -> Tensor:
    check_tensor(x, "zeros_like")
    return zeros(x.mesh, x.shape, x.dtype)


def ones_like(x: Tensor) -> Tensor:
    check_tensor(x, "ones_like")
    return ones(x.mesh, x.shape, x.dtype)


def mtf_range(mesh, dim, dtype=tf.int32) -> Tensor:
    """A 1-D tensor of dims ``[dim]`` holding ``0 .. dim.size - 1`` (mtf's ``range``)."""
    dim = convert_to_dimension(dim)
    layout = mesh.tensor_layout(convert_to_shape([dim]))
    local = layout.slice_sizes[0]
    axis = layout.mesh_axes[0]
    dtype = tf.as_dtype(dtype)

    def fn(coord):
        offset = 0 if axis is None else coord * local
        values = tf.range(local, dtype=tf.int32) + tf.cast(offset, tf.int32)
        return tf.cast(values, dtype)

    coords = mesh.impl.pcoord(axis) if axis is not None else mesh.impl.pcoord_or_none()
    return Tensor(mesh, layout.shape, mesh.impl.slicewise(fn, coords), dtype)


def random_uniform(mesh, shape, seed, minval=0.0, maxval=1.0, dtype=tf.float32) -> Tensor:
    """Uniform random values in ``[minval, maxval)`` with dims ``shape``.

    ``seed``: an int, or a shape-[2] int tensor (e.g. ``[seed, step]``), as for
    ``tf.random.stateless_uniform``.  The values depend only on the seed and
    the global shape, never on the mesh or layout: every processor draws the
    global tensor and keeps its slice, so replicated slices agree and a mesh
    run equals a single-device run.
    """
    shape = convert_to_shape(shape)
    seed = tf.convert_to_tensor(seed)
    if seed.shape.rank == 0:
        seed = tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])
    dtype = tf.as_dtype(dtype)
    full = lambda _: tf.random.stateless_uniform(  # noqa: E731
        shape.sizes, seed=seed, minval=minval, maxval=maxval, dtype=dtype)
    layout = mesh.tensor_layout(shape)
    slices = mesh.impl.slicewise(full, mesh.impl.pcoord_or_none())
    for tensor_axis, mesh_axis in enumerate(layout.mesh_axes):
        if mesh_axis is not None:
            slices = mesh.impl.allsplit(slices, mesh_axis, tensor_axis)
    return Tensor(mesh, shape, slices, dtype)
