"""Lowering of ops that work *along* one dim (slice, pad, concat, split, stack, unstack).

Along an unsplit dim these are local.  Along a split dim mtf 0.1.21 raises
("can't slice along split axis"); namedmesh gathers the dim (one all-gather
within the groups of its mesh dim), works locally, and keeps each processor's
piece of the result (no communication), so any layout runs.
"""

import tensorflow as tf

from namedmesh.core.dims import Shape
from namedmesh.core.tensor import Tensor


def gathered(x: Tensor, axis: int):
    """Slices of ``x`` whose tensor axis ``axis`` is whole (one all-gather if it is split)."""
    mesh_axis = x.layout.mesh_axes[axis]
    if mesh_axis is None:
        return x.slices
    return x.mesh.impl.allconcat(x.slices, mesh_axis, axis, shape=x.shape)


def kept_piece(mesh, slices, shape: Shape, axis: int):
    """From slices whose axis ``axis`` is whole, each processor's piece under ``shape``'s layout."""
    mesh_axis = mesh.tensor_layout(shape).mesh_axes[axis]
    if mesh_axis is None:
        return slices
    return mesh.impl.allsplit(slices, mesh_axis, axis)


def _along(begin_or_pads, axis, rank):
    return [begin_or_pads if i == axis else None for i in range(rank)]


def lower_slice(x: Tensor, axis: int, begin: int, out_shape: Shape) -> Tensor:
    size = out_shape.dims[axis].size
    rank = x.shape.ndims

    def local(v):
        index = [slice(None)] * rank
        index[axis] = slice(begin, begin + size)
        return v[tuple(index)]

    whole = x.mesh.impl.slicewise(local, gathered(x, axis))
    return Tensor(x.mesh, out_shape, kept_piece(x.mesh, whole, out_shape, axis), x.dtype)


def lower_pad(x: Tensor, axis: int, paddings, out_shape: Shape) -> Tensor:
    pads = [[0, 0]] * x.shape.ndims
    pads[axis] = list(paddings)
    whole = x.mesh.impl.slicewise(lambda v: tf.pad(v, pads), gathered(x, axis))
    return Tensor(x.mesh, out_shape, kept_piece(x.mesh, whole, out_shape, axis), x.dtype)


def lower_concat(xs, axis: int, out_shape: Shape) -> Tensor:
    """Unsplit: local concat.  Split over a mesh dim of n members: concatenate the
    local pieces, all-gather once, and reorder ``[p0 pieces, p1 pieces, ...]`` into
    ``[x0 whole, x1 whole, ...]`` before keeping the output piece."""
    mesh = xs[0].mesh
    impl = mesh.impl
    mesh_axis = xs[0].layout.mesh_axes[axis]
    local = impl.slicewise(lambda *vs: tf.concat(vs, axis), *[x.slices for x in xs])
    if mesh_axis is None:
        return Tensor(mesh, out_shape, local, xs[0].dtype)
    n = mesh.shape.dims[mesh_axis].size
    pieces = [x.layout.slice_sizes[axis] for x in xs]
    every = impl.allconcat(local, mesh_axis, axis, shape=out_shape)

    def reorder(v):
        sizes = v.shape.as_list()
        grouped = tf.reshape(v, sizes[:axis] + [n, sum(pieces)] + sizes[axis + 1:])
        parts = tf.split(grouped, pieces, axis=axis + 1)
        return tf.concat([tf.reshape(p, sizes[:axis] + [n * b] + sizes[axis + 1:])
                          for p, b in zip(parts, pieces)], axis)

    whole = impl.slicewise(reorder, every)
    return Tensor(mesh, out_shape, kept_piece(mesh, whole, out_shape, axis), xs[0].dtype)


def lower_split(x: Tensor, axis: int, sizes, out_shapes):
    impl = x.mesh.impl
    parts = impl.slicewise(lambda v: tuple(tf.split(v, sizes, axis=axis)), gathered(x, axis))
    outs = []
    for i, shape in enumerate(out_shapes):
        piece = tuple(p[i] for p in parts)
        outs.append(Tensor(x.mesh, shape, kept_piece(x.mesh, piece, shape, axis), x.dtype))
    return outs


def lower_stack(xs, axis: int, out_shape: Shape) -> Tensor:
    mesh = xs[0].mesh
    whole = mesh.impl.slicewise(lambda *vs: tf.stack(vs, axis), *[x.slices for x in xs])
    return Tensor(mesh, out_shape, kept_piece(mesh, whole, out_shape, axis), xs[0].dtype)


def lower_unstack(x: Tensor, axis: int, out_shape: Shape):
    n = x.shape.dims[axis].size
    impl = x.mesh.impl
    parts = impl.slicewise(lambda v: tuple(tf.unstack(v, num=n, axis=axis)), gathered(x, axis))
    return [Tensor(x.mesh, out_shape, tuple(p[i] for p in parts), x.dtype) for i in range(n)]
