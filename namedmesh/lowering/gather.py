"""Lowering of ``gather``: pick rows of ``weights`` along ``dim`` by integer indices.

mtf computes ``einsum([one_hot(indices, dim), weights], reduced_dims=[dim])``:
local work plus, when ``dim`` is split, one all-reduce over its mesh dim.
namedmesh gets the same values with ``tf.gather`` (no ``dim``-sized one-hot):
each processor picks the rows it holds (an index outside its piece of ``dim``
gives zeros, as the one-hot does) and, when ``dim`` is split, one all-reduce
(SUM) within the groups of its mesh dim completes the rows: the same
collective as mtf's.
"""

import tensorflow as tf

from namedmesh.core.dims import Shape
from namedmesh.core.tensor import Tensor


def lower_gather(weights: Tensor, indices: Tensor, dim, out_shape: Shape) -> Tensor:
    """``out_shape``: indices' dims, then weights' dims that indices lacks (without ``dim``)."""
    mesh = weights.mesh
    impl = mesh.impl
    w_names = weights.shape.names
    i_names = indices.shape.names
    shared = [n for n in i_names if n in w_names]                 # batch dims
    rest = [n for n in w_names if n != dim.name and n not in i_names]
    own = [n for n in i_names if n not in shared]                  # the indices' own dims
    d_axis = weights.layout.mesh_axis_of(dim.name)
    d_local = weights.layout.slice_sizes[w_names.index(dim.name)]

    # an indices dim split on the mesh dim of a split ``dim`` must be whole here: each
    # processor picks from its rows of ``dim`` for every index before the all-reduce
    idx_slices = indices.slices
    regathered = []
    for i, name in enumerate(i_names):
        a = indices.layout.mesh_axes[i]
        if d_axis is not None and a == d_axis:
            idx_slices = impl.allconcat(idx_slices, a, i, shape=indices.shape)
            regathered.append(name)

    w_perm = [w_names.index(n) for n in shared + [dim.name] + rest]
    i_perm = [i_names.index(n) for n in shared + own]
    picked_order = shared + own + rest
    final = [picked_order.index(n) for n in out_shape.names]
    batch = len(shared)

    def local(w, idx, coord):
        w = tf.transpose(w, w_perm) if w_perm != sorted(w_perm) else w
        idx = tf.transpose(idx, i_perm) if i_perm != sorted(i_perm) else idx
        if d_axis is not None:
            idx = idx - tf.cast(coord * d_local, idx.dtype)
        valid = tf.logical_and(idx >= 0, idx < d_local)
        safe = tf.where(valid, idx, tf.zeros_like(idx))
        rows = tf.gather(w, safe, axis=batch, batch_dims=batch)
        mask = tf.reshape(tf.cast(valid, rows.dtype),
                          valid.shape.as_list() + [1] * (rows.shape.rank - valid.shape.rank))
        rows = rows * mask
        return tf.transpose(rows, final) if final != sorted(final) else rows

    coords = impl.pcoord(d_axis) if d_axis is not None else impl.pcoord_or_none()
    out = impl.slicewise(local, weights.slices, idx_slices, coords)
    if d_axis is not None:
        out = impl.allreduce(out, [d_axis], "SUM", shape=out_shape)
        for name in regathered:
            axis = out_shape.names.index(name)
            out = impl.allsplit(out, d_axis, axis)
    return Tensor(mesh, out_shape, out, weights.dtype)
