"""Lowering of top-1 and cumsum, whose split versions need the processor coordinate."""

import tensorflow as tf

from namedmesh.core.tensor import Tensor


def _move_last(v, axis):
    rank = v.shape.rank
    if axis == rank - 1:
        return v
    perm = [i for i in range(rank) if i != axis] + [axis]
    return tf.transpose(v, perm)


def _local_top_1(v, axis):
    """Max over ``axis`` with its first position; the value's gradient goes to that position."""
    vt = _move_last(v, axis)
    idx = tf.argmax(vt, -1, output_type=tf.int32)
    vals = tf.gather(vt, idx[..., None], batch_dims=vt.shape.rank - 1)[..., 0]
    return vals, idx


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
    # split: find the global max and the first position holding it, then read the
    # value through a one-hot mask so that its gradient reaches that position.
    from namedmesh.core.contraction import reduce_sum
    from namedmesh.core.creation import mtf_range
    from namedmesh.core.elementwise import equal, where
    local_size = x.layout.slice_sizes[axis]

    def local(v, coord):
        vals, idx = _local_top_1(tf.stop_gradient(v), axis)
        return vals, idx + tf.cast(coord * local_size, tf.int32)

    pairs = impl.slicewise(local, x.slices, impl.pcoord(mesh_axis))
    vals = tuple(p[0] for p in pairs)
    idx = tuple(p[1] for p in pairs)
    best = impl.allreduce(vals, [mesh_axis], "MAX", shape=out_shape)
    never = tf.int32.max
    candidates = impl.slicewise(lambda v, b, i: tf.where(tf.equal(v, b), i, never), vals, best, idx)
    indices = Tensor(mesh, out_shape, impl.allreduce(candidates, [mesh_axis], "MIN",
                                                     shape=out_shape), tf.int32)
    mask = equal(indices, mtf_range(mesh, dim, tf.int32))
    values = reduce_sum(where(mask, x, 0), reduced_dim=dim)
    return values, indices


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
