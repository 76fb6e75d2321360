"""Lowering of ``shift``: local along an unsplit dim, a neighbour exchange along a split one.

Along a dim split over a mesh dim of ``n`` members (block size ``b = size / n``),
shifting by ``offset = q * b + r`` is, as in mtf's ``ShiftOperation.lower``:
``r == 0``: one ``receive`` from the member ``q`` places back; otherwise two:
the first ``b - r`` positions of each block move ``q`` members on, the last
``r`` move ``q + 1`` members on, and each member concatenates what it received.
"""

import tensorflow as tf

from namedmesh.core.tensor import Tensor


def _take(v, axis, begin, size):
    index = [slice(None)] * v.shape.rank
    index[axis] = slice(begin, begin + size)
    return v[tuple(index)]


def _pads(v, axis, before, after):
    pads = [[0, 0]] * v.shape.rank
    pads[axis] = [before, after]
    return tf.pad(v, pads)


def _shift_local(v, axis, offset, wrap):
    size = v.shape[axis]
    if wrap:
        offset %= size
        if offset == 0:
            return v
        return tf.concat([_take(v, axis, size - offset, offset),
                          _take(v, axis, 0, size - offset)], axis)
    if offset > 0:
        return _pads(_take(v, axis, 0, size - offset), axis, offset, 0)
    return _pads(_take(v, axis, -offset, size + offset), axis, 0, -offset)


def lower_shift(x: Tensor, axis: int, offset: int, wrap: bool) -> Tensor:
    mesh = x.mesh
    impl = mesh.impl
    size = x.shape.dims[axis].size
    if offset == 0 or (wrap and offset % size == 0):
        return x
    if not wrap and abs(offset) >= size:
        return Tensor(mesh, x.shape, impl.slicewise(tf.zeros_like, x.slices), x.dtype)
    mesh_axis = x.layout.mesh_axes[axis]
    if mesh_axis is None:
        return Tensor(mesh, x.shape,
                      impl.slicewise(lambda v: _shift_local(v, axis, offset, wrap), x.slices),
                      x.dtype)
    block = x.layout.slice_sizes[axis]
    whole, rest = offset // block, offset % block
    if rest == 0:
        out = impl.shift_by_n_processors(x.slices, mesh_axis, whole, wrap, shape=x.shape)
        return Tensor(mesh, x.shape, out, x.dtype)
    head = impl.slicewise(lambda v: _take(v, axis, 0, block - rest), x.slices)
    tail = impl.slicewise(lambda v: _take(v, axis, block - rest, rest), x.slices)
    moved_head = impl.shift_by_n_processors(head, mesh_axis, whole, wrap, shape=x.shape)
    moved_tail = impl.shift_by_n_processors(tail, mesh_axis, whole + 1, wrap, shape=x.shape)
    out = impl.slicewise(lambda t, h: tf.concat([t, h], axis), moved_tail, moved_head)
    return Tensor(mesh, x.shape, out, x.dtype)
