"""Non-overlapping max and average pooling over the spatial dims (mtf's pool layers).

``x`` is ``[*batch, H, W, C]`` (2-D) or ``[*batch, D, H, W, C]`` (3-D): the dims
before the last are spatial, as in mtf.  The window equals the stride
(``ksize``), and each spatial size must be divisible by its window; the output
keeps the dims' names with sizes divided by the window.

Each processor pools its slices (mtf's ``PoolOperation``); a spatial dim may be
split on the mesh when every piece holds whole windows.  Gradients are mtf's:
an average spreads evenly over its window; a max goes to every element equal
to its window's maximum (ties are not split).
"""

import math

import tensorflow as tf

from namedmesh.core.dims import Dimension, Shape
from namedmesh.core.elementwise import check_tensor
from namedmesh.core.tensor import Tensor
from namedmesh.errors import ShapeError


def _upscale(t: tf.Tensor, ksize) -> tf.Tensor:
    """Each element of the spatial axes 1..n repeated ``ksize`` times (nearest upsampling)."""
    for axis, k in enumerate(ksize, start=1):
        t = tf.repeat(t, k, axis=axis)
    return t


def _local_pool(kind: str, ksize):
    """Pool a ``[N, *spatial, C]`` slice with mtf's gradient."""
    size = math.prod(ksize)

    @tf.custom_gradient
    def pool(x):
        if kind == "MAX":
            y = tf.nn.max_pool(x, ksize, ksize, "VALID")
        else:
            y = tf.nn.avg_pool(x, ksize, ksize, "VALID")

        def grad(dy):
            if kind == "MAX":
                return tf.cast(tf.equal(x, _upscale(y, ksize)), dy.dtype) * _upscale(dy, ksize)
            return _upscale(dy, ksize) / tf.cast(size, dy.dtype)

        return y, grad

    return pool


def _pool(x: Tensor, ksize, kind: str, op: str) -> Tensor:
    check_tensor(x, op)
    ksize = tuple(int(k) for k in ksize)
    n = 2 if "2d" in op else 3
    if len(ksize) != n:
        raise ShapeError("%s: ksize %s must have %d entries" % (op, ksize, n))
    if all(k == 1 for k in ksize):
        return x
    if x.shape.ndims < n + 1:
        raise ShapeError("%s: input %s needs %d spatial dims before the channel dim"
                         % (op, x.shape, n))
    dims = list(x.shape.dims)
    first = len(dims) - 1 - n
    spatial = dims[first:-1]
    for d, k in zip(spatial, ksize):
        if k < 1 or d.size % k:
            raise ShapeError("%s: spatial dim %s is not divisible by its window %d (ksize %s)"
                             % (op, d, k, ksize))
    out_shape = Shape(dims[:first] + [Dimension(d.name, d.size // k)
                                      for d, k in zip(spatial, ksize)] + dims[-1:])
    in_slices = x.layout.slice_sizes[first:-1]
    for d, piece, k in zip(spatial, in_slices, ksize):
        if piece % k:
            raise ShapeError("%s: spatial dim %s is split into pieces of %d, which do not hold "
                             "whole windows of %d" % (op, d, piece, k))
    mesh = x.mesh
    out_sizes = list(mesh.tensor_layout(out_shape).slice_sizes)
    pool = _local_pool(kind, ksize)

    def local(v):
        spatial_and_channel = v.shape.as_list()[first:]
        return tf.reshape(pool(tf.reshape(v, [-1] + spatial_and_channel)), out_sizes)

    return Tensor(mesh, out_shape, mesh.impl.slicewise(local, x.slices), x.dtype)


def max_pool2d(x: Tensor, ksize=(2, 2), name: str = "max_pool2d") -> Tensor:
    """Max over non-overlapping ``ksize`` windows of ``[*batch, H, W, C]``; H, W shrink by ksize."""
    return _pool(x, ksize, "MAX", "max_pool2d")


def avg_pool2d(x: Tensor, ksize=(2, 2), name: str = "avg_pool2d") -> Tensor:
    """Mean over non-overlapping ``ksize`` windows of ``[*batch, H, W, C]``."""
    return _pool(x, ksize, "AVG", "avg_pool2d")


def max_pool3d(x: Tensor, ksize=(2, 2, 2), name: str = "max_pool3d") -> Tensor:
    """Max over non-overlapping ``ksize`` windows of ``[*batch, D, H, W, C]``."""
    return _pool(x, ksize, "MAX", "max_pool3d")


def avg_pool3d(x: Tensor, ksize=(2, 2, 2), name: str = "avg_pool3d") -> Tensor:
    """Mean over non-overlapping ``ksize`` windows of ``[*batch, D, H, W, C]``."""
    return _pool(x, ksize, "AVG", "avg_pool3d")
