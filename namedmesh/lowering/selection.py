"""Lowering of top-1, top-k and cumsum, whose split versions need the processor coordinate."""

import tensorflow as tf

from namedmesh.core.tensor import Tensor


def _move_last(v, axis):
    rank = v.shape.rank
    if axis == rank - 1:
        return v
    perm = [i for i in range(rank) if i != axis] + [axis]
    return tf.transpose(v, perm)


def _local_top_1(v, axis):
    """Max over ``axis`` with its first position; the value's gradient goes to that position
    (a select against the one-hot position: TensorFlow's own gradient of the batched
    gather builds some eighty ops per call)."""
    vt = _move_last(v, axis)
    idx = tf.argmax(vt, -1, output_type=tf.int32)

    @tf.custom_gradient
    def picked(vt):
        def grad(dy):
            at = tf.one_hot(idx, vt.shape[-1], on_value=True, off_value=False, dtype=tf.bool)
            return tf.where(at, tf.expand_dims(dy, -1), tf.zeros_like(vt))
        taken = tf.gather(vt, tf.expand_dims(idx, -1), batch_dims=vt.shape.rank - 1)
        return tf.squeeze(taken, -1), grad

    return picked(vt), idx


def lower_top_1(x: Tensor, dim):
    mesh = x.mesh
    impl = mesh.impl
    axis = x.shape.index(dim.name)
    mesh_axis = x.layout.mesh_axes[axis]
    out_shape = x.shape - dim.name
    if mesh_axis is None:
        pairs = impl.slicewise(lambda v: _local_top_1(v, axis), x.slices)
        vals = tuple(p[0] for p in pairs)
        idx = tuple(p[1] for p in pairs)
        return Tensor(mesh, out_shape, vals, x.dtype), Tensor(mesh, out_shape, idx, tf.int32)
    # split: mtf's lowering, top_k with k = 1 (two all-gathers), then drop the k dim
    from namedmesh.core.dims import Dimension
    values, indices = lower_top_k(x, dim, Dimension("_one", 1))
    squeeze = impl.slicewise(lambda v: tf.squeeze(v, -1), values.slices)
    squeeze_idx = impl.slicewise(lambda v: tf.squeeze(v, -1), indices.slices)
    return Tensor(mesh, out_shape, squeeze, x.dtype), Tensor(mesh, out_shape, squeeze_idx, tf.int32)


def lower_cumsum(x: Tensor, dim, exclusive: bool, reverse: bool = False) -> Tensor:
    mesh = x.mesh
    impl = mesh.impl
    axis = x.shape.index(dim.name)
    mesh_axis = x.layout.mesh_axes[axis]
    local = impl.slicewise(lambda v: tf.cumsum(v, axis, exclusive=exclusive, reverse=reverse),
                           x.slices)
    if mesh_axis is None:
        return Tensor(mesh, x.shape, local, x.dtype)
    # split: add the sum of all earlier (reverse: later) processors' pieces
    # (one all-gather of the totals)
    totals = impl.slicewise(lambda v: tf.reduce_sum(v, axis, keepdims=True), x.slices)
    every = impl.allconcat(totals, mesh_axis, axis, shape=x.shape)

    def add_prefix(piece, all_totals, coord):
        before = tf.cumsum(all_totals, axis, exclusive=True, reverse=reverse)
        return piece + tf.gather(before, tf.reshape(tf.cast(coord, tf.int32), [1]), axis=axis)

    return Tensor(mesh, x.shape, impl.slicewise(add_prefix, local, every, impl.pcoord(mesh_axis)),
                  x.dtype)


def lower_top_k(x: Tensor, dim, k_dim) -> tuple:
    """mtf's ``TopKOperation.lower``: local ``top_k`` with the reduced dim last; a split
    reduced dim adds the processor offset to the indices, all-gathers values and indices
    (two all-gathers) and takes the top ``k`` of the gathered candidates."""
    from namedmesh.core.dims import Shape
    mesh = x.mesh
    impl = mesh.impl
    axis = x.shape.index(dim.name)
    mesh_axis = x.layout.mesh_axes[axis]
    out_shape = Shape((x.shape - dim.name).dims + [k_dim])
    local_size = x.layout.slice_sizes[axis]
    k = k_dim.size
    local_k = min(k, local_size)

    def local(v, coord):
        values, indices = tf.math.top_k(_move_last(v, axis), local_k)
        if mesh_axis is not None:
            indices = indices + tf.cast(coord * local_size, tf.int32)
        return values, indices

    coords = impl.pcoord(mesh_axis) if mesh_axis is not None else impl.pcoord_or_none()
    pairs = impl.slicewise(local, x.slices, coords)
    values = tuple(p[0] for p in pairs)
    indices = tuple(p[1] for p in pairs)
    last = x.shape.ndims - 1
    if mesh_axis is not None:
        candidates = Shape((x.shape - dim.name).dims + [dim])
        values = impl.allconcat(values, mesh_axis, last, shape=candidates)
        indices = impl.allconcat(indices, mesh_axis, last, shape=candidates)

        def best(vals, idx):
            vals, position = tf.math.top_k(vals, k)
            return vals, tf.gather(idx, position, batch_dims=last)

        pairs = impl.slicewise(best, values, indices)
        values = tuple(p[0] for p in pairs)
        indices = tuple(p[1] for p in pairs)
    k_axis = mesh.tensor_layout(out_shape).mesh_axes[-1]
    if k_axis is not None:
        values = impl.allsplit(values, k_axis, last)
        indices = impl.allsplit(indices, k_axis, last)
    return Tensor(mesh, out_shape, values, x.dtype), Tensor(mesh, out_shape, indices, tf.int32)
